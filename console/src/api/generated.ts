import { baseApi as api } from "./base";
export const addTagTypes = [
  "AuthService",
  "UserService",
  "DataService",
] as const;
const injectedRtkApi = api
  .enhanceEndpoints({
    addTagTypes,
  })
  .injectEndpoints({
    endpoints: (build) => ({
      authServiceGetJwks: build.query<
        AuthServiceGetJwksApiResponse,
        AuthServiceGetJwksApiArg
      >({
        query: () => ({ url: `/.well-known/jwks.json` }),
        providesTags: ["AuthService"],
      }),
      userServiceGetMe: build.query<
        UserServiceGetMeApiResponse,
        UserServiceGetMeApiArg
      >({
        query: () => ({ url: `/api/profile` }),
        providesTags: ["UserService"],
      }),
      userServiceCreateUser1: build.mutation<
        UserServiceCreateUser1ApiResponse,
        UserServiceCreateUser1ApiArg
      >({
        query: (queryArg) => ({
          url: `/api/signup`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["UserService"],
      }),
      userServiceListAuditEvents: build.query<
        UserServiceListAuditEventsApiResponse,
        UserServiceListAuditEventsApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/audit-events`,
          params: {
            page_size: queryArg.pageSize,
            page_token: queryArg.pageToken,
            filter: queryArg.filter,
          },
        }),
        providesTags: ["UserService"],
      }),
      userServiceVerifyEmail: build.mutation<
        UserServiceVerifyEmailApiResponse,
        UserServiceVerifyEmailApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/auth/email:verify`,
          method: "POST",
          body: queryArg.pinexaUsersV1VerifyEmailRequest,
        }),
        invalidatesTags: ["UserService"],
      }),
      authServiceLogin: build.mutation<
        AuthServiceLoginApiResponse,
        AuthServiceLoginApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/auth/login`,
          method: "POST",
          body: queryArg.pinexaAuthV1LoginRequest,
        }),
        invalidatesTags: ["AuthService"],
      }),
      authServiceLoginMfa: build.mutation<
        AuthServiceLoginMfaApiResponse,
        AuthServiceLoginMfaApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/auth/login:mfa`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["AuthService"],
      }),
      authServiceLogout: build.mutation<
        AuthServiceLogoutApiResponse,
        AuthServiceLogoutApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/auth/logout`,
          method: "POST",
          body: queryArg.pinexaAuthV1LogoutRequest,
        }),
        invalidatesTags: ["AuthService"],
      }),
      authServiceConfirmPasswordReset: build.mutation<
        AuthServiceConfirmPasswordResetApiResponse,
        AuthServiceConfirmPasswordResetApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/auth/password:confirmReset`,
          method: "POST",
          body: queryArg.pinexaAuthV1ConfirmPasswordResetRequest,
        }),
        invalidatesTags: ["AuthService"],
      }),
      userServiceRequestPasswordReset: build.mutation<
        UserServiceRequestPasswordResetApiResponse,
        UserServiceRequestPasswordResetApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/auth/password:reset`,
          method: "POST",
          body: queryArg.pinexaUsersV1RequestPasswordResetRequest,
        }),
        invalidatesTags: ["UserService"],
      }),
      authServiceReauthenticate: build.mutation<
        AuthServiceReauthenticateApiResponse,
        AuthServiceReauthenticateApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/auth/reauthenticate`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["AuthService"],
      }),
      authServiceRefresh: build.mutation<
        AuthServiceRefreshApiResponse,
        AuthServiceRefreshApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/auth/refresh`,
          method: "POST",
          body: queryArg.pinexaAuthV1RefreshRequest,
        }),
        invalidatesTags: ["AuthService"],
      }),
      authServiceListSessions: build.query<
        AuthServiceListSessionsApiResponse,
        AuthServiceListSessionsApiArg
      >({
        query: () => ({ url: `/api/v1/auth/sessions` }),
        providesTags: ["AuthService"],
      }),
      authServiceDeleteSession: build.mutation<
        AuthServiceDeleteSessionApiResponse,
        AuthServiceDeleteSessionApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/auth/sessions/${queryArg.id}`,
          method: "DELETE",
        }),
        invalidatesTags: ["AuthService"],
      }),
      dataServiceCreateItem: build.mutation<
        DataServiceCreateItemApiResponse,
        DataServiceCreateItemApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/data`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["DataService"],
      }),
      dataServiceListItems: build.query<
        DataServiceListItemsApiResponse,
        DataServiceListItemsApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/data`,
          params: {
            page_size: queryArg.pageSize,
            page_token: queryArg.pageToken,
            filter: queryArg.filter,
            query: queryArg.query,
            order_by: queryArg.orderBy,
          },
        }),
        providesTags: ["DataService"],
      }),
      dataServiceGetItem: build.query<
        DataServiceGetItemApiResponse,
        DataServiceGetItemApiArg
      >({
        query: (queryArg) => ({ url: `/api/v1/data/${queryArg.id}` }),
        providesTags: ["DataService"],
      }),
      dataServiceUpdateItem: build.mutation<
        DataServiceUpdateItemApiResponse,
        DataServiceUpdateItemApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/data/${queryArg.id}`,
          method: "PUT",
          body: queryArg.body,
          params: {
            update_mask: queryArg.updateMask,
          },
        }),
        invalidatesTags: ["DataService"],
      }),
      dataServiceUpdateItem1: build.mutation<
        DataServiceUpdateItem1ApiResponse,
        DataServiceUpdateItem1ApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/data/${queryArg.id}`,
          method: "PATCH",
          body: queryArg.pinexaDataV1Item,
          params: {
            update_mask: queryArg.updateMask,
          },
        }),
        invalidatesTags: ["DataService"],
      }),
      dataServiceDeleteItem: build.mutation<
        DataServiceDeleteItemApiResponse,
        DataServiceDeleteItemApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/data/${queryArg.id}`,
          method: "DELETE",
          params: {
            etag: queryArg.etag,
          },
        }),
        invalidatesTags: ["DataService"],
      }),
      userServiceCreateUser: build.mutation<
        UserServiceCreateUserApiResponse,
        UserServiceCreateUserApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["UserService"],
      }),
      userServiceListUsers: build.query<
        UserServiceListUsersApiResponse,
        UserServiceListUsersApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users`,
          params: {
            page_size: queryArg.pageSize,
            page_token: queryArg.pageToken,
          },
        }),
        providesTags: ["UserService"],
      }),
      userServiceGetUser: build.query<
        UserServiceGetUserApiResponse,
        UserServiceGetUserApiArg
      >({
        query: (queryArg) => ({ url: `/api/v1/users/${queryArg.id}` }),
        providesTags: ["UserService"],
      }),
      userServiceUpdateUser: build.mutation<
        UserServiceUpdateUserApiResponse,
        UserServiceUpdateUserApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users/${queryArg.id}`,
          method: "PUT",
          body: queryArg.pinexaUsersV1User,
          params: {
            update_mask: queryArg.updateMask,
          },
        }),
        invalidatesTags: ["UserService"],
      }),
      userServiceUpdateUser1: build.mutation<
        UserServiceUpdateUser1ApiResponse,
        UserServiceUpdateUser1ApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users/${queryArg.id}`,
          method: "PATCH",
          body: queryArg.pinexaUsersV1User,
          params: {
            update_mask: queryArg.updateMask,
          },
        }),
        invalidatesTags: ["UserService"],
      }),
      userServiceDeleteUser: build.mutation<
        UserServiceDeleteUserApiResponse,
        UserServiceDeleteUserApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users/${queryArg.id}`,
          method: "DELETE",
        }),
        invalidatesTags: ["UserService"],
      }),
      userServiceListUserAuditEvents: build.query<
        UserServiceListUserAuditEventsApiResponse,
        UserServiceListUserAuditEventsApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users/${queryArg.id}/audit-events`,
          params: {
            page_size: queryArg.pageSize,
            page_token: queryArg.pageToken,
            filter: queryArg.filter,
          },
        }),
        providesTags: ["UserService"],
      }),
      userServiceActivateTotp: build.mutation<
        UserServiceActivateTotpApiResponse,
        UserServiceActivateTotpApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users/${queryArg.id}/totp:activate`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["UserService"],
      }),
      userServiceDisableTotp: build.mutation<
        UserServiceDisableTotpApiResponse,
        UserServiceDisableTotpApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users/${queryArg.id}/totp:disable`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["UserService"],
      }),
      userServiceEnrollTotp: build.mutation<
        UserServiceEnrollTotpApiResponse,
        UserServiceEnrollTotpApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users/${queryArg.id}/totp:enroll`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["UserService"],
      }),
      userServiceRegenerateRecoveryCodes: build.mutation<
        UserServiceRegenerateRecoveryCodesApiResponse,
        UserServiceRegenerateRecoveryCodesApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users/${queryArg.id}/totp:regenerateRecoveryCodes`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["UserService"],
      }),
      authServiceRemoveSecondFactor: build.mutation<
        AuthServiceRemoveSecondFactorApiResponse,
        AuthServiceRemoveSecondFactorApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users/${queryArg.id}/totp:remove`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["AuthService"],
      }),
      authServiceChangePassword: build.mutation<
        AuthServiceChangePasswordApiResponse,
        AuthServiceChangePasswordApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users/${queryArg.id}:changePassword`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["AuthService"],
      }),
      authServiceDisableUser: build.mutation<
        AuthServiceDisableUserApiResponse,
        AuthServiceDisableUserApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users/${queryArg.id}:disable`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["AuthService"],
      }),
      authServiceEnableUser: build.mutation<
        AuthServiceEnableUserApiResponse,
        AuthServiceEnableUserApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users/${queryArg.id}:enable`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["AuthService"],
      }),
      userServiceSendVerificationEmail: build.mutation<
        UserServiceSendVerificationEmailApiResponse,
        UserServiceSendVerificationEmailApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users/${queryArg.id}:sendVerificationEmail`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["UserService"],
      }),
      authServiceSignOutUser: build.mutation<
        AuthServiceSignOutUserApiResponse,
        AuthServiceSignOutUserApiArg
      >({
        query: (queryArg) => ({
          url: `/api/v1/users/${queryArg.id}:signOut`,
          method: "POST",
          body: queryArg.body,
        }),
        invalidatesTags: ["AuthService"],
      }),
    }),
    overrideExisting: false,
  });
export { injectedRtkApi as api };
export type AuthServiceGetJwksApiResponse =
  /** status 200 GetJwksResponse is a JSON Web Key Set. */ PinexaAuthV1GetJwksResponse;
export type AuthServiceGetJwksApiArg = void;
export type UserServiceGetMeApiResponse =
  /** status 200 User is an account. Password material never appears in a response. */ PinexaUsersV1UserRead;
export type UserServiceGetMeApiArg = void;
export type UserServiceCreateUser1ApiResponse =
  /** status 200 User is an account. Password material never appears in a response. */ PinexaUsersV1UserRead;
export type UserServiceCreateUser1ApiArg = {
  body: PinexaUsersV1UserWrite & {
    username: any;
    email: any;
    password: any;
  };
};
export type UserServiceListAuditEventsApiResponse =
  /** status 200 ListAuditEventsResponse is one page of audit events, newest first. */ PinexaUsersV1ListAuditEventsResponse;
export type UserServiceListAuditEventsApiArg = {
  /** How many events to return: 20 when unset, at most 100. */
  pageSize?: number;
  /** The next_page_token of the previous page, or empty for the first page. */
  pageToken?: string;
  /** An AIP-160 filter over actor_id, subject_id, type, outcome (= and !=) and occurred_at (an
    RFC 3339 string; all comparisons), e.g. `type = LOGIN_FAILED AND occurred_at >= "2026-12-01T00:00:00Z"`. */
  filter?: string;
};
export type UserServiceVerifyEmailApiResponse =
  /** status 200 VerifyEmailResponse names the account and the address now verified. */ PinexaUsersV1VerifyEmailResponse;
export type UserServiceVerifyEmailApiArg = {
  pinexaUsersV1VerifyEmailRequest: PinexaUsersV1VerifyEmailRequest;
};
export type AuthServiceLoginApiResponse =
  /** status 200 LoginResponse is a fresh token pair. */ PinexaAuthV1LoginResponse;
export type AuthServiceLoginApiArg = {
  pinexaAuthV1LoginRequest: PinexaAuthV1LoginRequest;
};
export type AuthServiceLoginMfaApiResponse =
  /** status 200 LoginResponse is a fresh token pair. */ PinexaAuthV1LoginResponse;
export type AuthServiceLoginMfaApiArg = {
  body:
    | (PinexaAuthV1LoginMfaRequest & {
        code: any;
        recovery_code?: any;
      })
    | (PinexaAuthV1LoginMfaRequest & {
        recovery_code: any;
        code?: any;
      });
};
export type AuthServiceLogoutApiResponse =
  /** status 200 LogoutResponse reports what was revoked. */ PinexaAuthV1LogoutResponse;
export type AuthServiceLogoutApiArg = {
  pinexaAuthV1LogoutRequest: PinexaAuthV1LogoutRequest;
};
export type AuthServiceConfirmPasswordResetApiResponse =
  /** status 200 ConfirmPasswordResetResponse reports what was revoked. */ PinexaAuthV1ConfirmPasswordResetResponse;
export type AuthServiceConfirmPasswordResetApiArg = {
  pinexaAuthV1ConfirmPasswordResetRequest: PinexaAuthV1ConfirmPasswordResetRequest;
};
export type UserServiceRequestPasswordResetApiResponse =
  /** status 200 RequestPasswordResetResponse has no fields: it is the same whether or not the address is an
account's. */ PinexaUsersV1RequestPasswordResetResponse;
export type UserServiceRequestPasswordResetApiArg = {
  pinexaUsersV1RequestPasswordResetRequest: PinexaUsersV1RequestPasswordResetRequest;
};
export type AuthServiceReauthenticateApiResponse =
  /** status 200 ReauthenticateResponse is a new access token of the same session, with a fresh auth_time. */ PinexaAuthV1ReauthenticateResponse;
export type AuthServiceReauthenticateApiArg = {
  body:
    | (PinexaAuthV1ReauthenticateRequest & {
        code: any;
        recovery_code?: any;
      })
    | (PinexaAuthV1ReauthenticateRequest & {
        recovery_code: any;
        code?: any;
      });
};
export type AuthServiceRefreshApiResponse =
  /** status 200 RefreshResponse is the new token pair. */ PinexaAuthV1RefreshResponse;
export type AuthServiceRefreshApiArg = {
  pinexaAuthV1RefreshRequest: PinexaAuthV1RefreshRequest;
};
export type AuthServiceListSessionsApiResponse =
  /** status 200 ListSessionsResponse is every live session of the caller. */ PinexaAuthV1ListSessionsResponse;
export type AuthServiceListSessionsApiArg = void;
export type AuthServiceDeleteSessionApiResponse =
  /** status 200 DeleteSessionResponse has no fields. */ PinexaAuthV1DeleteSessionResponse;
export type AuthServiceDeleteSessionApiArg = {
  /** The session's id, from ListSessions. */
  id: any;
};
export type DataServiceCreateItemApiResponse =
  /** status 200 Item is one data object owned by a user. */ PinexaDataV1ItemRead;
export type DataServiceCreateItemApiArg = {
  body: PinexaDataV1Item;
};
export type DataServiceListItemsApiResponse =
  /** status 200 ListItemsResponse is one page of items. */ PinexaDataV1ListItemsResponseRead;
export type DataServiceListItemsApiArg = {
  /** How many items to return: 20 when unset, at most 100. */
  pageSize?: number;
  /** The next_page_token of the previous page, or empty for the first page. */
  pageToken?: string;
  /** An AIP-160 filter, e.g. `status = "PUBLISHED" AND attributes.n >= 3`. */
  filter?: string;
  /** Words to find in title and content (full-text search). */
  query?: string;
  /** "created_at desc" (the default), "updated_at desc" or "title". */
  orderBy?: "" | "created_at desc" | "updated_at desc" | "title" | "title asc";
};
export type DataServiceGetItemApiResponse =
  /** status 200 Item is one data object owned by a user. */ PinexaDataV1ItemRead;
export type DataServiceGetItemApiArg = {
  /** The item's id. */
  id: any;
};
export type DataServiceUpdateItemApiResponse =
  /** status 200 Item is one data object owned by a user. */ PinexaDataV1ItemRead;
export type DataServiceUpdateItemApiArg = {
  /** The item's id, assigned by the server. */
  id: any;
  /** The fields to change: title, content, status, attributes. */
  updateMask?: string;
  body: PinexaDataV1Item;
};
export type DataServiceUpdateItem1ApiResponse =
  /** status 200 Item is one data object owned by a user. */ PinexaDataV1ItemRead;
export type DataServiceUpdateItem1ApiArg = {
  /** The item's id, assigned by the server. */
  id: any;
  /** The fields to change: title, content, status, attributes. */
  updateMask?: string;
  pinexaDataV1Item: PinexaDataV1Item;
};
export type DataServiceDeleteItemApiResponse =
  /** status 200 A generic empty message that you can re-use to avoid defining duplicated
empty messages in your APIs. A typical example is to use it as the request
or the response type of an API method. For instance:

    service Foo {
      rpc Bar(google.protobuf.Empty) returns (google.protobuf.Empty);
    } */ object;
export type DataServiceDeleteItemApiArg = {
  /** The item's id. */
  id: any;
  /** When set, the delete is refused with ABORTED unless it matches the stored etag. */
  etag?: string;
};
export type UserServiceCreateUserApiResponse =
  /** status 200 User is an account. Password material never appears in a response. */ PinexaUsersV1UserRead;
export type UserServiceCreateUserApiArg = {
  body: PinexaUsersV1UserWrite & {
    username: any;
    email: any;
    password: any;
  };
};
export type UserServiceListUsersApiResponse =
  /** status 200 ListUsersResponse is one page of accounts, oldest first. */ PinexaUsersV1ListUsersResponseRead;
export type UserServiceListUsersApiArg = {
  /** How many accounts to return: 20 when unset, at most 100. */
  pageSize?: number;
  /** The next_page_token of the previous page, or empty for the first page. */
  pageToken?: string;
};
export type UserServiceGetUserApiResponse =
  /** status 200 User is an account. Password material never appears in a response. */ PinexaUsersV1UserRead;
export type UserServiceGetUserApiArg = {
  /** The account's id. */
  id: any;
};
export type UserServiceUpdateUserApiResponse =
  /** status 200 User is an account. Password material never appears in a response. */ PinexaUsersV1UserRead;
export type UserServiceUpdateUserApiArg = {
  /** The account's id, a UUID assigned by the server. */
  id: any;
  /** The fields to change: email, display_name, role (admin only). */
  updateMask?: string;
  pinexaUsersV1User: PinexaUsersV1UserWrite;
};
export type UserServiceUpdateUser1ApiResponse =
  /** status 200 User is an account. Password material never appears in a response. */ PinexaUsersV1UserRead;
export type UserServiceUpdateUser1ApiArg = {
  /** The account's id, a UUID assigned by the server. */
  id: any;
  /** The fields to change: email, display_name, role (admin only). */
  updateMask?: string;
  pinexaUsersV1User: PinexaUsersV1UserWrite;
};
export type UserServiceDeleteUserApiResponse =
  /** status 200 A generic empty message that you can re-use to avoid defining duplicated
empty messages in your APIs. A typical example is to use it as the request
or the response type of an API method. For instance:

    service Foo {
      rpc Bar(google.protobuf.Empty) returns (google.protobuf.Empty);
    } */ object;
export type UserServiceDeleteUserApiArg = {
  /** The account's id. */
  id: any;
};
export type UserServiceListUserAuditEventsApiResponse =
  /** status 200 ListUserAuditEventsResponse is one page of one account's audit events, newest first. */ PinexaUsersV1ListUserAuditEventsResponse;
export type UserServiceListUserAuditEventsApiArg = {
  /** The account's id. */
  id: any;
  /** How many events to return: 20 when unset, at most 100. */
  pageSize?: number;
  /** The next_page_token of the previous page, or empty for the first page. */
  pageToken?: string;
  /** The same filter as ListAuditEventsRequest.filter (within this account's events). */
  filter?: string;
};
export type UserServiceActivateTotpApiResponse =
  /** status 200 ActivateTotpResponse carries the recovery codes, shown this once: each logs in once in place
of a code, for when the authenticator is lost. */ PinexaUsersV1ActivateTotpResponse;
export type UserServiceActivateTotpApiArg = {
  /** The account's id: the caller's own. */
  id: any;
  body: {
    /** The 6-digit code the authenticator shows now. */
    code: any;
  };
};
export type UserServiceDisableTotpApiResponse =
  /** status 200 A generic empty message that you can re-use to avoid defining duplicated
empty messages in your APIs. A typical example is to use it as the request
or the response type of an API method. For instance:

    service Foo {
      rpc Bar(google.protobuf.Empty) returns (google.protobuf.Empty);
    } */ object;
export type UserServiceDisableTotpApiArg = {
  /** The account's id: the caller's own. */
  id: any;
  body: {};
};
export type UserServiceEnrollTotpApiResponse =
  /** status 200 EnrollTotpResponse is what an authenticator app needs. Shown once; not active yet. */ PinexaUsersV1EnrollTotpResponse;
export type UserServiceEnrollTotpApiArg = {
  /** The account's id: the caller's own. */
  id: any;
  body: {};
};
export type UserServiceRegenerateRecoveryCodesApiResponse =
  /** status 200 ActivateTotpResponse carries the recovery codes, shown this once: each logs in once in place
of a code, for when the authenticator is lost. */ PinexaUsersV1ActivateTotpResponse;
export type UserServiceRegenerateRecoveryCodesApiArg = {
  /** The account's id: the caller's own. */
  id: any;
  body: {};
};
export type AuthServiceRemoveSecondFactorApiResponse =
  /** status 200 RemoveSecondFactorResponse reports what changed. */ PinexaAuthV1RemoveSecondFactorResponse;
export type AuthServiceRemoveSecondFactorApiArg = {
  /** The account's id. */
  id: string;
  body: {};
};
export type AuthServiceChangePasswordApiResponse =
  /** status 200 ChangePasswordResponse reports what was revoked. */ PinexaAuthV1ChangePasswordResponse;
export type AuthServiceChangePasswordApiArg = {
  /** The account's id: the caller's own. */
  id: any;
  body: {
    /** The password now. */
    current_password: string;
    /** The new password, 10 to 256 characters. */
    new_password: string;
  };
};
export type AuthServiceDisableUserApiResponse =
  /** status 200 DisableUserResponse reports what was revoked. */ PinexaAuthV1DisableUserResponse;
export type AuthServiceDisableUserApiArg = {
  /** The account's id. */
  id: any;
  body: {};
};
export type AuthServiceEnableUserApiResponse =
  /** status 200 EnableUserResponse has no fields. */ PinexaAuthV1EnableUserResponse;
export type AuthServiceEnableUserApiArg = {
  /** The account's id. */
  id: any;
  body: {};
};
export type UserServiceSendVerificationEmailApiResponse =
  /** status 200 SendVerificationEmailResponse says where the mail goes. */ PinexaUsersV1SendVerificationEmailResponse;
export type UserServiceSendVerificationEmailApiArg = {
  /** The account's id. */
  id: any;
  body: {};
};
export type AuthServiceSignOutUserApiResponse =
  /** status 200 SignOutUserResponse reports what was revoked. */ PinexaAuthV1SignOutUserResponse;
export type AuthServiceSignOutUserApiArg = {
  /** The account's id. */
  id: any;
  body: {};
};
export type PinexaAuthV1JsonWebKey = {
  /** The key id, matched against the "kid" header of a token. */
  kid?: string;
  /** The key type: "EC" or "OKP". */
  kty?: string;
  /** The algorithm: "ES256" or "EdDSA". */
  alg?: string;
  /** The key use: always "sig". */
  use?: string;
  /** The curve: "P-256" or "Ed25519". */
  crv?: string;
  /** The public x coordinate (or Ed25519 public key), base64url. */
  x?: string;
  /** The public y coordinate for EC keys, base64url. */
  y?: string;
};
export type PinexaAuthV1GetJwksResponse = {
  /** The published public keys, newest first. */
  keys?: PinexaAuthV1JsonWebKey[];
};
export type GoogleRpcErrorInfo = {
  /** The reason of the error. This is a constant value that identifies the
    proximate cause of the error. Error reasons are unique within a particular
    domain of errors. This should be at most 63 characters and match a
    regular expression of `[A-Z][A-Z0-9_]+[A-Z0-9]`, which represents
    UPPER_SNAKE_CASE. */
  reason?: string;
  /** The logical grouping to which the "reason" belongs. The error domain
    is typically the registered service name of the tool or product that
    generates the error. Example: "pubsub.googleapis.com". If the error is
    generated by some common infrastructure, the error domain must be a
    globally unique value that identifies the infrastructure. For Google API
    infrastructure, the error domain is "googleapis.com". */
  domain?: string;
  /** Additional structured details about this error.
    
    Keys must match a regular expression of `[a-z][a-zA-Z0-9-_]+` but should
    ideally be lowerCamelCase. Also, they must be limited to 64 characters in
    length. When identifying the current value of an exceeded limit, the units
    should be contained in the key, not the value.  For example, rather than
    `{"instanceLimit": "100/request"}`, should be returned as,
    `{"instanceLimitPerRequest": "100"}`, if the client exceeds the number of
    instances that can be created in a single (batch) request. */
  metadata?: {
    [key: string]: string;
  };
  "@type": "type.googleapis.com/google.rpc.ErrorInfo";
};
export type GoogleRpcLocalizedMessage = {
  /** The locale used following the specification defined at
    https://www.rfc-editor.org/rfc/bcp/bcp47.txt.
    Examples are: "en-US", "fr-CH", "es-MX" */
  locale?: string;
  /** The localized error message in the above locale. */
  message?: string;
};
export type GoogleRpcBadRequestFieldViolation = {
  /** A path that leads to a field in the request body. The value will be a
    sequence of dot-separated identifiers that identify a protocol buffer
    field.
    
    Consider the following:
    
        message CreateContactRequest {
          message EmailAddress {
            enum Type {
              TYPE_UNSPECIFIED = 0;
              HOME = 1;
              WORK = 2;
            }
    
            optional string email = 1;
            repeated EmailType type = 2;
          }
    
          string full_name = 1;
          repeated EmailAddress email_addresses = 2;
        }
    
    In this example, in proto `field` could take one of the following values:
    
    * `full_name` for a violation in the `full_name` value
    * `email_addresses[0].email` for a violation in the `email` field of the
      first `email_addresses` message
    * `email_addresses[2].type[1]` for a violation in the second `type`
      value in the third `email_addresses` message.
    
    In JSON, the same values are represented as:
    
    * `fullName` for a violation in the `fullName` value
    * `emailAddresses[0].email` for a violation in the `email` field of the
      first `emailAddresses` message
    * `emailAddresses[2].type[1]` for a violation in the second `type`
      value in the third `emailAddresses` message. */
  field?: string;
  /** A description of why the request element is bad. */
  description?: string;
  /** The reason of the field-level error. This is a constant value that
    identifies the proximate cause of the field-level error. It should
    uniquely identify the type of the FieldViolation within the scope of the
    google.rpc.ErrorInfo.domain. This should be at most 63
    characters and match a regular expression of `[A-Z][A-Z0-9_]+[A-Z0-9]`,
    which represents UPPER_SNAKE_CASE. */
  reason?: string;
  /** Provides a localized error message for field-level errors that is safe to
    return to the API consumer. */
  localized_message?: GoogleRpcLocalizedMessage;
};
export type GoogleRpcBadRequest = {
  /** Describes all violations in a client request. */
  field_violations?: GoogleRpcBadRequestFieldViolation[];
  "@type": "type.googleapis.com/google.rpc.BadRequest";
};
export type GoogleRpcRetryInfo = {
  /** Clients should wait at least this long between retrying the same request. */
  retry_delay?: string;
  "@type": "type.googleapis.com/google.rpc.RetryInfo";
};
export type GoogleRpcStatus = {
  /** The gRPC status code. */
  code: number;
  /** A message for developers, in English. */
  message: string;
  details?: (GoogleRpcErrorInfo | GoogleRpcBadRequest | GoogleRpcRetryInfo)[];
};
export type PinexaUsersV1UserRole = "USER" | "ADMIN";
export type PinexaUsersV1User = {
  /** The login name: 3 to 32 characters from [a-z0-9_.-], unique regardless of case. */
  username?: any;
  /** The e-mail address, unique regardless of case. */
  email?: any;
  /** A free-form name to show, at most 100 characters. */
  display_name?: any;
  /** The account's role. Only an admin can change it; it is ignored in sign-up. */
  role?: PinexaUsersV1UserRole;
  /** An opaque version tag for optimistic concurrency (AIP-154). */
  etag?: string;
};
export type PinexaUsersV1UserRead = {
  /** The account's id, a UUID assigned by the server. */
  id?: any;
  /** The login name: 3 to 32 characters from [a-z0-9_.-], unique regardless of case. */
  username?: any;
  /** The e-mail address, unique regardless of case. */
  email?: any;
  /** A free-form name to show, at most 100 characters. */
  display_name?: any;
  /** The account's role. Only an admin can change it; it is ignored in sign-up. */
  role?: PinexaUsersV1UserRole;
  /** When the account was created. */
  created_at?: string;
  /** When the account last changed. */
  updated_at?: string;
  /** An opaque version tag for optimistic concurrency (AIP-154). */
  etag?: string;
  /** True when an admin has disabled the account: it cannot log in or refresh. Changed only by
    AuthService.DisableUser and EnableUser. */
  disabled?: boolean;
  /** Whether the account's e-mail address was confirmed from a verification mail. */
  email_verified?: boolean;
  /** When the address was confirmed; unset while it is not. */
  email_verified_at?: string;
  /** An address the account asked to change to, not yet confirmed; empty when none. The change
    takes effect (replacing email) when the link mailed to it is used. */
  pending_email?: string;
};
export type PinexaUsersV1UserWrite = {
  /** The login name: 3 to 32 characters from [a-z0-9_.-], unique regardless of case. */
  username?: any;
  /** The e-mail address, unique regardless of case. */
  email?: any;
  /** A free-form name to show, at most 100 characters. */
  display_name?: any;
  /** The account's role. Only an admin can change it; it is ignored in sign-up. */
  role?: PinexaUsersV1UserRole;
  /** An opaque version tag for optimistic concurrency (AIP-154). */
  etag?: string;
  /** The password, 10 to 256 characters: accepted only by CreateUser, never returned. To change
    it, use AuthService.ChangePassword (or a password reset). */
  password?: any;
};
export type PinexaUsersV1AuditEvent = {
  /** The record's id (32 hex digits). */
  id?: string;
  /** What happened, e.g. ACCOUNT_CREATED, LOGIN_SUCCEEDED, LOGIN_FAILED, LOGIN_THROTTLED,
    SESSION_REVOKED, PASSWORD_CHANGED, EMAIL_CHANGED, ROLE_CHANGED, ACCOUNT_DISABLED (the
    README's "Security audit trail" lists every type and when it is recorded). */
  type?: string;
  /** How it ended: SUCCESS, FAILURE (e.g. a wrong password) or REFUSED (throttled, reuse). */
  outcome?: string;
  /** The account that acted; empty when nobody was signed in (a login, a stolen token). */
  actor_id?: string;
  /** The account the event concerns; empty for a login name no account has. */
  subject_id?: string;
  /** When it happened (millisecond precision). */
  occurred_at?: string;
  /** The client's address as Envoy saw it. */
  client_address?: string;
  /** The request's x-request-id. */
  request_id?: string;
  /** The service that recorded it: auth or users. */
  service?: string;
  /** A few non-secret facts: reason, role, previous_role, fields, sessions, session_id, method,
    device_token ("used" or "none", never the token). */
  detail?: {
    [key: string]: string;
  };
};
export type PinexaUsersV1ListAuditEventsResponse = {
  /** The events on this page. */
  audit_events?: PinexaUsersV1AuditEvent[];
  /** Pass this as page_token to get the next page; empty on the last page. */
  next_page_token?: string;
};
export type PinexaUsersV1VerifyEmailResponse = {
  /** The account's id. */
  user_id?: string;
  /** The account's e-mail address, now verified. */
  email?: string;
  /** Always true in a successful answer. */
  email_verified?: boolean;
};
export type PinexaUsersV1VerifyEmailRequest = {
  /** The token from the link ${PUBLIC_BASE_URL}/verify-email?token=... */
  token: any;
};
export type PinexaAuthV1LoginResponse = {
  /** A signed JWT to send as "Authorization: Bearer <token>". */
  access_token?: string;
  /** An opaque token to pass to Refresh; it can be spent once. */
  refresh_token?: string;
  /** Always "Bearer". */
  token_type?: string;
  /** Seconds until the access token expires. */
  expires_in?: number;
  /** An opaque token (256 random bits) that proves this client logged in to this account
    before; keep it (per account and login name) and send it with the next Login. It is the
    token that was presented when that one was valid (its expiry renewed), otherwise a new one. */
  device_token?: string;
};
export type PinexaAuthV1LoginRequest = {
  /** The username or the e-mail address. */
  username: any;
  /** The password. */
  password: string;
  /** The device token an earlier successful login for this same username or e-mail returned, if
    the client kept it. A login that presents a valid one is throttled per device, apart from
    strangers' wrong guesses at the account, so a flood from elsewhere cannot lock the owner
    out. An unknown, expired, locked or other account's token is ignored (treated as absent). */
  device_token?: string;
};
export type PinexaAuthV1LoginMfaRequest = {
  /** The mfa_token from Login's MFA_REQUIRED answer (single-use, valid 5 minutes). */
  mfa_token: string;
  /** The 6-digit code the authenticator shows. */
  code?: string;
  /** One of the account's recovery codes, in place of a code (each works once). */
  recovery_code?: string;
};
export type PinexaAuthV1LogoutResponse = {
  /** How many sessions (refresh-token families) were revoked. */
  revoked_sessions?: number;
};
export type PinexaAuthV1LogoutRequest = {
  /** The refresh token of the session to end. */
  refresh_token: string;
  /** End every session of the caller; needs a valid access token. */
  all_sessions?: boolean;
  /** End every session of the caller except the one its access token belongs to; needs a valid
    access token. refresh_token may then be empty. */
  other_sessions?: boolean;
};
export type PinexaAuthV1ConfirmPasswordResetResponse = {
  /** How many sessions of the account were ended. */
  revoked_sessions?: number;
};
export type PinexaAuthV1ConfirmPasswordResetRequest = {
  /** The token from the link ${PUBLIC_BASE_URL}/reset-password?token=... */
  token: any;
  /** The new password, 10 to 256 characters. */
  new_password: string;
};
export type PinexaUsersV1RequestPasswordResetResponse = {};
export type PinexaUsersV1RequestPasswordResetRequest = {
  /** The e-mail address of the account, in any case. */
  email: any;
};
export type PinexaAuthV1ReauthenticateResponse = {
  /** A signed JWT to send as "Authorization: Bearer <token>". */
  access_token?: string;
  /** Always "Bearer". */
  token_type?: string;
  /** Seconds until the access token expires. */
  expires_in?: number;
};
export type PinexaAuthV1ReauthenticateRequest = {
  /** The 6-digit code the authenticator shows. */
  code?: string;
  /** One of the account's recovery codes, in place of a code (each works once). */
  recovery_code?: string;
};
export type PinexaAuthV1RefreshResponse = {
  /** A signed JWT to send as "Authorization: Bearer <token>". */
  access_token?: string;
  /** The refresh token to use next time; the one sent is now spent. */
  refresh_token?: string;
  /** Always "Bearer". */
  token_type?: string;
  /** Seconds until the access token expires. */
  expires_in?: number;
};
export type PinexaAuthV1RefreshRequest = {
  /** The refresh token from Login or from the previous Refresh. */
  refresh_token: string;
};
export type PinexaAuthV1Session = {
  /** The session's id, the "sid" claim of its access tokens. */
  id?: string;
  /** When the login happened. */
  created_at?: string;
  /** When the session last logged in or refreshed. */
  last_used_at?: string;
  /** The User-Agent the client sent when it last logged in or refreshed (at most 256 characters). */
  user_agent?: string;
  /** The client's address as Envoy saw it when it last logged in or refreshed. */
  client_address?: string;
  /** True for the session of the access token this call was made with. */
  current?: boolean;
};
export type PinexaAuthV1ListSessionsResponse = {
  /** The sessions, newest first. */
  sessions?: PinexaAuthV1Session[];
};
export type PinexaAuthV1DeleteSessionResponse = {};
export type PinexaDataV1ItemStatus = "DRAFT" | "PUBLISHED" | "ARCHIVED";
export type PinexaDataV1AttributeValue9 = (null | boolean | number) | string;
export type PinexaDataV1AttributeValue8 =
  | (null | boolean | number)
  | string
  | PinexaDataV1AttributeValue9[]
  | {
      [key: string]: PinexaDataV1AttributeValue9;
    };
export type PinexaDataV1AttributeValue7 =
  | (null | boolean | number)
  | string
  | PinexaDataV1AttributeValue8[]
  | {
      [key: string]: PinexaDataV1AttributeValue8;
    };
export type PinexaDataV1AttributeValue6 =
  | (null | boolean | number)
  | string
  | PinexaDataV1AttributeValue7[]
  | {
      [key: string]: PinexaDataV1AttributeValue7;
    };
export type PinexaDataV1AttributeValue5 =
  | (null | boolean | number)
  | string
  | PinexaDataV1AttributeValue6[]
  | {
      [key: string]: PinexaDataV1AttributeValue6;
    };
export type PinexaDataV1AttributeValue4 =
  | (null | boolean | number)
  | string
  | PinexaDataV1AttributeValue5[]
  | {
      [key: string]: PinexaDataV1AttributeValue5;
    };
export type PinexaDataV1AttributeValue3 =
  | (null | boolean | number)
  | string
  | PinexaDataV1AttributeValue4[]
  | {
      [key: string]: PinexaDataV1AttributeValue4;
    };
export type PinexaDataV1AttributeValue =
  | (null | boolean | number)
  | string
  | PinexaDataV1AttributeValue3[]
  | {
      [key: string]: PinexaDataV1AttributeValue3;
    };
export type PinexaDataV1Item = {
  /** The title: required, at most 200 characters. */
  title?: any;
  /** The body: at most 1 MiB. */
  content?: string;
  /** The life-cycle state. */
  status?: PinexaDataV1ItemStatus;
  /** Free-form attributes: a JSON object of at most 64 KiB and depth 8, whose keys
    never start with "$" nor contain ".". */
  attributes?: {
    [key: string]: PinexaDataV1AttributeValue;
  };
  /** An opaque version tag for optimistic concurrency (AIP-154). */
  etag?: string;
};
export type PinexaDataV1ItemRead = {
  /** The item's id, assigned by the server. */
  id?: any;
  /** The id of the user who owns the item. */
  user_id?: string;
  /** The title: required, at most 200 characters. */
  title?: any;
  /** The body: at most 1 MiB. */
  content?: string;
  /** The life-cycle state. */
  status?: PinexaDataV1ItemStatus;
  /** Free-form attributes: a JSON object of at most 64 KiB and depth 8, whose keys
    never start with "$" nor contain ".". */
  attributes?: {
    [key: string]: PinexaDataV1AttributeValue;
  };
  /** When the item was created. */
  created_at?: string;
  /** When the item last changed. */
  updated_at?: string;
  /** An opaque version tag for optimistic concurrency (AIP-154). */
  etag?: string;
};
export type PinexaDataV1ListItemsResponse = {
  /** The items on this page. */
  items?: PinexaDataV1Item[];
  /** Pass this as page_token to get the next page; empty on the last page. */
  next_page_token?: string;
};
export type PinexaDataV1ListItemsResponseRead = {
  /** The items on this page. */
  items?: PinexaDataV1ItemRead[];
  /** Pass this as page_token to get the next page; empty on the last page. */
  next_page_token?: string;
};
export type PinexaUsersV1ListUsersResponse = {
  /** The accounts on this page. */
  users?: PinexaUsersV1User[];
  /** Pass this as page_token to get the next page; empty on the last page. */
  next_page_token?: string;
};
export type PinexaUsersV1ListUsersResponseRead = {
  /** The accounts on this page. */
  users?: PinexaUsersV1UserRead[];
  /** Pass this as page_token to get the next page; empty on the last page. */
  next_page_token?: string;
};
export type PinexaUsersV1ListUsersResponseWrite = {
  /** The accounts on this page. */
  users?: PinexaUsersV1UserWrite[];
  /** Pass this as page_token to get the next page; empty on the last page. */
  next_page_token?: string;
};
export type PinexaUsersV1ListUserAuditEventsResponse = {
  /** The events on this page. */
  audit_events?: PinexaUsersV1AuditEvent[];
  /** Pass this as page_token to get the next page; empty on the last page. */
  next_page_token?: string;
};
export type PinexaUsersV1ActivateTotpResponse = {
  /** Ten codes of the form xxxx-xxxx-xxxx-xxxx. */
  recovery_codes?: string[];
};
export type PinexaUsersV1EnrollTotpResponse = {
  /** The shared secret, base32 (160 bits), for typing into an app by hand. */
  secret?: string;
  /** The otpauth://totp/ URI (issuer, account, SHA1, 6 digits, 30 s period). */
  otpauth_uri?: string;
  /** The URI as a QR code, an SVG image. */
  qr_svg?: string;
};
export type PinexaAuthV1RemoveSecondFactorResponse = {
  /** False when the account had no second factor. */
  removed?: boolean;
  /** How many sessions of the account were ended. */
  revoked_sessions?: number;
};
export type PinexaAuthV1ChangePasswordResponse = {
  /** How many other sessions of the account were ended. */
  revoked_sessions?: number;
};
export type PinexaAuthV1DisableUserResponse = {
  /** How many sessions were ended. */
  revoked_sessions?: number;
};
export type PinexaAuthV1EnableUserResponse = {};
export type PinexaUsersV1SendVerificationEmailResponse = {
  /** The address the verification mail was queued for. */
  email?: string;
};
export type PinexaAuthV1SignOutUserResponse = {
  /** How many sessions were ended. */
  revoked_sessions?: number;
};
export const {
  useAuthServiceGetJwksQuery,
  useLazyAuthServiceGetJwksQuery,
  useUserServiceGetMeQuery,
  useLazyUserServiceGetMeQuery,
  useUserServiceCreateUser1Mutation,
  useUserServiceListAuditEventsQuery,
  useLazyUserServiceListAuditEventsQuery,
  useUserServiceVerifyEmailMutation,
  useAuthServiceLoginMutation,
  useAuthServiceLoginMfaMutation,
  useAuthServiceLogoutMutation,
  useAuthServiceConfirmPasswordResetMutation,
  useUserServiceRequestPasswordResetMutation,
  useAuthServiceReauthenticateMutation,
  useAuthServiceRefreshMutation,
  useAuthServiceListSessionsQuery,
  useLazyAuthServiceListSessionsQuery,
  useAuthServiceDeleteSessionMutation,
  useDataServiceCreateItemMutation,
  useDataServiceListItemsQuery,
  useLazyDataServiceListItemsQuery,
  useDataServiceGetItemQuery,
  useLazyDataServiceGetItemQuery,
  useDataServiceUpdateItemMutation,
  useDataServiceUpdateItem1Mutation,
  useDataServiceDeleteItemMutation,
  useUserServiceCreateUserMutation,
  useUserServiceListUsersQuery,
  useLazyUserServiceListUsersQuery,
  useUserServiceGetUserQuery,
  useLazyUserServiceGetUserQuery,
  useUserServiceUpdateUserMutation,
  useUserServiceUpdateUser1Mutation,
  useUserServiceDeleteUserMutation,
  useUserServiceListUserAuditEventsQuery,
  useLazyUserServiceListUserAuditEventsQuery,
  useUserServiceActivateTotpMutation,
  useUserServiceDisableTotpMutation,
  useUserServiceEnrollTotpMutation,
  useUserServiceRegenerateRecoveryCodesMutation,
  useAuthServiceRemoveSecondFactorMutation,
  useAuthServiceChangePasswordMutation,
  useAuthServiceDisableUserMutation,
  useAuthServiceEnableUserMutation,
  useUserServiceSendVerificationEmailMutation,
  useAuthServiceSignOutUserMutation,
} = injectedRtkApi;
