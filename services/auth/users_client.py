"""Auth's client for `pinexa.users.v1.UsersInternalService`, over one internal channel."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pinexa.users.v1 import users_internal_pb2, users_internal_pb2_grpc, users_pb2
from services.auth.model import AccountDisabled, Identity, InvalidCredentials, UnknownUser
from services.kit.context import Role
from services.kit.errors import InvalidArgument, Unavailable
from services.kit.outage import OutageLog
from services.kit.single_use import TokenRefused

log = logging.getLogger(__name__)

_TIMEOUT_SECONDS = 5.0
# VerifyCredentials' answers that mean "no account matches these credentials".
_NO_MATCH = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)


def _role(value: int) -> Role:
    return "admin" if value == users_pb2.User.ADMIN else "user"


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def _violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error)
    found: list[tuple[str, str]] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            found.extend((v.field, v.description) for v in request.field_violations)
    return found


def _internal_token_refused(error: grpc.aio.AioRpcError) -> bool:
    return error.code() == grpc.StatusCode.UNAUTHENTICATED and _reason(error) == "INTERNAL_ONLY"


class GrpcUsersClient:
    """Calls users' internal RPCs and turns their errors into auth's domain outcomes: a users
    service that is down or answers UNAVAILABLE is 503 USERS_UNAVAILABLE, logged once when it
    goes and once when it is back."""

    def __init__(self, channel: Any) -> None:
        self._stub = users_internal_pb2_grpc.UsersInternalServiceStub(channel)
        self._outage = OutageLog(log, component="auth", dependency="users")

    def _unavailable(self, error: grpc.aio.AioRpcError, call: str) -> Unavailable:
        if _internal_token_refused(error):
            log.error("users refused auth's internal token: INTERNAL_TOKEN differs between them")
        else:
            self._outage.down(f"{call}: {error.code().name}")
        return Unavailable(
            "the account directory is unavailable; try again shortly", reason="USERS_UNAVAILABLE"
        )

    async def verify_credentials(self, username: str, password: str) -> Identity:
        try:
            response = await self._stub.VerifyCredentials(
                users_internal_pb2.VerifyCredentialsRequest(username=username, password=password),
                timeout=_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION and _reason(error) == "ACCOUNT_DISABLED":
                self._outage.up()
                raise AccountDisabled from None
            if error.code() in _NO_MATCH and not _internal_token_refused(error):
                self._outage.up()
                raise InvalidCredentials from None
            raise self._unavailable(error, "VerifyCredentials") from None
        self._outage.up()
        return Identity(
            user_id=response.user_id,
            role=_role(response.role),
            email_verified=response.email_verified,
            totp_enabled=response.totp_enabled,
        )

    async def verify_second_factor(self, user_id: str, code: str, recovery_code: str) -> int:
        try:
            response = await self._stub.VerifySecondFactor(
                users_internal_pb2.VerifySecondFactorRequest(
                    user_id=user_id, code=code, recovery_code=recovery_code
                ),
                timeout=_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in _NO_MATCH and not _internal_token_refused(error):
                self._outage.up()
                raise InvalidCredentials from None
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                self._outage.up()
                raise InvalidArgument(error.details() or "invalid input", _violations(error)) from None
            raise self._unavailable(error, "VerifySecondFactor") from None
        self._outage.up()
        return int(response.recovery_codes_left)

    async def resolve_login(self, login: str) -> str:
        try:
            response = await self._stub.ResolveLogin(
                users_internal_pb2.ResolveLoginRequest(login=login), timeout=_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as error:
            raise self._unavailable(error, "ResolveLogin") from None
        self._outage.up()
        return str(response.user_id)

    async def get_identity(self, user_id: str) -> Identity:
        try:
            response = await self._stub.GetIdentity(
                users_internal_pb2.GetIdentityRequest(user_id=user_id), timeout=_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                self._outage.up()
                raise UnknownUser from None
            raise self._unavailable(error, "GetIdentity") from None
        self._outage.up()
        return Identity(
            user_id=response.user_id,
            role=_role(response.role),
            disabled=response.disabled,
            email_verified=response.email_verified,
            totp_enabled=response.totp_enabled,
        )

    async def remove_second_factor(self, user_id: str) -> bool:
        try:
            response = await self._stub.RemoveSecondFactor(
                users_internal_pb2.RemoveSecondFactorRequest(user_id=user_id), timeout=_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                self._outage.up()
                raise UnknownUser from None
            raise self._unavailable(error, "RemoveSecondFactor") from None
        self._outage.up()
        return bool(response.removed)

    async def change_password(self, user_id: str, current_password: str, new_password: str) -> None:
        try:
            await self._stub.ChangePassword(
                users_internal_pb2.ChangePasswordRequest(
                    user_id=user_id, current_password=current_password, new_password=new_password
                ),
                timeout=_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED and not _internal_token_refused(error):
                self._outage.up()
                raise InvalidCredentials from None
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                self._outage.up()  # the new password breaks a rule: the client's error, as users said it
                raise InvalidArgument(error.details() or "invalid input", _violations(error)) from None
            if error.code() == grpc.StatusCode.NOT_FOUND:
                self._outage.up()
                raise InvalidCredentials from None  # deleted meanwhile: no password to match
            raise self._unavailable(error, "ChangePassword") from None
        self._outage.up()

    async def set_disabled(self, user_id: str, disabled: bool) -> None:
        try:
            await self._stub.SetDisabled(
                users_internal_pb2.SetDisabledRequest(user_id=user_id, disabled=disabled),
                timeout=_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                self._outage.up()
                raise UnknownUser from None
            raise self._unavailable(error, "SetDisabled") from None
        self._outage.up()

    async def confirm_password_reset(self, token: str, new_password: str) -> str:
        try:
            response = await self._stub.ConfirmPasswordReset(
                users_internal_pb2.ConfirmPasswordResetRequest(token=token, new_password=new_password),
                timeout=_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            reason = _reason(error)
            if error.code() == grpc.StatusCode.UNAUTHENTICATED and reason.startswith("MAIL_TOKEN_"):
                self._outage.up()
                raise TokenRefused(reason) from None
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                self._outage.up()  # the rules: the client's error, as users said it
                raise InvalidArgument(error.details() or "invalid input", _violations(error)) from None
            raise self._unavailable(error, "ConfirmPasswordReset") from None
        self._outage.up()
        return str(response.user_id)
