"""Thin gRPC servicers: protobuf in, a domain call, protobuf out.

The only rule decided here is how an UpdateUserRequest names its changes (AIP-134), because it
is about protobuf field presence: with an update_mask, exactly the named fields; without one,
every field set to a non-empty value.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import empty_pb2

from pinexa.users.v1 import users_internal_pb2, users_internal_pb2_grpc, users_pb2, users_pb2_grpc
from services.kit import metrics
from services.kit.audit import AuditEvent
from services.kit.client import client_ip
from services.kit.context import Role, require_principal
from services.kit.errors import InvalidArgument, ResourceExhausted
from services.users.domain import UPDATABLE_FIELDS, Identity, NewUser, UserPatch, UsersDomain, etag_for
from services.users.model import UserRecord

_ROLE_TO_PROTO: dict[str, users_pb2.User.Role] = {
    "user": users_pb2.User.USER,
    "admin": users_pb2.User.ADMIN,
}
_ROLE_FROM_PROTO: dict[int, Role] = {users_pb2.User.USER: "user", users_pb2.User.ADMIN: "admin"}


def user_message(record: UserRecord) -> users_pb2.User:
    """The public form of an account. The INPUT_ONLY password field is never set."""
    message = users_pb2.User(
        id=record.id,
        username=record.username,
        email=record.email,
        display_name=record.display_name,
        role=_ROLE_TO_PROTO[record.role],
        etag=etag_for(record.id, record.version),
        disabled=record.disabled,
    )
    message.created_at.FromDatetime(record.created_at)
    message.updated_at.FromDatetime(record.updated_at)
    message.email_verified = record.email_verified
    if record.email_verified_at is not None:
        message.email_verified_at.FromDatetime(record.email_verified_at)
    message.pending_email = record.pending_email or ""
    return message


def audit_event_message(event: AuditEvent) -> users_pb2.AuditEvent:
    message = users_pb2.AuditEvent(
        id=event.id,
        type=event.type,
        outcome=event.outcome,
        actor_id=event.actor_id,
        subject_id=event.subject_id,
        client_address=event.client_address,
        request_id=event.request_id,
        service=event.service,
        detail={key: str(value) for key, value in event.detail.items()},
    )
    message.occurred_at.FromMilliseconds(event.occurred_at)
    return message


def _role(value: int) -> Role:
    role = _ROLE_FROM_PROTO.get(value)
    if role is None:
        raise InvalidArgument("role must be USER or ADMIN", [("user.role", "must be USER or ADMIN")])
    return role


def patch_from_request(request: users_pb2.UpdateUserRequest) -> UserPatch:
    """Resolve which fields an update changes (see UpdateUserRequest in users.proto)."""
    user = request.user
    if user.HasField("password") or "password" in request.update_mask.paths:
        # Changing a password needs the current one (AuthService.ChangePassword) and ends the
        # other sessions; an update that carried one would do neither.
        field = "user.password" if user.HasField("password") else "update_mask"
        raise InvalidArgument(
            "UpdateUser does not change passwords; use POST /api/v1/users/{id}:changePassword",
            [(field, "a password cannot be changed with UpdateUser; use changePassword")],
            reason="PASSWORD_NOT_UPDATABLE",
        )
    if request.HasField("update_mask"):
        paths = list(request.update_mask.paths)
        unknown = [p for p in paths if p not in UPDATABLE_FIELDS]
        if unknown:
            raise InvalidArgument(
                f"update_mask may name only {', '.join(UPDATABLE_FIELDS)}",
                [("update_mask", f"unknown or immutable field {p!r}") for p in unknown],
            )
        if paths:
            fields: dict[str, Any] = {
                "email": user.email if "email" in paths else None,
                "display_name": user.display_name if "display_name" in paths else None,
                "role": _role(user.role) if "role" in paths else None,
            }
            return UserPatch(**fields, role_in_mask="role" in paths)
    # No (or an empty) mask: every field set to a non-empty value (AIP-134).
    return UserPatch(
        email=user.email or None,
        display_name=user.display_name or None,
        role=_role(user.role) if user.role else None,
        username=user.username,
    )


class UserServicer(users_pb2_grpc.UserServiceServicer):
    """pinexa.users.v1.UserService."""

    def __init__(self, domain: UsersDomain) -> None:
        self._domain = domain

    async def CreateUser(self, request: users_pb2.CreateUserRequest, context: Any) -> users_pb2.User:
        user = request.user
        record = await self._domain.sign_up(
            NewUser(
                username=user.username,
                email=user.email,
                password=user.password,
                display_name=user.display_name,
            )
        )
        metrics.SIGNUPS.inc()
        return user_message(record)

    async def GetUser(self, request: users_pb2.GetUserRequest, context: Any) -> users_pb2.User:
        return user_message(await self._domain.get(require_principal(), request.id))

    async def GetMe(self, request: users_pb2.GetMeRequest, context: Any) -> users_pb2.User:
        return user_message(await self._domain.me(require_principal()))

    async def ListUsers(
        self, request: users_pb2.ListUsersRequest, context: Any
    ) -> users_pb2.ListUsersResponse:
        page = await self._domain.list_page(
            require_principal(), size=request.page_size, token=request.page_token
        )
        return users_pb2.ListUsersResponse(
            users=[user_message(r) for r in page.users], next_page_token=page.next_page_token
        )

    async def ListAuditEvents(
        self, request: users_pb2.ListAuditEventsRequest, context: Any
    ) -> users_pb2.ListAuditEventsResponse:
        return users_pb2.ListAuditEventsResponse(**await self._audit_page(None, request))

    async def ListUserAuditEvents(
        self, request: users_pb2.ListUserAuditEventsRequest, context: Any
    ) -> users_pb2.ListUserAuditEventsResponse:
        return users_pb2.ListUserAuditEventsResponse(**await self._audit_page(request.id, request))

    async def _audit_page(
        self,
        subject_id: str | None,
        request: users_pb2.ListAuditEventsRequest | users_pb2.ListUserAuditEventsRequest,
    ) -> dict[str, Any]:
        """The fields of either list's response: everyone's events (subject_id None) or one account's."""
        page = await self._domain.audit_events(
            require_principal(),
            subject_id=subject_id,
            filter_text=request.filter,
            size=request.page_size,
            token=request.page_token,
        )
        return {
            "audit_events": [audit_event_message(e) for e in page.events],
            "next_page_token": page.next_page_token,
        }

    async def UpdateUser(self, request: users_pb2.UpdateUserRequest, context: Any) -> users_pb2.User:
        principal = require_principal()
        patch = patch_from_request(request)
        record = await self._domain.update(principal, request.user.id, patch, request.user.etag)
        return user_message(record)

    async def DeleteUser(self, request: users_pb2.DeleteUserRequest, context: Any) -> empty_pb2.Empty:
        await self._domain.delete(require_principal(), request.id)
        return empty_pb2.Empty()

    async def VerifyEmail(
        self, request: users_pb2.VerifyEmailRequest, context: Any
    ) -> users_pb2.VerifyEmailResponse:
        record = await self._domain.verify_email(request.token)
        return users_pb2.VerifyEmailResponse(
            user_id=record.id, email=record.email, email_verified=record.email_verified
        )

    async def SendVerificationEmail(
        self, request: users_pb2.SendVerificationEmailRequest, context: Any
    ) -> users_pb2.SendVerificationEmailResponse:
        try:
            address = await self._domain.send_verification(
                require_principal(), request.id, client=client_ip(context)
            )
        except ResourceExhausted as error:
            # RetryInfo is in the status; HTTP clients also get the usual Retry-After header.
            await context.send_initial_metadata((("retry-after", str(math.ceil(error.retry_after))),))
            raise
        return users_pb2.SendVerificationEmailResponse(email=address)

    async def RequestPasswordReset(
        self, request: users_pb2.RequestPasswordResetRequest, context: Any
    ) -> users_pb2.RequestPasswordResetResponse:
        try:
            await self._domain.request_password_reset(request.email, client=client_ip(context))
        except ResourceExhausted as error:
            await context.send_initial_metadata((("retry-after", str(math.ceil(error.retry_after))),))
            raise
        return users_pb2.RequestPasswordResetResponse()

    async def EnrollTotp(
        self, request: users_pb2.EnrollTotpRequest, context: Any
    ) -> users_pb2.EnrollTotpResponse:
        enrolment = await self._domain.enroll_totp(require_principal(), request.id)
        return users_pb2.EnrollTotpResponse(
            secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri, qr_svg=enrolment.qr_svg
        )

    async def ActivateTotp(
        self, request: users_pb2.ActivateTotpRequest, context: Any
    ) -> users_pb2.ActivateTotpResponse:
        codes = await self._domain.activate_totp(require_principal(), request.id, request.code)
        return users_pb2.ActivateTotpResponse(recovery_codes=codes)

    async def DisableTotp(self, request: users_pb2.DisableTotpRequest, context: Any) -> empty_pb2.Empty:
        await self._domain.disable_totp(require_principal(), request.id)
        return empty_pb2.Empty()

    async def RegenerateRecoveryCodes(
        self, request: users_pb2.RegenerateRecoveryCodesRequest, context: Any
    ) -> users_pb2.ActivateTotpResponse:
        codes = await self._domain.regenerate_recovery_codes(require_principal(), request.id)
        return users_pb2.ActivateTotpResponse(recovery_codes=codes)


