"""End-to-end fixtures: the real stack (every service that exists + nx-27017 + Envoy), started
once per test session on free ports in a temporary directory, exactly as `make run` starts it
(devstack.stack.Stack).

Fixtures (mark tests with `@pytest.mark.e2e`):

- `stack`: the running Stack. `stack.rest_url` (Envoy: REST and native gRPC),
  `stack.envoy_address`, `stack.grpc_address("users")` (a service's own port),
  `stack.admin_url`, `stack.base_dir`, `stack.log_path("auth")`, `stack.services`,
  `stack.stop_service(name)` / `stack.restart_service(name)`, `stack.env` (what services see).
- `client`: an httpx.Client on Envoy (`client.get("/api/profile", headers=...)`).
- `client_from`: `client_from("127.0.0.9")` is a client whose connections come from that loopback
  address, so Envoy (and auth's per-IP throttling) sees a different client IP. Use a fresh
  address in tests that trip login throttling, so they don't throttle everyone else.
- `account`: a fresh user signed up and logged in through Envoy (an `Account`: `.user_id`,
  `.username`, `.email`, `.password`, `.access_token`, `.refresh_token`, `.headers`).
- `new_account`: a factory for more of them: `new_account()`.
- `admin`: the bootstrapped admin (ADMIN_* settings), logged in; an `Account` too.
- `grpcurl`: runs .venv/bin/grpcurl: `grpcurl("-plaintext", addr, "list")` -> CompletedProcess.

Helpers: `status_of(response)` returns the google.rpc.Status JSON of an error response after
checking it is JSON; `error_reason(body)` its ErrorInfo reason; `field_violations(body)`.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import Ports, Stack, venv_tool

REPO = Path(__file__).resolve().parents[2]
DESCRIPTOR_SET = REPO / "generated" / "pinexa.pb"
FIXTURE_CLIENT_IP = "127.0.0.2"  # logins made by the fixtures come from here


@dataclass
class Account:
    """A user created through Envoy, with a fresh token pair."""

    user_id: str
    username: str
    email: str
    password: str = field(repr=False)
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    role: str = "USER"

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.access_token}"}


def status_of(response: httpx.Response) -> dict[str, Any]:
    """The google.rpc.Status body of an error response (asserting it is one, as JSON)."""
    assert response.headers.get("content-type", "").startswith("application/json"), (
        f"{response.status_code} is not JSON: {response.headers.get('content-type')!r} {response.text!r}"
    )
    body = response.json()
    assert isinstance(body.get("code"), int) and body["code"] != 0, body
    assert isinstance(body.get("message"), str), body
    return dict(body)


def error_info(body: dict[str, Any]) -> dict[str, Any]:
    for detail in body.get("details", []):
        if detail.get("@type") == "type.googleapis.com/google.rpc.ErrorInfo":
            return dict(detail)
    raise AssertionError(f"no ErrorInfo in {body}")


def error_reason(body: dict[str, Any]) -> str:
    return str(error_info(body)["reason"])


def field_violations(body: dict[str, Any]) -> dict[str, str]:
    for detail in body.get("details", []):
        if detail.get("@type") == "type.googleapis.com/google.rpc.BadRequest":
            key = "field_violations" if "field_violations" in detail else "fieldViolations"
            return {v["field"]: v["description"] for v in detail[key]}
    return {}


def unique_name(prefix: str = "e2e") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def make_client(base_url: str, *, local_address: str | None = None) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=local_address) if local_address else None
    return httpx.Client(base_url=base_url, timeout=30, transport=transport)


def sign_up_and_log_in(client: httpx.Client, *, password: str | None = None) -> Account:
    """Sign up a fresh user through Envoy and log in as them."""
    username = unique_name("u")
    email = f"{username}@example.com"
    password = password or secrets.token_urlsafe(16)
    created = client.post("/api/v1/users", json={"username": username, "email": email, "password": password})
    assert created.status_code == 200, created.text
    return log_in(client, username, password, user_id=created.json()["id"], email=email)


def wait_until_auth_reaches_users(client: httpx.Client, timeout: float = 10.0) -> None:
    """After users restarts, auth finds it again within about a second (internal channels retry
    connecting at most 1 s apart); until then logins are 503 USERS_UNAVAILABLE. Tests that restart
    users call this, so the tests after them start on a settled stack."""
    username, password = unique_name("u"), secrets.token_urlsafe(16)
    created = client.post(
        "/api/v1/users", json={"username": username, "email": f"{username}@example.com", "password": password}
    )
    assert created.status_code == 200, created.text
    deadline = time.monotonic() + timeout
    while True:
        response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # polling interval
    assert response.status_code == 200, response.text


def log_in(
    client: httpx.Client, username: str, password: str, *, user_id: str = "", email: str = ""
) -> Account:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    tokens = response.json()
    account = Account(
        user_id=user_id,
        username=username,
        email=email,
        password=password,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )
    if not user_id:
        me = client.get("/api/profile", headers=account.headers)
        assert me.status_code == 200, me.text
        account.user_id, account.email, account.role = me.json()["id"], me.json()["email"], me.json()["role"]
    return account


@pytest.fixture(scope="session")
def admin_credentials() -> dict[str, str]:
    name = unique_name("admin")
    return {"username": name, "email": f"{name}@example.com", "password": secrets.token_urlsafe(18)}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, admin_credentials: dict[str, str]) -> Iterator[Stack]:
    """The whole stack on free ports, for the whole session."""
    base = tmp_path_factory.mktemp("stack")
    env = {
        "ADMIN_USERNAME": admin_credentials["username"],
        "ADMIN_EMAIL": admin_credentials["email"],
        "ADMIN_PASSWORD": admin_credentials["password"],
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }
    with Stack(base, Ports.free(), env=env) as running:
        yield running


@pytest.fixture(scope="session")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with make_client(stack.rest_url) as http:
        yield http


@pytest.fixture(scope="session")
def client_from(stack: Stack) -> Iterator[Callable[[str], httpx.Client]]:
    made: list[httpx.Client] = []

    def factory(local_address: str) -> httpx.Client:
        http = make_client(stack.rest_url, local_address=local_address)
        made.append(http)
        return http

    yield factory
    for http in made:
        http.close()


@pytest.fixture(scope="session")
def fixture_client(client_from: Callable[[str], httpx.Client]) -> httpx.Client:
    """The client the account fixtures use: its own source address, so tests that trip the
    per-IP login throttling (from 127.0.0.1) do not lock the fixtures out."""
    return client_from(FIXTURE_CLIENT_IP)


@pytest.fixture
def new_account(stack: Stack, fixture_client: httpx.Client) -> Callable[[], Account]:
    assert {"users", "auth"} <= set(stack.services), "the stack did not start users and auth"
    return lambda: sign_up_and_log_in(fixture_client)


@pytest.fixture
def account(new_account: Callable[[], Account]) -> Account:
    return new_account()


@pytest.fixture
def admin(stack: Stack, fixture_client: httpx.Client, admin_credentials: dict[str, str]) -> Account:
    assert {"users", "auth"} <= set(stack.services), "the stack did not start users and auth"
    return log_in(fixture_client, admin_credentials["username"], admin_credentials["password"])


@pytest.fixture(scope="session")
def grpcurl() -> Callable[..., subprocess.CompletedProcess[str]]:
    tool = venv_tool("grpcurl")

    def run(*args: str, data: Any = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        argv = [tool, *args]
        if data is not None:
            argv[1:1] = ["-d", json.dumps(data)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    return run
