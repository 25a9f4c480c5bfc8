"""The gateway on its own: a real Envoy (the LOCAL rendering, with a tight login rate limit) in
front of stand-in services (tests/e2e/fakes.py) that record what reaches them. This pins down
what the edge forwards and refuses, whatever the real services do.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.devstack import envoy
from services.devstack.stack import Child, Ports, envoy_child, envoy_ready
from tests.e2e.conftest import DESCRIPTOR_SET, error_info, status_of
from tests.e2e.fakes import Fakes, start_fakes
from tests.support import TestKeys

pytestmark = pytest.mark.e2e

LOGIN_BURST = 3


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
    assert "Jwt is missing" in no_token.stderr
    internal = grpcurl(*token, *target, "pinexa.data.v1.DataInternalService/PurgeUserData", data={})
    assert "Code: Unimplemented" in internal.stderr
    assert "{" not in internal.stderr.split("Message:", 1)[-1]  # no JSON body squeezed into it
    ok = grpcurl(*token, *target, "pinexa.users.v1.UserService/GetUser", data={"id": "abc"})
    assert ok.returncode == 0, ok.stderr


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


def test_login_rate_limit_applies_to_native_grpc_too(edge: Edge, grpcurl: Callable[..., Any]) -> None:
    target = [
        "-plaintext",
        "-protoset",
        str(DESCRIPTOR_SET),
        edge.address,
        "pinexa.auth.v1.AuthService/Login",
    ]
    outcomes = [grpcurl(*target, data={"username": "u1", "password": "pw"}) for _ in range(LOGIN_BURST + 3)]
    limited = [o for o in outcomes if o.returncode != 0]
    assert limited, [o.stdout for o in outcomes]
    assert all("Code: ResourceExhausted" in o.stderr for o in limited), [o.stderr for o in limited]
