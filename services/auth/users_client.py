"""Auth's client for `pinexa.users.v1.UsersInternalService`, over one internal channel."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pinexa.users.v1 import users_internal_pb2, users_internal_pb2_grpc, users_pb2
from services.auth.domain import Identity, InvalidCredentials, UnknownUser
from services.kit.context import Role
from services.kit.errors import Unavailable

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


def _internal_token_refused(error: grpc.aio.AioRpcError) -> bool:
    return error.code() == grpc.StatusCode.UNAUTHENTICATED and _reason(error) == "INTERNAL_ONLY"


def _unavailable(error: grpc.aio.AioRpcError, call: str) -> Unavailable:
    if _internal_token_refused(error):
        log.error("users refused auth's internal token: INTERNAL_TOKEN differs between them")
    else:
        log.warning("users %s failed: %s", call, error.code().name)
    return Unavailable("the account directory is unavailable; try again shortly", reason="USERS_UNAVAILABLE")


class GrpcUsersClient:
    """Calls users' internal RPCs and turns their errors into auth's domain outcomes."""

    def __init__(self, channel: Any) -> None:
        self._stub = users_internal_pb2_grpc.UsersInternalServiceStub(channel)

    async def verify_credentials(self, username: str, password: str) -> Identity:
        try:
            response = await self._stub.VerifyCredentials(
                users_internal_pb2.VerifyCredentialsRequest(username=username, password=password),
                timeout=_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in _NO_MATCH and not _internal_token_refused(error):
                raise InvalidCredentials from None
            raise _unavailable(error, "VerifyCredentials") from None
        return Identity(user_id=response.user_id, role=_role(response.role))

    async def resolve_login(self, login: str) -> str:
        try:
            response = await self._stub.ResolveLogin(
                users_internal_pb2.ResolveLoginRequest(login=login), timeout=_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as error:
            raise _unavailable(error, "ResolveLogin") from None
        return str(response.user_id)

    async def get_identity(self, user_id: str) -> Identity:
        try:
            response = await self._stub.GetIdentity(
                users_internal_pb2.GetIdentityRequest(user_id=user_id), timeout=_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise UnknownUser from None
            raise _unavailable(error, "GetIdentity") from None
        return Identity(user_id=response.user_id, role=_role(response.role))
