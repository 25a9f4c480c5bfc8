"""`pinexa.auth.v1.AuthService` over gRPC: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import math
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from pinexa.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth.domain import AuthDomain, Client, TokenPair
from services.kit import metrics
from services.kit.client import client_ip
from services.kit.context import current_principal, require_principal
from services.kit.errors import ResourceExhausted, Unauthenticated


def client_of(context: grpc.aio.ServicerContext) -> Client:
    """The client address and user agent a session records."""
    metadata = dict(context.invocation_metadata() or ())
    return Client(address=client_ip(context), user_agent=str(metadata.get("user-agent", "")))


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def _fields(pair: TokenPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
    }


# Cookie mode, for browser apps such as the console (README "Tokens in a browser"): a request with
# this header set to "cookie" gets its refresh token as an HttpOnly cookie instead of in the JSON
# body, and Refresh and Logout read it from that cookie. The cookie is only ever read when the
# header is present: a custom header is the CSRF guard (a cross-site form or link cannot send it,
# and Envoy's CORS policy allows it to no other origin), on top of SameSite=Strict.
SESSION_MODE_HEADER = "x-pinexa-session"
REFRESH_COOKIE = "pinexa_refresh"
# The only paths the browser sends the cookie to (one cookie per path, same name and value).
REFRESH_COOKIE_PATHS = ("/api/v1/auth/refresh", "/api/v1/auth/logout")


@dataclass(frozen=True)
class CookiePolicy:
    """How the refresh cookie is set: Secure everywhere but development (plain http://127.0.0.1)."""

    secure: bool = True
    max_age_seconds: int = 30 * 24 * 3600


def _metadata(context: grpc.aio.ServicerContext) -> list[tuple[str, str]]:
    return [(str(key), str(value)) for key, value in context.invocation_metadata() or ()]


def cookie_mode(context: grpc.aio.ServicerContext) -> bool:
    return any(key == SESSION_MODE_HEADER and value == "cookie" for key, value in _metadata(context))


def refresh_cookie(context: grpc.aio.ServicerContext) -> str:
    """The refresh token in the request's cookies, or ''."""
    for key, value in _metadata(context):
        if key != "cookie":
            continue
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value)
        except CookieError:
            continue
        if REFRESH_COOKIE in jar:
            return jar[REFRESH_COOKIE].value
    return ""


