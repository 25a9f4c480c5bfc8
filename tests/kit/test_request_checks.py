"""What the kit checks in every request message before a handler runs (issues 8 and 9).

- A message that does not parse (random bytes, invalid UTF-8 in a string field) is
  INVALID_ARGUMENT with an ErrorInfo, never UNKNOWN with protobuf's Python text.
- Control characters (C0 and DEL) are refused in every text field, except tab, newline and
  carriage return in free text (item content and attribute values); the BadRequest names the field.

The servicers are stand-ins; the server, the interceptor and the client over TCP are real. Bad
bytes are sent with a grpcio client whose serializer passes raw bytes through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import struct_pb2

from pinexa.data.v1 import data_pb2, data_pb2_grpc
from pinexa.users.v1 import users_pb2, users_pb2_grpc
from services.kit.server import ServiceHost, ServiceSpec
from services.kit.settings import Settings
from tests.support import TestKeys, bearer, error_info, field_violations, rpc_error

USERS = "pinexa.users.v1.UserService"
DATA = "pinexa.data.v1.DataService"


class EchoUsers(users_pb2_grpc.UserServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def CreateUser(self, request: users_pb2.CreateUserRequest, context: object) -> users_pb2.User:
        self.calls += 1
        return request.user


class EchoData(data_pb2_grpc.DataServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def CreateItem(self, request: data_pb2.CreateItemRequest, context: object) -> data_pb2.Item:
        self.calls += 1
        return request.item


class Stack:
    def __init__(self, host: ServiceHost, users: EchoUsers, data: EchoData) -> None:
        self.host = host
        self.users = users
        self.data = data
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
        self.users_stub = users_pb2_grpc.UserServiceStub(self.channel)
        self.data_stub = data_pb2_grpc.DataServiceStub(self.channel)

    def raw(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
        """A caller that sends `bytes` as the request message, unchanged."""
        return self.channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )


@pytest.fixture
async def stack(test_keys: TestKeys) -> AsyncIterator[Stack]:
    users, data = EchoUsers(), EchoData()

    def register(server: grpc.aio.Server) -> None:
        users_pb2_grpc.add_UserServiceServicer_to_server(users, server)
        data_pb2_grpc.add_DataServiceServicer_to_server(data, server)

    spec = ServiceSpec(
        name="users",
        register=register,
        service_names=[USERS, DATA],
        public_methods=frozenset({f"/{USERS}/CreateUser"}),
        free_text_fields=frozenset({"pinexa.data.v1.Item.content"}),
    )
    host = ServiceHost(
        spec, settings=Settings(health_check_interval_seconds=30), verifier=test_keys.verifier()
    )
    await host.start("127.0.0.1:0")
    s = Stack(host, users, data)
    yield s
    await s.channel.close()
    await host.stop(grace=0, drain=0)


def _no_python_text(error: grpc.aio.AioRpcError) -> None:
    text = f"{error.details()} {error.debug_error_string()}"
    for leak in ("DecodeError", "class", "Traceback", "google.protobuf", "Unexpected"):
        assert leak not in (error.details() or ""), text


# The bytes of CreateUserRequest{user: User{username: <value>}}: field 1 (user), field 2 (username).
def _create_user_with_username(value: bytes) -> bytes:
    username = b"\x12" + bytes([len(value)]) + value
    return b"\x0a" + bytes([len(username)]) + username


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xff\xfe\xfd\xfc random", id="random-bytes"),
        pytest.param(b"\x0a\x10\x12", id="truncated-length"),
        pytest.param(_create_user_with_username(b"\xff"), id="invalid-utf8"),
        pytest.param(_create_user_with_username(b"\xc0\xaf"), id="overlong"),
        pytest.param(_create_user_with_username(b"\xed\xa0\x80"), id="cesu-lone-surrogate"),
    ],
)
async def test_a_message_that_does_not_parse_is_invalid_argument(stack: Stack, payload: bytes) -> None:
    error = await rpc_error(
        stack.raw(f"/{USERS}/CreateUser")(payload), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"
    )
    info = error_info(error)
    assert info is not None and info.domain == "pinexa.users"
    _no_python_text(error)
    assert stack.users.calls == 0


async def test_a_protected_method_refuses_bad_bytes_without_a_token_too(stack: Stack) -> None:
    error = await rpc_error(stack.raw(f"/{DATA}/CreateItem")(b"\xff\xff"), grpc.StatusCode.INVALID_ARGUMENT)
    _no_python_text(error)


async def test_a_valid_message_still_parses(stack: Stack) -> None:
    user = await stack.users_stub.CreateUser(users_pb2.CreateUserRequest(user=users_pb2.User(username="ada")))
    assert user.username == "ada"


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x1f", "\x7f", "\t", "\n", "\r"])
async def test_control_characters_are_refused_in_plain_text(stack: Stack, char: str) -> None:
    request = users_pb2.CreateUserRequest(
        user=users_pb2.User(username=f"ada{char}", display_name=f"Ada{char}L", email="a@example.com")
    )
    error = await rpc_error(
        stack.users_stub.CreateUser(request), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT"
    )
    assert set(field_violations(error)) == {"user.username", "user.display_name"}
    assert stack.users.calls == 0


async def test_free_text_allows_tab_and_newlines_but_no_other_control(
    stack: Stack, test_keys: TestKeys
) -> None:
    attributes = struct_pb2.Struct()
    attributes.update({"note": "a\tb\r\nc", "nested": {"list": ["x\ny"]}})
    item = data_pb2.Item(title="notes", content="line 1\n\tline 2\r\n", attributes=attributes)
    token = bearer(test_keys.mint("u1"))
    echoed = await stack.data_stub.CreateItem(data_pb2.CreateItemRequest(item=item), metadata=token)
    assert echoed.content == item.content

    attributes = struct_pb2.Struct()
    attributes.update({"ok": "fine", "bad": "a\x00b", "nested": {"list": ["x", "y\x07"]}, "k\x01": 1})
    item = data_pb2.Item(title="no\ttab", content="nul\x00", attributes=attributes)
    error = await rpc_error(
        stack.data_stub.CreateItem(data_pb2.CreateItemRequest(item=item), metadata=token),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(field_violations(error)) == {
        "item.title",
        "item.content",
        "item.attributes.bad",
        "item.attributes.nested.list[1]",
        "item.attributes",  # the key "k\x01": a bad key is named by the object holding it
    }
    assert stack.data.calls == 1


async def test_health_and_reflection_refuse_bad_bytes_too(stack: Stack) -> None:
    """Methods the interceptor does not wrap (health, reflection; unary, server- and
    bidi-streaming) get the same parse check."""
    bad = b"\xff\xff\xff"
    error = await rpc_error(stack.raw("/grpc.health.v1.Health/Check")(bad), grpc.StatusCode.INVALID_ARGUMENT)
    _no_python_text(error)

    watch = stack.channel.unary_stream(
        "/grpc.health.v1.Health/Watch", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [response async for response in watch(bad, timeout=5)]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _no_python_text(caught.value)

    reflect = stack.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [response async for response in reflect(iter([bad]), timeout=5)]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _no_python_text(caught.value)
    info = error_info(caught.value)
    assert info is not None and info.reason == "INVALID_REQUEST"


async def test_health_and_reflection_still_answer(stack: Stack) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    check = await health_pb2_grpc.HealthStub(stack.channel).Check(health_pb2.HealthCheckRequest())
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    watch = health_pb2_grpc.HealthStub(stack.channel).Watch(health_pb2.HealthCheckRequest(service=USERS))
    async for response in watch:
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        break
    watch.cancel()
    reflection = reflection_pb2_grpc.ServerReflectionStub(stack.channel)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = [s.name async for r in responses for s in r.list_services_response.service]
    assert USERS in names
