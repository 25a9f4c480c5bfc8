"""Stand-in auth, users and data services for testing the Envoy config on its own.

They run on the real kit (ServiceHost: interceptor, health, reflection, error mapping) and speak
the real protos; only the business logic is fake. The edge tests (test_envoy_edge.py) put a real
Envoy in front of them, so the gateway's behaviour is tested whatever state the real services are
in. Each fake records the metadata of the last call, so a test can see exactly what Envoy
forwarded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import empty_pb2

from pinexa.auth.v1 import auth_pb2, auth_pb2_grpc
from pinexa.data.v1 import data_internal_pb2, data_internal_pb2_grpc, data_pb2, data_pb2_grpc
from pinexa.users.v1 import users_internal_pb2, users_internal_pb2_grpc, users_pb2, users_pb2_grpc
from services.kit.context import require_principal
from services.kit.errors import AlreadyExists, NotFound, Violations
from services.kit.server import ServiceHost, ServiceSpec
from services.kit.settings import Settings
from tests.support import TestKeys

AUTH = "pinexa.auth.v1.AuthService"
USERS = "pinexa.users.v1.UserService"
USERS_INTERNAL = "pinexa.users.v1.UsersInternalService"
DATA = "pinexa.data.v1.DataService"
DATA_INTERNAL = "pinexa.data.v1.DataInternalService"


@dataclass
class Recorder:
    """The invocation metadata of the most recent call of each method."""

    calls: dict[str, dict[str, str]] = field(default_factory=dict)

    def record(self, method: str, context: grpc.aio.ServicerContext) -> None:
        self.calls[method] = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


class FakeAuth(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, keys: TestKeys, recorder: Recorder) -> None:
        self._keys = keys
        self._recorder = recorder

    async def Login(self, request: auth_pb2.LoginRequest, context: Any) -> auth_pb2.LoginResponse:
        self._recorder.record("Login", context)
        return auth_pb2.LoginResponse(
            access_token=self._keys.mint(request.username or "u1"),
            refresh_token="r",
            token_type="Bearer",
            expires_in=300,
        )

    async def Logout(self, request: auth_pb2.LogoutRequest, context: Any) -> auth_pb2.LogoutResponse:
        self._recorder.record("Logout", context)
        return auth_pb2.LogoutResponse(revoked_sessions=1)

    async def GetJwks(self, request: auth_pb2.GetJwksRequest, context: Any) -> auth_pb2.GetJwksResponse:
        jwk = self._keys.jwk
        return auth_pb2.GetJwksResponse(
            keys=[auth_pb2.JsonWebKey(**{k: jwk[k] for k in ("kid", "kty", "alg", "use", "crv", "x", "y")})]
        )


class FakeUsers(users_pb2_grpc.UserServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self.release = asyncio.Event()

    async def CreateUser(self, request: users_pb2.CreateUserRequest, context: Any) -> users_pb2.User:
        self._recorder.record("CreateUser", context)
        violations = Violations()
        violations.check("@" in request.user.email, "user.email", "must be an e-mail address")
        violations.raise_if_any()
        if request.user.username == "taken":
            raise AlreadyExists("that username is taken", reason="USERNAME_TAKEN")
        return users_pb2.User(id="u1", username=request.user.username, email=request.user.email)

    async def GetUser(self, request: users_pb2.GetUserRequest, context: Any) -> users_pb2.User:
        self._recorder.record("GetUser", context)
        principal = require_principal()
        if request.id == "slow":
            await self.release.wait()
        if request.id == "missing":
            raise NotFound("no such user", reason="USER_NOT_FOUND")
        if request.id == "grpc-cancelled":  # what gRPC itself answers when shutdown's grace runs out
            await context.abort(grpc.StatusCode.UNAVAILABLE, "Cancelling all calls")
        return users_pb2.User(id=request.id or principal.user_id, username="someone")

    async def GetMe(self, request: users_pb2.GetMeRequest, context: Any) -> users_pb2.User:
        self._recorder.record("GetMe", context)
        principal = require_principal()
        return users_pb2.User(id=principal.user_id)

    async def ListUsers(
        self, request: users_pb2.ListUsersRequest, context: Any
    ) -> users_pb2.ListUsersResponse:
        self._recorder.record("ListUsers", context)
        require_principal()
        return users_pb2.ListUsersResponse(users=[users_pb2.User(id="u1")])


class FakeUsersInternal(users_internal_pb2_grpc.UsersInternalServiceServicer):
    async def VerifyCredentials(
        self, request: users_internal_pb2.VerifyCredentialsRequest, context: Any
    ) -> users_internal_pb2.VerifyCredentialsResponse:
        return users_internal_pb2.VerifyCredentialsResponse(user_id="u1", role=users_pb2.User.ADMIN)


class FakeData(data_pb2_grpc.DataServiceServicer):
    async def GetItem(self, request: data_pb2.GetItemRequest, context: Any) -> data_pb2.Item:
        principal = require_principal()
        return data_pb2.Item(id=request.id, user_id=principal.user_id, title="t")

    async def DeleteItem(self, request: data_pb2.DeleteItemRequest, context: Any) -> empty_pb2.Empty:
        require_principal()
        return empty_pb2.Empty()


class FakeDataInternal(data_internal_pb2_grpc.DataInternalServiceServicer):
    async def PurgeUserData(
        self, request: data_internal_pb2.PurgeUserDataRequest, context: Any
    ) -> data_internal_pb2.PurgeUserDataResponse:
        return data_internal_pb2.PurgeUserDataResponse()


@dataclass
class Fakes:
    """The three stand-in services, started on free ports."""

    auth: ServiceHost
    users: ServiceHost
    data: ServiceHost
    recorder: Recorder
    fake_users: FakeUsers

    async def stop(self) -> None:
        for host in (self.auth, self.users, self.data):
            await host.stop(grace=1, drain=0)


async def start_fakes(keys: TestKeys) -> Fakes:
    settings = Settings(health_check_interval_seconds=0.2)
    recorder = Recorder()
    fake_users = FakeUsers(recorder)

    def register_auth(server: grpc.aio.Server) -> None:
        auth_pb2_grpc.add_AuthServiceServicer_to_server(FakeAuth(keys, recorder), server)

    def register_users(server: grpc.aio.Server) -> None:
        users_pb2_grpc.add_UserServiceServicer_to_server(fake_users, server)
        users_internal_pb2_grpc.add_UsersInternalServiceServicer_to_server(FakeUsersInternal(), server)

    def register_data(server: grpc.aio.Server) -> None:
        data_pb2_grpc.add_DataServiceServicer_to_server(FakeData(), server)
        data_internal_pb2_grpc.add_DataInternalServiceServicer_to_server(FakeDataInternal(), server)

    auth = ServiceHost(
        ServiceSpec(
            name="auth",
            register=register_auth,
            service_names=[AUTH],
            public_methods=frozenset(f"/{AUTH}/{m}" for m in ("Login", "Refresh", "Logout", "GetJwks")),
        ),
        settings=settings,
        verifier=keys.verifier(),
    )
    users = ServiceHost(
        ServiceSpec(
            name="users",
            register=register_users,
            service_names=[USERS, USERS_INTERNAL],
            public_methods=frozenset({f"/{USERS}/CreateUser"}),
            internal_services=frozenset({USERS_INTERNAL}),
        ),
        settings=settings,
        verifier=keys.verifier(),
    )
    data = ServiceHost(
        ServiceSpec(
            name="data",
            register=register_data,
            service_names=[DATA, DATA_INTERNAL],
            internal_services=frozenset({DATA_INTERNAL}),
        ),
        settings=settings,
        verifier=keys.verifier(),
    )
    for host in (auth, users, data):
        await host.start("127.0.0.1:0")
    return Fakes(auth=auth, users=users, data=data, recorder=recorder, fake_users=fake_users)