def set_cookie_headers(token: str, policy: CookiePolicy) -> tuple[tuple[str, str], ...]:
    """`set-cookie` response metadata (Envoy's transcoder sends it as HTTP headers): the refresh
    cookie for each of its paths, or, with `token` '', the instruction to delete them."""
    headers = []
    for path in REFRESH_COOKIE_PATHS:
        jar: SimpleCookie = SimpleCookie()
        jar[REFRESH_COOKIE] = token
        morsel = jar[REFRESH_COOKIE]
        morsel["path"] = path
        morsel["httponly"] = True
        morsel["samesite"] = "Strict"
        morsel["max-age"] = policy.max_age_seconds if token else 0
        if policy.secure:
            morsel["secure"] = True
        headers.append(("set-cookie", morsel.OutputString()))
    return tuple(headers)


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, auth: AuthDomain, *, cookies: CookiePolicy | None = None) -> None:
        self._auth = auth
        self._cookies = cookies or CookiePolicy()

    async def _to_cookie(self, pair: TokenPair, context: grpc.aio.ServicerContext) -> dict[str, Any]:
        """The response fields; in cookie mode the refresh token goes into the cookie instead."""
        fields = _fields(pair)
        if cookie_mode(context):
            await context.send_initial_metadata(set_cookie_headers(pair.refresh_token, self._cookies))
            fields["refresh_token"] = ""
        return fields

    async def Login(
        self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LoginResponse:
        try:
            client = client_of(context)
            pair = await self._auth.login(
                request.username,
                request.password,
                client_ip=client.address,
                device_token=request.device_token,
                user_agent=client.user_agent,
            )
        except Unauthenticated:
            metrics.login("failed")
            raise
        except ResourceExhausted as error:
            metrics.login("throttled")
            # RetryInfo is in the status; HTTP clients also get the usual Retry-After header.
            await context.send_initial_metadata((("retry-after", str(math.ceil(error.retry_after))),))
            raise
        metrics.login("succeeded")
        return auth_pb2.LoginResponse(**await self._to_cookie(pair, context), device_token=pair.device_token)

    async def LoginMfa(
        self, request: auth_pb2.LoginMfaRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LoginResponse:
        try:
            pair = await self._auth.login_mfa(
                request.mfa_token,
                code=request.code,
                recovery_code=request.recovery_code,
                client=client_of(context),
            )
        except ResourceExhausted as error:
            await context.send_initial_metadata((("retry-after", str(math.ceil(error.retry_after))),))
            raise
        # The second step ends a sign-in like Login does: in cookie mode (the console) the refresh
        # token goes into the HttpOnly cookie, not the body.
        return auth_pb2.LoginResponse(**await self._to_cookie(pair, context), device_token=pair.device_token)

    async def Reauthenticate(
        self, request: auth_pb2.ReauthenticateRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ReauthenticateResponse:
        try:
            pair = await self._auth.reauthenticate(
                require_principal(), code=request.code, recovery_code=request.recovery_code
            )
        except ResourceExhausted as error:
            await context.send_initial_metadata((("retry-after", str(math.ceil(error.retry_after))),))
            raise
        return auth_pb2.ReauthenticateResponse(
            access_token=pair.access_token, token_type=pair.token_type, expires_in=pair.expires_in
        )

    async def Refresh(
        self, request: auth_pb2.RefreshRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RefreshResponse:
        token = request.refresh_token
        if not token and cookie_mode(context):
            token = refresh_cookie(context)
        pair = await self._auth.refresh(token, client=client_of(context))
        return auth_pb2.RefreshResponse(**await self._to_cookie(pair, context))

    async def Logout(
        self, request: auth_pb2.LogoutRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LogoutResponse:
        # all_sessions needs a valid access token: require_principal() raises why the presented
        # one was refused (expired, bad signature ...) or that none was sent.
        token, cookies = request.refresh_token, cookie_mode(context)
        if not token and cookies:
            token = refresh_cookie(context)
        needs_token = request.all_sessions or request.other_sessions
        principal = require_principal() if needs_token else current_principal()
        revoked = await self._auth.logout(
            token,
            all_sessions=request.all_sessions,
            other_sessions=request.other_sessions,
            principal=principal,
        )
        if cookies and not request.other_sessions:  # ending the others keeps this session
            await context.send_initial_metadata(set_cookie_headers("", self._cookies))
        return auth_pb2.LogoutResponse(revoked_sessions=revoked)

    async def ListSessions(
        self, request: auth_pb2.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ListSessionsResponse:
        views = await self._auth.list_sessions(require_principal())
        return auth_pb2.ListSessionsResponse(
            sessions=[
                auth_pb2.Session(
                    id=view.record.session_id,
                    created_at=_timestamp(view.record.created_at),
                    last_used_at=_timestamp(view.record.last_used_at),
                    user_agent=view.record.user_agent,
                    client_address=view.record.client_address,
                    current=view.current,
                )
                for view in views
            ]
        )

    async def DeleteSession(
        self, request: auth_pb2.DeleteSessionRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.DeleteSessionResponse:
        await self._auth.delete_session(require_principal(), request.id)
        return auth_pb2.DeleteSessionResponse()

    async def SignOutUser(
        self, request: auth_pb2.SignOutUserRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.SignOutUserResponse:
        revoked = await self._auth.sign_out_user(require_principal(), request.id)
        return auth_pb2.SignOutUserResponse(revoked_sessions=revoked)

    async def RemoveSecondFactor(
        self, request: auth_pb2.RemoveSecondFactorRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RemoveSecondFactorResponse:
        removed, revoked = await self._auth.remove_second_factor(require_principal(), request.id)
        return auth_pb2.RemoveSecondFactorResponse(removed=removed, revoked_sessions=revoked)

    async def DisableUser(
        self, request: auth_pb2.DisableUserRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.DisableUserResponse:
        revoked = await self._auth.set_disabled(require_principal(), request.id, disabled=True)
        return auth_pb2.DisableUserResponse(revoked_sessions=revoked)

    async def EnableUser(
        self, request: auth_pb2.EnableUserRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.EnableUserResponse:
        await self._auth.set_disabled(require_principal(), request.id, disabled=False)
        return auth_pb2.EnableUserResponse()

    async def ChangePassword(
        self, request: auth_pb2.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ChangePasswordResponse:
        try:
            revoked = await self._auth.change_password(
                require_principal(),
                request.id,
                request.current_password,
                request.new_password,
                client_ip=client_ip(context),
            )
        except ResourceExhausted as error:
            await context.send_initial_metadata((("retry-after", str(math.ceil(error.retry_after))),))
            raise
        return auth_pb2.ChangePasswordResponse(revoked_sessions=revoked)

    async def ConfirmPasswordReset(
        self, request: auth_pb2.ConfirmPasswordResetRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ConfirmPasswordResetResponse:
        revoked = await self._auth.confirm_password_reset(request.token, request.new_password)
        return auth_pb2.ConfirmPasswordResetResponse(revoked_sessions=revoked)

    async def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.JsonWebKey(**jwk) for jwk in self._auth.jwks()])
