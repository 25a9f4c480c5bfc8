"""Issue 8, the HTTP side of the edge, through the real stack: size limits that agree between Envoy
and the services, no hanging gRPC calls, grpcurl through Envoy, Envoy's gRPC errors with details,
CORS, x-request-id on every response, 405 with Allow, and a readiness report per upstream."""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from devstack.stack import MONGO, Stack
from pinexa.users.v1 import users_pb2, users_pb2_grpc
from tests.e2e import h2raw
from tests.e2e.conftest import Account, error_info, error_reason, status_of

pytestmark = pytest.mark.e2e

Grpcurl = Callable[..., Any]
ORIGIN = "http://localhost:5173"  # in the dev default of CORS_ALLOWED_ORIGINS

# ---- size limits -------------------------------------------------------------------------------


def test_a_long_filter_within_the_limit_always_reaches_the_service(
    client: httpx.Client, account: Account
) -> None:
    # ~7.5 KB of query: Envoy forwards it, and again in x-envoy-original-path; gRPC's default
    # metadata limits (8 KiB soft, 16 KiB hard) refused this at random with 429. The data service
    # itself answers (its filters are at most 2000 characters): the request reached it.
    title = "t" * 7400
    for _ in range(8):
        response = client.get(
            "/api/v1/data", params={"filter": f'title = "{title}"'}, headers=account.headers
        )
        assert response.status_code == 400, response.text[:300]
        assert error_info(status_of(response))["domain"] == "pinexa.data"
        assert error_reason(status_of(response)) == "INVALID_FILTER"


def test_large_headers_within_the_limit_always_reach_the_service(
    client: httpx.Client, account: Account
) -> None:
    headers = {**account.headers, "x-padding": "p" * (30 * 1024)}
    for _ in range(8):
        response = client.get("/api/profile", headers=headers)
        assert response.status_code == 200, response.text[:300]


def test_a_path_over_the_limit_is_414_json(client: httpx.Client, account: Account) -> None:
    response = client.get("/api/v1/data", params={"filter": "x" * 9000}, headers=account.headers)
    assert response.status_code == 414, response.text[:300]
    status = status_of(response)
    assert error_info(status) == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "URI_TOO_LONG",
        "domain": "envoy",
    }
    assert "8192" in status["message"]
    assert "authorization" not in response.text


def test_headers_over_the_limit_are_431_json_over_http1(client: httpx.Client, account: Account) -> None:
    response = client.get("/api/profile", headers={**account.headers, "x-padding": "p" * (40 * 1024)})
    assert response.status_code == 431, response.text[:300]
    assert error_reason(status_of(response)) == "HEADERS_TOO_LARGE"
    assert "authorization" not in response.text


def test_headers_over_the_limit_are_refused_over_http2_too(stack: Stack, account: Account) -> None:
    response = h2raw.request(
        stack.envoy_address,
        "/api/profile",
        b"",
        grpc=False,
        method="GET",
        headers=[("authorization", account.headers["authorization"]), ("x-padding", "p" * (40 * 1024))],
        wait=6,
    )
    assert response.finished, "no answer"
    if response.reset is None:  # Envoy answers 431 JSON, or resets the stream: never a hang
        assert response.headers[":status"] == "431", response
        assert json.loads(response.body)["details"][0]["reason"] == "HEADERS_TOO_LARGE"


# ---- no hangs ----------------------------------------------------------------------------------

INCOMPLETE_BODIES = {
    "empty body": b"",
    "cut-off prefix": b"\x00\x00\x00",
    "length over the data": b"\x00\x00\x00\x00\x10ab",
}


def _status(response: h2raw.RawResponse) -> status_pb2.Status:
    assert response.grpc_details, response
    raw = response.grpc_details
    return status_pb2.Status.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))


def _reason(status: status_pb2.Status) -> tuple[str, str]:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason, info.domain
    raise AssertionError(f"no ErrorInfo in {status}")


def _every_method(stack: Stack) -> list[tuple[str, str]]:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    methods = []
    for name in stack.services:
        with grpc.insecure_channel(stack.grpc_address(name)) as channel:
            database = ProtoReflectionDescriptorDatabase(channel)
            from google.protobuf.descriptor_pool import DescriptorPool

            pool = DescriptorPool(database)
            for service in database.get_services():
                if service.startswith("grpc.reflection"):
                    continue
                for method in pool.FindServiceByName(service).methods:
                    methods.append((name, f"/{service}/{method.name}"))
    return methods


