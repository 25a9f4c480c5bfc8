"""The gateway on its own: a real Envoy (the LOCAL rendering, with a tight login rate limit) in
front of stand-in services (tests/e2e/fakes.py) that record what reaches them. This pins down
what the edge forwards and refuses, whatever the real services do.
"""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from devstack.stack import PUBLIC_SERVICE, Child, Ports, envoy_child, envoy_ready
from envoy import render as envoy
from pinexa.auth.v1 import auth_pb2
from pinexa.data.v1 import data_pb2  # noqa: F401 (registers the descriptors)
from pinexa.users.v1 import users_pb2  # noqa: F401
from services.auth.server import PUBLIC_METHODS as AUTH_PUBLIC_METHODS
from services.users.server import PUBLIC_METHODS as USERS_PUBLIC_METHODS
from tests.e2e.conftest import DESCRIPTOR_SET, error_info, status_of
from tests.e2e.fakes import Fakes, start_fakes
from tests.support import TestKeys

pytestmark = pytest.mark.e2e

LOGIN_BURST = 3
TOKEN_MISSING = envoy.GRPC_ERRORS["TOKEN_MISSING"][1]  # Envoy's grpc-message for a missing token


@dataclass
class Edge:
    fakes: Fakes
    envoy: Child
    rest_url: str
    address: str
    keys: TestKeys

    def client(self, local_address: str = "127.0.0.1") -> httpx.Client:
        return httpx.Client(
            base_url=self.rest_url, timeout=10, transport=httpx.HTTPTransport(local_address=local_address)
        )

    @property
    def bearer(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys.mint('u1')}"}


