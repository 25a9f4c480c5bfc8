"""The shared server: health, reflection, error mapping, authentication and graceful shutdown.

The servicer here is a stand-in written for these tests (the real services have their own
suites); everything else is real: a grpc.aio server on a free port and a client over TCP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pinexa.users.v1 import users_pb2, users_pb2_grpc
from services.kit.context import require_principal
from services.kit.errors import InvalidArgument, NotFound, Violations
from services.kit.server import LIVENESS_SERVICE, ServiceHost, ServiceSpec
from services.kit.settings import Settings
from tests.support import TestKeys, bearer, error_info, field_violations, health_status, wait_until

SERVICE = "pinexa.users.v1.UserService"


class FakeUsers(users_pb2_grpc.UserServiceServicer):
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def GetUser(self, request: users_pb2.GetUserRequest, context: object) -> users_pb2.User:
        if request.id == "slow":
            self.entered.set()
            await self.release.wait()
            return users_pb2.User(id="slow")
        if request.id == "boom":
            raise RuntimeError("secret internals")
        raise NotFound(f"user {request.id!r} not found", reason="USER_NOT_FOUND")

    async def GetMe(self, request: users_pb2.GetMeRequest, context: object) -> users_pb2.User:
        principal = require_principal()
        return users_pb2.User(
            id=principal.user_id, role=users_pb2.User.ADMIN if principal.is_admin else users_pb2.User.USER
        )

    async def CreateUser(self, request: users_pb2.CreateUserRequest, context: object) -> users_pb2.User:
        violations = Violations()
        violations.check("@" in request.user.email, "user.email", "must be an e-mail address")
        violations.check(len(request.user.password) >= 10, "user.password", "must be at least 10 characters")
        violations.raise_if_any()
        return users_pb2.User(username=request.user.username)

    async def DeleteUser(self, request: users_pb2.DeleteUserRequest, context: object) -> empty_pb2.Empty:
        raise InvalidArgument("no")


class Harness:
    def __init__(self, host: ServiceHost, fake: FakeUsers, healthy: list[bool]) -> None:
        self.host = host
        self.fake = fake
        self.healthy = healthy
        self.address = f"127.0.0.1:{host.port}"
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = users_pb2_grpc.UserServiceStub(self.channel)


@pytest.fixture
async def harness(test_keys: TestKeys) -> AsyncIterator[Harness]:
    fake = FakeUsers()
    healthy = [True]

    async def readiness() -> None:
        if not healthy[0]:
            raise ConnectionError("database down")

    spec = ServiceSpec(
        name="users",
        register=lambda server: users_pb2_grpc.add_UserServiceServicer_to_server(fake, server),
        service_names=[SERVICE],
        public_methods=frozenset({f"/{SERVICE}/CreateUser"}),
        readiness=readiness,
    )
    settings = Settings(health_check_interval_seconds=0.05, shutdown_grace_seconds=5)
    host = ServiceHost(spec, settings=settings, verifier=test_keys.verifier())
    await host.start("127.0.0.1:0")
    h = Harness(host, fake, healthy)
    yield h
    fake.release.set()
    await h.channel.close()
    await host.stop(grace=1, drain=0)


async def _reports(address: str, status: int, service: str = "") -> None:
    async def reported() -> bool:
        return await health_status(address, service) == status

    await wait_until(reported, timeout=5, what=f"health {status} for {service!r}")


async def test_health_follows_the_database(harness: Harness) -> None:
    assert await health_status(harness.address) == health_pb2.HealthCheckResponse.SERVING
    assert await health_status(harness.address, SERVICE) == health_pb2.HealthCheckResponse.SERVING
    harness.healthy[0] = False
    await _reports(harness.address, health_pb2.HealthCheckResponse.NOT_SERVING, SERVICE)
    assert await health_status(harness.address) == health_pb2.HealthCheckResponse.NOT_SERVING
    # Liveness ignores the database: an outage makes the pod unready, never restarted.
    assert await health_status(harness.address, LIVENESS_SERVICE) == health_pb2.HealthCheckResponse.SERVING
    harness.healthy[0] = True
    await _reports(harness.address, health_pb2.HealthCheckResponse.SERVING, SERVICE)


async def test_not_ready_until_the_first_check_has_passed() -> None:
    checked = asyncio.Event()

    async def readiness() -> None:
        await checked.wait()  # the database has not answered yet

    spec = ServiceSpec(
        name="users",
        register=lambda server: None,
        service_names=[SERVICE],
        readiness=readiness,
    )
    host = ServiceHost(spec, settings=Settings(health_check_interval_seconds=30), verifier=None)
    starting = asyncio.ensure_future(host.start("127.0.0.1:0"))
    try:
        await wait_until(lambda: _answers(host), timeout=5, what="the port to answer")
        address = f"127.0.0.1:{host.port}"
        for service in ("", SERVICE):
            assert await health_status(address, service) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await health_status(address, LIVENESS_SERVICE) == health_pb2.HealthCheckResponse.SERVING
        checked.set()
        await starting
        assert await health_status(address) == health_pb2.HealthCheckResponse.SERVING
    finally:
        checked.set()
        await starting
        await host.stop(grace=0, drain=0)


async def _answers(host: ServiceHost) -> bool:
    live = health_pb2.HealthCheckResponse.SERVING
    return bool(host.port) and await health_status(f"127.0.0.1:{host.port}", LIVENESS_SERVICE) == live


async def test_reflection_lists_the_service(harness: Harness) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(harness.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = [s.name async for r in responses for s in r.list_services_response.service]
    assert SERVICE in names
    assert "grpc.health.v1.Health" in names


async def test_domain_error_becomes_status_with_error_info(harness: Harness, test_keys: TestKeys) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.GetUser(
            users_pb2.GetUserRequest(id="nobody"), metadata=bearer(test_keys.mint("u1"))
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    info = error_info(caught.value)
    assert info is not None and info.reason == "USER_NOT_FOUND" and info.domain == "pinexa.users"


async def test_invalid_input_names_every_field(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.CreateUser(
            users_pb2.CreateUserRequest(user=users_pb2.User(email="x", password="short"))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {"user.email", "user.password"}
    assert error_info(caught.value).reason == "INVALID_INPUT"  # type: ignore[union-attr]


async def test_unexpected_exception_is_internal_without_details(
    harness: Harness, test_keys: TestKeys
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.GetUser(users_pb2.GetUserRequest(id="boom"), metadata=bearer(test_keys.mint("u1")))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (caught.value.details() or "")


async def test_an_unimplemented_method_is_unimplemented_not_internal(
    harness: Harness, test_keys: TestKeys
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.ListUsers(
            users_pb2.ListUsersRequest(), metadata=bearer(test_keys.mint("u1", "admin"))
        )
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_protected_method_refuses_missing_token(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.GetMe(users_pb2.GetMeRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "TOKEN_MISSING"  # type: ignore[union-attr]


async def test_protected_method_accepts_valid_token(harness: Harness, test_keys: TestKeys) -> None:
    me = await harness.stub.GetMe(users_pb2.GetMeRequest(), metadata=bearer(test_keys.mint("u42", "admin")))
    assert me.id == "u42" and me.role == users_pb2.User.ADMIN


async def test_sigterm_style_stop_lets_in_flight_calls_finish(harness: Harness, test_keys: TestKeys) -> None:
    token = bearer(test_keys.mint("u1"))
    call = asyncio.ensure_future(harness.stub.GetUser(users_pb2.GetUserRequest(id="slow"), metadata=token))
    await asyncio.wait_for(harness.fake.entered.wait(), timeout=5)
    stopping = asyncio.ensure_future(harness.host.stop(grace=5, drain=1.0))
    # During the drain the server still answers calls, and says it is going away.
    await _reports(harness.address, health_pb2.HealthCheckResponse.NOT_SERVING)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.GetUser(users_pb2.GetUserRequest(id="x"), metadata=token, timeout=1)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # answered by the servicer
    assert not stopping.done()

    # Past the drain, new calls are refused while the in-flight one is still running.
    async def refused() -> bool:
        try:
            await harness.stub.GetUser(users_pb2.GetUserRequest(id="x"), metadata=token, timeout=1)
        except grpc.aio.AioRpcError as error:
            return error.code() != grpc.StatusCode.NOT_FOUND
        return False

    await wait_until(refused, timeout=5, what="new calls to be refused")
    assert not call.done()
    harness.fake.release.set()
    assert (await call).id == "slow"
    await stopping


async def test_health_watch_still_streams_through_the_request_reader(harness: Harness) -> None:
    # Server-streaming methods are served as bidirectional ones that read the request first
    # (services/kit/request_stream.py); Watch must still stream every change as it happens.
    from grpc_health.v1 import health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(harness.channel)
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
    first = await asyncio.wait_for(watch.read(), 5)
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    harness.healthy[0] = False
    second = await asyncio.wait_for(watch.read(), 5)
    assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
    watch.cancel()
    harness.healthy[0] = True


async def test_a_request_that_never_completes_is_answered_not_left_hanging(harness: Harness) -> None:
    # grpcio's client cannot send a cut-off message; an empty stream-unary call is the same on
    # the wire as a unary call whose body is empty. tests/e2e/test_edge_http.py sends raw frames.
    empty = harness.channel.stream_unary(
        f"/{SERVICE}/GetUser", response_deserializer=users_pb2.User.FromString
    )

    async def nothing() -> AsyncIterator[bytes]:
        return
        yield b""  # an async generator that sends no message

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await asyncio.wait_for(empty(nothing(), timeout=10), 3)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(raised.value)
    assert info is not None and (info.reason, info.domain) == ("INCOMPLETE_REQUEST", "pinexa.users")


async def test_edge_reflection_knows_the_public_api_only(harness: Harness) -> None:
    from services.kit.edge_reflection import EDGE_REFLECTION_SERVICE, public_pool

    pool = public_pool()
    for name in ("pinexa.auth.v1.AuthService", "pinexa.users.v1.UserService", "pinexa.data.v1.DataService"):
        assert pool.FindServiceByName(name).full_name == name
    for internal in ("pinexa.users.v1.UsersInternalService", "pinexa.data.v1.DataInternalService"):
        with pytest.raises(KeyError):
            pool.FindServiceByName(internal)
    call = harness.channel.stream_stream(
        f"/{EDGE_REFLECTION_SERVICE}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    listed = await asyncio.wait_for(call.read(), 5)
    await call.done_writing()
    assert sorted(s.name for s in listed.list_services_response.service) == [
        "grpc.reflection.v1alpha.ServerReflection",
        "pinexa.auth.v1.AuthService",
        "pinexa.data.v1.DataService",
        "pinexa.users.v1.UserService",
    ]