@pytest.mark.parametrize("body", list(INCOMPLETE_BODIES.values()), ids=list(INCOMPLETE_BODIES))
def test_an_incomplete_message_is_answered_at_once_by_every_method(stack: Stack, body: bytes) -> None:
    methods = _every_method(stack)
    assert len(methods) > 15 and ("users", "/grpc.health.v1.Health/Check") in methods
    for service, path in methods:
        response = h2raw.request(stack.grpc_address(service), path, body, wait=6)
        assert response.finished and response.seconds < 2, (service, path, response)
        assert response.grpc_status == "3", (service, path, response)
        assert _reason(_status(response)) == ("INCOMPLETE_REQUEST", f"pinexa.{service}")


@pytest.mark.parametrize("body", list(INCOMPLETE_BODIES.values()), ids=list(INCOMPLETE_BODIES))
@pytest.mark.parametrize(
    "path", ["/pinexa.users.v1.UserService/CreateUser", "/pinexa.auth.v1.AuthService/Login"]
)
def test_an_incomplete_message_through_envoy_is_answered_at_once(
    stack: Stack, body: bytes, path: str
) -> None:
    response = h2raw.request(stack.envoy_address, path, body, wait=6)
    assert response.finished and response.seconds < 2, response
    assert response.grpc_status == "3", response
    assert _reason(_status(response))[0] == "INCOMPLETE_REQUEST"


def test_a_stalled_client_is_cut_off_by_the_service(stack: Stack) -> None:
    response = h2raw.request(
        stack.grpc_address("users"),
        "/grpc.health.v1.Health/Check",
        b"\x00\x00\x00\x00\x10ab",
        end_stream=False,
    )
    assert response.finished and response.seconds < 6, response
    assert response.grpc_status == "4", response  # DEADLINE_EXCEEDED
    assert _reason(_status(response)) == ("REQUEST_TIMEOUT", "pinexa.users")


def test_a_stalled_client_is_cut_off_by_envoy(stack: Stack) -> None:
    response = h2raw.request(
        stack.envoy_address,
        "/pinexa.users.v1.UserService/CreateUser",
        b"\x00\x00\x00\x00\x10ab",
        end_stream=False,
    )
    assert response.finished and response.seconds < 6.5, response  # request_timeout: 5 s
    assert response.grpc_status == "4", response
    assert _reason(_status(response)) == ("REQUEST_TIMEOUT", "envoy")


def test_a_client_that_never_finishes_its_headers_is_cut_off_by_envoy(stack: Stack) -> None:
    host, port = stack.envoy_address.rsplit(":", 1)
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=15) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: pinexa\r\n")  # and never the blank line
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    assert time.monotonic() - started < 6.5  # request_headers_timeout: 5 s
    assert reply.startswith(b"HTTP/1.1 408") and b"REQUEST_TIMEOUT" in reply, reply


# ---- grpcurl through Envoy, and Envoy's own errors over gRPC --------------------------------------


def test_grpcurl_lists_exactly_the_public_services_through_envoy(stack: Stack, grpcurl: Grpcurl) -> None:
    listed = grpcurl("-plaintext", stack.envoy_address, "list", timeout=10)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [
        "grpc.reflection.v1alpha.ServerReflection",
        "pinexa.auth.v1.AuthService",
        "pinexa.data.v1.DataService",
        "pinexa.users.v1.UserService",
    ]
    described = grpcurl(
        "-plaintext", stack.envoy_address, "describe", "pinexa.data.v1.DataService", timeout=10
    )
    assert described.returncode == 0, described.stderr
    assert "rpc ListItems" in described.stdout
    message = grpcurl("-plaintext", stack.envoy_address, "describe", "pinexa.users.v1.User", timeout=10)
    assert "display_name" in message.stdout, message.stderr