class FakesThread:
    """The fakes on an event loop of their own, so that the (synchronous) tests can block on
    HTTP calls while the fakes answer them."""

    def __init__(self, keys: TestKeys) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fakes", daemon=True)
        self._thread.start()
        self.fakes: Fakes = asyncio.run_coroutine_threadsafe(start_fakes(keys), self._loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fakes.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    keys = TestKeys()
    running = FakesThread(keys)
    fakes = running.fakes
    ports = Ports.free()
    base: Path = tmp_path_factory.mktemp("edge")
    params = envoy.local_params(
        listen_port=ports.envoy,
        admin_port=ports.admin,
        auth_port=fakes.auth.port,
        users_port=fakes.users.port,
        data_port=fakes.data.port,
        login_rate_client_burst=LOGIN_BURST,
        login_rate_client_per_second=1,
    )
    process = envoy_child(envoy.write(params, base / "envoy.yaml"), base / "envoy.log", concurrency=1)
    process.start({}, cwd=base)
    rest_url = f"http://127.0.0.1:{ports.envoy}"
    admin_url = f"http://127.0.0.1:{ports.admin}"
    try:
        deadline = time.monotonic() + 30
        while not envoy_ready(rest_url, admin_url, clusters=("auth", "users", "data"), jwks=True):
            assert process.running(), process.log_tail()
            assert time.monotonic() < deadline, "Envoy in front of the fakes did not get ready"
            time.sleep(0.1)  # polling interval
        yield Edge(fakes, process, rest_url, f"127.0.0.1:{ports.envoy}", keys)
    finally:
        process.signal(signal.SIGTERM)
        process.wait(10)
        running.stop()


@pytest.fixture
def http(edge: Edge) -> Iterator[httpx.Client]:
    with edge.client() as client:
        yield client


def test_the_client_address_reaches_the_service_in_x_envoy_external_address(edge: Edge) -> None:
    with edge.client("127.0.0.7") as client:
        response = client.get(
            "/api/profile",
            headers={
                **edge.bearer,
                # A client cannot choose the address the services see, nor steer Envoy.
                "x-envoy-external-address": "203.0.113.9",
                "x-forwarded-for": "203.0.113.10",
                "x-envoy-retry-on": "5xx",
                "x-envoy-upstream-rq-timeout-ms": "1",
            },
        )
    assert response.status_code == 200, response.text
    seen = edge.fakes.recorder.calls["GetMe"]
    assert seen["x-envoy-external-address"] == "127.0.0.7"
    assert "x-envoy-internal" not in seen
    assert "x-envoy-retry-on" not in seen and "x-envoy-upstream-rq-timeout-ms" not in seen
    # x-forwarded-for keeps what the client sent, followed by what Envoy appended; for a loopback
    # peer Envoy appends its own address, so it is not the header to trust for the client IP.
    assert seen["x-forwarded-for"].startswith("203.0.113.10,")
    # What the transcoder adds, and the token, forwarded as gRPC metadata.
    assert seen["x-envoy-original-path"] == "/api/profile"
    assert seen["x-envoy-original-method"] == "GET"
    assert seen["authorization"].startswith("Bearer ")
    assert seen["x-request-id"]


def test_login_is_rate_limited_per_client_address_at_the_edge(edge: Edge) -> None:
    def attempt(client: httpx.Client) -> httpx.Response:
        return client.post("/api/v1/auth/login", json={"username": "u1", "password": "pw"})

    with edge.client("127.0.0.21") as first, edge.client("127.0.0.22") as second:
        codes = [attempt(first).status_code for _ in range(LOGIN_BURST)]
        assert codes == [200] * LOGIN_BURST
        limited = attempt(first)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "1"
        status = status_of(limited)
        assert status["code"] == 8  # RESOURCE_EXHAUSTED
        assert error_info(status) == {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMITED",
            "domain": "envoy",
        }
        assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retry_delay": "1s"} in status["details"]
        # Another client is not affected, nor are other methods for the first one.
        assert attempt(second).status_code == 200
        assert first.post("/api/v1/auth/logout", json={}).status_code == 200
        # The bucket refills.
        time.sleep(1.1)  # the refill interval itself is what is being tested
        assert attempt(first).status_code == 200


def test_grpc_callers_get_grpc_statuses_not_json(edge: Edge, grpcurl: Callable[..., Any]) -> None:
    target = ["-plaintext", "-protoset", str(DESCRIPTOR_SET), edge.address]
    token = ["-H", f"authorization: {edge.bearer['authorization']}"]
    no_token = grpcurl(*target, "pinexa.users.v1.UsersInternalService/VerifyCredentials", data={})
    assert "Code: Unauthenticated" in no_token.stderr  # deny by default comes first
    assert '"reason":"TOKEN_MISSING"' in no_token.stderr  # the Status details, as over REST
    internal = grpcurl(*token, *target, "pinexa.data.v1.DataInternalService/PurgeUserData", data={})
    assert "Code: Unimplemented" in internal.stderr
    assert '"reason":"ROUTE_NOT_FOUND"' in internal.stderr
    message = internal.stderr.split("Message:", 1)[-1].splitlines()[0]
    assert "{" not in message  # no JSON body squeezed into grpc-message
    ok = grpcurl(*token, *target, "pinexa.users.v1.UserService/GetUser", data={"id": "abc"})
    assert ok.returncode == 0, ok.stderr


def test_grpcs_own_unavailable_text_never_reaches_a_client(
    http: httpx.Client, edge: Edge, grpcurl: Callable[..., Any]
) -> None:
    """A status without details is gRPC's own (a call cancelled when a service's shutdown grace
    ran out: UNAVAILABLE "Cancelling all calls"), not a service's; the edge answers it as it
    answers an unreachable service. (The stand-in users aborts the way gRPC core does.)"""
    unavailable = envoy.GRPC_ERRORS["UPSTREAM_UNAVAILABLE"][1]
    response = http.get("/api/v1/users/grpc-cancelled", headers=edge.bearer)
    assert response.status_code == 503
    body = status_of(response)
    assert (body["code"], body["message"]) == (14, unavailable)
    assert (error_info(body)["reason"], error_info(body)["domain"]) == ("UPSTREAM_UNAVAILABLE", "envoy")
    assert "Cancelling" not in response.text
    target = ["-plaintext", "-protoset", str(DESCRIPTOR_SET), edge.address]
    token = ["-H", f"authorization: {edge.bearer['authorization']}"]
    native = grpcurl(*token, *target, "pinexa.users.v1.UserService/GetUser", data={"id": "grpc-cancelled"})
    assert "Code: Unavailable" in native.stderr and '"reason":"UPSTREAM_UNAVAILABLE"' in native.stderr
    assert "Cancelling" not in native.stderr
    # A service's own UNAVAILABLE (with its details) is not touched: see test_database_outage.py.


def test_the_edge_serves_the_jwks_it_uses(http: httpx.Client, edge: Edge) -> None:
    jwks = http.get("/.well-known/jwks.json").json()
    assert jwks["keys"][0]["kid"] == edge.keys.kid
    assert http.get("/api/v1/users/abc", headers=edge.bearer).status_code == 200
    other = TestKeys(kid=edge.keys.kid)
    refused = http.get("/api/v1/users/abc", headers={"authorization": f"Bearer {other.mint('u1')}"})
    assert refused.status_code == 401
    assert error_info(status_of(refused))["domain"] == "envoy"


def test_a_request_body_within_the_limit_passes(http: httpx.Client) -> None:
    body = {"username": "x" * (1024 * 1024), "email": "a@example.com"}
    response = http.post("/api/v1/users", json=body)
    assert response.status_code == 200, response.text[:300]


def test_login_rate_limit_applies_to_native_grpc_too(edge: Edge) -> None:
    # grpcio rather than grpcurl: the calls must land well within one refill interval (a second),
    # which a process start per call would not promise on a loaded machine.
    login = auth_pb2.LoginRequest(username="u1", password="pw").SerializeToString()
    codes = []
    limited: Any = None
    with grpc.insecure_channel(edge.address) as channel:
        call = channel.unary_unary("/pinexa.auth.v1.AuthService/Login")
        for _ in range(LOGIN_BURST + 3):
            try:
                call(login, timeout=10)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.append(error.code())
                limited = error
    # A bucket of LOGIN_BURST, plus at most one refill while these few milliseconds pass.
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 2, codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    # The same google.rpc.Status a REST caller gets: ErrorInfo RATE_LIMITED and a RetryInfo.
    status = rpc_status.from_call(limited)
    assert status is not None, "no grpc-status-details-bin"
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(retry)
    assert (info.reason, info.domain, retry.retry_delay.seconds) == ("RATE_LIMITED", "envoy", 1)


# ---- jwt_authn covers every method, REST and native gRPC alike ---------------------------------

# What the edge lets through without a token: the services' own public methods (auth's, sign-up,
# e-mail verification and the two steps of a password reset). Every other method of the public
# services, today's and any added later, must need one.
EDGE_PUBLIC = AUTH_PUBLIC_METHODS | USERS_PUBLIC_METHODS


def public_api() -> list[tuple[str, MethodDescriptor]]:
    """(gRPC path, method) of every method of the services Envoy routes, from their descriptors."""
    pool = descriptor_pool.Default()
    return [
        (f"/{full_name}/{method.name}", method)
        for full_name in PUBLIC_SERVICE.values()
        for method in pool.FindServiceByName(full_name).methods
    ]


def rest_bindings(method: MethodDescriptor) -> list[tuple[str, str]]:
    """(HTTP method, a concrete path) of each google.api.http binding of `method`."""
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    bindings = []
    for binding in (rule, *rule.additional_bindings):
        verb = binding.WhichOneof("pattern")
        if verb is None or verb == "custom":
            continue
        template = getattr(binding, verb)
        bindings.append((verb.upper(), re.sub(r"\{[^}]*\}", "x", template)))
    return bindings


def answered_upstream(metadata: Any) -> bool:
    """Envoy adds x-envoy-upstream-service-time only to answers that came from a service."""
    return any(key == "x-envoy-upstream-service-time" for key, _ in metadata or ())


def grpc_call(
    channel: grpc.Channel, path: str, metadata: tuple[tuple[str, str], ...]
) -> tuple[grpc.StatusCode, str, Any]:
    """(code, details, response metadata) of a call with an empty request (raw bytes: b"" is any
    empty message). The login bucket of 127.0.0.1 may be empty after the rate-limit tests, and a
    gRPC client cannot pick its source address: a refusal by the rate limiter is retried until
    the bucket refills (once a second)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            _, outcome = channel.unary_unary(path).with_call(b"", metadata=metadata, timeout=10)
            return grpc.StatusCode.OK, "", (*outcome.initial_metadata(), *outcome.trailing_metadata())
        except grpc.RpcError as error:  # a trailers-only answer: its headers are the trailers
            code, details, headers = error.code(), error.details(), error.trailing_metadata()
        limited = code == grpc.StatusCode.RESOURCE_EXHAUSTED and not answered_upstream(headers)
        if not limited or time.monotonic() > deadline:
            return code, details, headers
        time.sleep(0.2)  # polling interval


def test_every_method_needs_a_token_at_the_edge_unless_public_over_native_grpc(edge: Edge) -> None:
    api = public_api()
    assert {path for path, _ in api} >= EDGE_PUBLIC
    with grpc.insecure_channel(edge.address) as channel:
        for path, _ in api:
            for metadata in ((), tuple(edge.bearer.items())):
                code, details, headers = grpc_call(channel, path, metadata)
                if metadata or path in EDGE_PUBLIC:
                    # Routed to its service (whatever the stand-in then answers).
                    assert answered_upstream(headers), (path, bool(metadata), code, details)
                else:
                    assert code == grpc.StatusCode.UNAUTHENTICATED, (path, code, details)
                    assert details == TOKEN_MISSING and not answered_upstream(headers), (path, details)


def test_the_edge_takes_the_token_only_from_the_authorization_header(edge: Edge) -> None:
    # jwt_authn's default would also read ?access_token=..., which the services never do.
    token = edge.keys.mint("u1")
    with grpc.insecure_channel(edge.address) as channel:
        code, details, headers = grpc_call(
            channel, f"/pinexa.users.v1.UserService/GetMe?access_token={token}", ()
        )
    assert code == grpc.StatusCode.UNAUTHENTICATED and details == TOKEN_MISSING, (code, details)
    assert not answered_upstream(headers)


def test_every_rest_binding_needs_a_token_at_the_edge_unless_public(edge: Edge) -> None:
    http = edge.client("127.0.0.41")  # a login bucket of its own
    seen = 0
    for path, method in public_api():
        for verb, url in rest_bindings(method):
            seen += 1
            body = {} if verb in ("POST", "PUT", "PATCH") else None
            anonymous = http.request(verb, url, json=body)
            if path in EDGE_PUBLIC:
                assert "x-envoy-upstream-service-time" in anonymous.headers, (verb, url, anonymous.text)
            else:
                assert anonymous.status_code == 401, (verb, url, anonymous.text)
                assert error_info(status_of(anonymous))["reason"] == "TOKEN_MISSING", (verb, url)
                assert "x-envoy-upstream-service-time" not in anonymous.headers
            # With a token every binding is transcoded and routed to its service.
            signed_in = http.request(verb, url, json=body, headers=edge.bearer)
            assert "x-envoy-upstream-service-time" in signed_in.headers, (verb, url, signed_in.text)
    http.close()
    assert seen >= 17  # every row of the REST contract, additional bindings included