def _identity_role(identity: Identity) -> users_pb2.User.Role:
    return _ROLE_TO_PROTO[identity.role]


class UsersInternalServicer(users_internal_pb2_grpc.UsersInternalServiceServicer):
    """pinexa.users.v1.UsersInternalService: for auth only, never routed by Envoy."""

    def __init__(self, domain: UsersDomain) -> None:
        self._domain = domain

    async def VerifyCredentials(
        self, request: users_internal_pb2.VerifyCredentialsRequest, context: Any
    ) -> users_internal_pb2.VerifyCredentialsResponse:
        identity = await self._domain.verify_credentials(request.username, request.password)
        return users_internal_pb2.VerifyCredentialsResponse(
            user_id=identity.user_id,
            role=_identity_role(identity),
            username=identity.username,
            email_verified=identity.email_verified,
            totp_enabled=await self._domain.totp_enabled(identity.user_id),
        )

    async def ResolveLogin(
        self, request: users_internal_pb2.ResolveLoginRequest, context: Any
    ) -> users_internal_pb2.ResolveLoginResponse:
        user_id = await self._domain.resolve_login(request.login)
        return users_internal_pb2.ResolveLoginResponse(user_id=user_id or "")

    async def GetIdentity(
        self, request: users_internal_pb2.GetIdentityRequest, context: Any
    ) -> users_internal_pb2.GetIdentityResponse:
        identity = await self._domain.identity(request.user_id)
        return users_internal_pb2.GetIdentityResponse(
            user_id=identity.user_id,
            role=_identity_role(identity),
            username=identity.username,
            disabled=identity.disabled,
            email_verified=identity.email_verified,
            totp_enabled=await self._domain.totp_enabled(identity.user_id),
        )

    async def ChangePassword(
        self, request: users_internal_pb2.ChangePasswordRequest, context: Any
    ) -> users_internal_pb2.ChangePasswordResponse:
        await self._domain.change_password(request.user_id, request.current_password, request.new_password)
        return users_internal_pb2.ChangePasswordResponse()

    async def ConfirmPasswordReset(
        self, request: users_internal_pb2.ConfirmPasswordResetRequest, context: Any
    ) -> users_internal_pb2.ConfirmPasswordResetResponse:
        record = await self._domain.confirm_password_reset(request.token, request.new_password)
        return users_internal_pb2.ConfirmPasswordResetResponse(user_id=record.id)

    async def SetDisabled(
        self, request: users_internal_pb2.SetDisabledRequest, context: Any
    ) -> users_internal_pb2.SetDisabledResponse:
        await self._domain.set_disabled(request.user_id, disabled=request.disabled)
        return users_internal_pb2.SetDisabledResponse()

    async def VerifySecondFactor(
        self, request: users_internal_pb2.VerifySecondFactorRequest, context: Any
    ) -> users_internal_pb2.VerifySecondFactorResponse:
        left = await self._domain.verify_second_factor(request.user_id, request.code, request.recovery_code)
        return users_internal_pb2.VerifySecondFactorResponse(recovery_codes_left=left)

    async def RemoveSecondFactor(
        self, request: users_internal_pb2.RemoveSecondFactorRequest, context: Any
    ) -> users_internal_pb2.RemoveSecondFactorResponse:
        return users_internal_pb2.RemoveSecondFactorResponse(
            removed=await self._domain.remove_totp(request.user_id)
        )