def test_grpcurl_cannot_describe_an_internal_service_through_envoy(stack: Stack, grpcurl: Grpcurl) -> None:
    for symbol in (
        "pinexa.users.v1.UsersInternalService",
        "pinexa.data.v1.DataInternalService",
        "pinexa.auth.v1.AuthInternalService",
    ):
        described = grpcurl("-plaintext", stack.envoy_address, "describe", symbol, timeout=10)
        assert described.returncode != 0
        assert "not found" in described.stderr.lower(), described.stderr


def test_grpcurl_calls_through_envoy_without_a_protoset(
    stack: Stack, grpcurl: Grpcurl, account: Account
) -> None:
    me = grpcurl(
        "-plaintext", "-H", f"authorization: Bearer {account.access_token}",
        stack.envoy_address, "pinexa.users.v1.UserService/GetMe", data={}, timeout=10,
    )  # fmt: skip
    assert me.returncode == 0, me.stderr
    assert json.loads(me.stdout)["id"] == account.user_id
    missing = grpcurl(
        "-plaintext", stack.envoy_address, "pinexa.users.v1.UserService/GetMe", data={}, timeout=10
    )
    assert missing.returncode != 0
    assert "Unauthenticated" in missing.stderr and "TOKEN_MISSING" in missing.stderr, missing.stderr


def _envoy_error(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str, str, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error: Any = raised.value
    status = rpc_status.from_call(error)  # also checks code and message agree with the details
    assert status is not None, f"no grpc-status-details-bin: {error.code()} {error.details()}"
    reason, domain = _reason(status)
    return error.code(), reason, domain, error.details()


def test_envoys_errors_carry_status_details_for_grpc_callers(stack: Stack, client: httpx.Client) -> None:
    with grpc.insecure_channel(stack.envoy_address) as channel:
        users = users_pb2_grpc.UserServiceStub(channel)
        code, reason, domain, _ = _envoy_error(lambda: users.GetMe(users_pb2.GetMeRequest(), timeout=5))
        assert (code, reason, domain) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING", "envoy")
        rest = client.get("/api/profile")
        assert error_info(status_of(rest)) == {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": domain,
        }  # fmt: skip

        code, reason, domain, _ = _envoy_error(
            lambda: users.GetMe(
                users_pb2.GetMeRequest(), timeout=5, metadata=[("authorization", "Bearer x.y.z")]
            )
        )
        assert (code, reason, domain) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID", "envoy")

        unknown = channel.unary_unary("/pinexa.users.v1.UsersInternalService/GetIdentity")
        code, reason, domain, _ = _envoy_error(
            lambda: unknown(b"", timeout=5, metadata=[("authorization", "Bearer x")])
        )
        assert code == grpc.StatusCode.UNAUTHENTICATED  # the token is checked first, for every path
        nowhere = channel.unary_unary("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
        code, reason, domain, _ = _envoy_error(lambda: nowhere(b"", timeout=5))
        assert (code, reason, domain) == (grpc.StatusCode.UNIMPLEMENTED, "ROUTE_NOT_FOUND", "envoy")


def test_an_internal_service_through_envoy_is_unimplemented_with_details(
    stack: Stack, account: Account
) -> None:
    with grpc.insecure_channel(stack.envoy_address) as channel:
        internal = channel.unary_unary("/pinexa.users.v1.UsersInternalService/GetIdentity")
        code, reason, domain, _ = _envoy_error(
            lambda: internal(b"", timeout=5, metadata=[("authorization", f"Bearer {account.access_token}")])
        )
        assert (code, reason, domain) == (grpc.StatusCode.UNIMPLEMENTED, "ROUTE_NOT_FOUND", "envoy")
        # auth's revocation stream is internal too: no route at the edge.
        stream = channel.unary_stream("/pinexa.auth.v1.AuthInternalService/WatchRevocations")
        with pytest.raises(grpc.RpcError) as refused:
            list(stream(b"", timeout=5, metadata=[("authorization", f"Bearer {account.access_token}")]))
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


# ---- CORS, x-request-id, 405 ---------------------------------------------------------------------


def test_a_preflight_from_an_allowed_origin_is_answered_by_envoy(client: httpx.Client) -> None:
    response = client.options(
        "/api/v1/data",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, x-request-id",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-request-id"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["x-request-id"]


def test_responses_to_an_allowed_origin_expose_the_headers_clients_need(client: httpx.Client) -> None:
    for response in (client.get("/.well-known/jwks.json", headers={"origin": ORIGIN}),
                     client.get("/api/profile", headers={"origin": ORIGIN})):  # fmt: skip
        assert response.headers["access-control-allow-origin"] == ORIGIN
        exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
        assert exposed == {"x-request-id", "retry-after", "etag"}


def test_another_origin_gets_no_cors_headers(client: httpx.Client) -> None:
    preflight = client.options(
        "/api/v1/data", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code >= 400
    response = client.get("/.well-known/jwks.json", headers={"origin": "https://evil.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_every_response_carries_the_request_id_the_services_log(
    stack: Stack, client: httpx.Client, account: Account
) -> None:
    for response in (
        client.get("/api/profile", headers=account.headers),  # a service's answer
        client.get("/api/profile"),  # 401 from Envoy
        client.get("/api/v1/nope"),  # 404 from Envoy
        client.get("/healthz"),
    ):
        assert len(response.headers.get("x-request-id", "")) >= 16, (response.url, response.headers)
    mine = "edge-http-test-" + account.user_id
    response = client.get("/api/profile", headers={**account.headers, "x-request-id": mine})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == mine
    deadline = time.monotonic() + 5
    while mine not in stack.log_path("users").read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    logged = [json.loads(line) for line in stack.log_path("users").read_text().splitlines() if mine in line]
    assert logged and logged[0]["request_id"] == mine


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/api/v1/users", {"GET", "POST"}),
        ("POST", "/api/v1/users/abc", {"GET", "PUT", "PATCH", "DELETE"}),
        ("PATCH", "/api/v1/data?page_size=1", {"GET", "POST"}),
        ("GET", "/api/v1/auth/login", {"POST"}),
        ("DELETE", "/.well-known/jwks.json", {"GET"}),
    ],
)
def test_a_wrong_method_on_a_known_path_is_405_with_allow(
    client: httpx.Client, method: str, path: str, allow: set[str]
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405, response.text
    assert {m.strip() for m in response.headers["allow"].split(",")} == allow
    assert error_reason(status_of(response)) == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "GET", "DELETE"])
def test_a_wrong_method_on_a_custom_verb_path_is_405_not_another_methods_field_check(
    client: httpx.Client, method: str
) -> None:
    # /users/X:changePassword is not also /users/{id} with the id "X:changePassword" (the
    # transcoder splits off the verb), so its fields are not checked against UpdateUser's message.
    body = {"current_password": "correct horse battery", "new_password": "another horse battery"}
    path = f"/api/v1/users/{uuid.uuid4()}:changePassword"
    response = client.request(method, path, json=body)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "POST"
    assert error_reason(status_of(response)) == "METHOD_NOT_ALLOWED"


# ---- readiness -----------------------------------------------------------------------------------


def _ready(client: httpx.Client, want: str, timeout: float = 15) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/readyz")
        if response.json()["upstreams"]["data"] == want or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_readiness_reports_each_upstream_and_liveness_stays_trivial(
    stack: Stack, client: httpx.Client
) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "SERVING",
        "upstreams": {"auth": "SERVING", "users": "SERVING", "data": "SERVING"},
    }
    stack.stop_service(MONGO)
    try:
        down = _ready(client, "NOT_SERVING")
        assert down.status_code == 503, down.text
        assert down.json() == {
            "status": "NOT_SERVING",
            "upstreams": {"auth": "SERVING", "users": "SERVING", "data": "NOT_SERVING"},
        }
        assert client.get("/healthz").status_code == 200
    finally:
        stack.restart_service(MONGO)
    assert _ready(client, "SERVING").status_code == 200


def test_readiness_says_unavailable_for_a_service_that_is_down(stack: Stack, client: httpx.Client) -> None:
    stack.stop_service("auth")
    try:
        deadline = time.monotonic() + 10
        while (down := client.get("/readyz")).json()["upstreams"]["auth"] == "SERVING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert down.status_code == 503
        assert down.json()["upstreams"]["auth"] == "UNAVAILABLE"
    finally:
        stack.restart_service("auth")
    assert client.get("/readyz").status_code == 200
