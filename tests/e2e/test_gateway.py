"""The foundation's acceptance checks, over real sockets against the whole stack as `make run`
starts it: REST through Envoy's transcoder, native gRPC through Envoy, grpcurl on a service's
own port, Envoy's own errors as JSON, internal services kept inside, jwt_authn at the edge, and a
graceful SIGTERM of the users service under load.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from services.auth.keys import SigningKey, load_key_files
from tests.auth.forge import EDGE_REFUSES, claims, forgeries
from tests.e2e.conftest import (
    DESCRIPTOR_SET,
    Account,
    error_info,
    error_reason,
    field_violations,
    status_of,
    unique_name,
    wait_until_auth_reaches_users,
)

pytestmark = pytest.mark.e2e

Grpcurl = Callable[..., Any]


def needs(stack: Stack, *services: str) -> None:
    missing = [s for s in services if s not in stack.services]
    assert not missing, f"the stack did not start {', '.join(missing)}"


def sign_up_body(**overrides: str) -> dict[str, str]:
    name = unique_name("ada")
    return {
        "username": name,
        "email": f"{name}@example.com",
        "password": "correct horse battery",
        **overrides,
    }


# ---- REST through the transcoder ----------------------------------------------------------------


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "SERVING"}


def test_sign_up_returns_the_user_in_snake_case_without_password_material(
    stack: Stack, client: httpx.Client
) -> None:
    needs(stack, "users")
    body = sign_up_body(display_name="Ada Lovelace")
    response = client.post("/api/v1/users", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    user = response.json()
    assert user["username"] == body["username"]
    assert user["email"] == body["email"]
    assert user["display_name"] == "Ada Lovelace"
    assert user["role"] == "USER"
    assert {"id", "created_at", "updated_at", "etag"} <= set(user)
    assert "displayName" not in user and "createdAt" not in user
    assert "password" not in user
    text = response.text.lower()
    assert "correct horse battery" not in text and "argon2" not in text and "hash" not in text


def test_input_accepts_lower_camel_case_and_output_is_snake_case(
    client: httpx.Client, account: Account
) -> None:
    body = sign_up_body()
    body["displayName"] = "Camel Case"
    created = client.post("/api/v1/users", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["display_name"] == "Camel Case"
    login = client.post(
        "/api/v1/auth/login", json={"username": body["username"], "password": body["password"]}
    )
    logout = client.post("/api/v1/auth/logout", json={"refreshToken": login.json()["refresh_token"]})
    assert logout.status_code == 200 and logout.json() == {"revoked_sessions": 1}


def test_json_shape_is_stable_empty_fields_included_password_never(
    client: httpx.Client, account: Account
) -> None:
    # Empty strings and lists are printed, so clients need not guess whether a key exists...
    me = client.get("/api/profile", headers=account.headers).json()
    assert me["display_name"] == ""
    assert "password" not in me  # ...but the input-only password never is.
    empty = client.get("/api/v1/data", headers=account.headers).json()
    assert empty == {"items": [], "next_page_token": ""}


def test_seed_sign_up_path_is_the_same_rpc(stack: Stack, client: httpx.Client) -> None:
    needs(stack, "users")
    response = client.post("/api/signup", json=sign_up_body())
    assert response.status_code == 200, response.text
    assert "password" not in response.json()


def test_duplicate_sign_up_is_409_with_a_google_rpc_status(stack: Stack, client: httpx.Client) -> None:
    needs(stack, "users")
    body = sign_up_body()
    assert client.post("/api/v1/users", json=body).status_code == 200
    again = client.post("/api/v1/users", json=body)
    assert again.status_code == 409, again.text
    status = status_of(again)
    assert status["code"] == 6  # ALREADY_EXISTS
    info = error_info(status)
    assert info["domain"] == "pinexa.users"
    assert info["reason"]


def test_bad_email_is_400_with_a_field_violation(stack: Stack, client: httpx.Client) -> None:
    needs(stack, "users")
    response = client.post("/api/v1/users", json=sign_up_body(email="not-an-email"))
    assert response.status_code == 400, response.text
    status = status_of(response)
    assert status["code"] == 3  # INVALID_ARGUMENT
    violations = field_violations(status)
    assert any(name.endswith("email") for name in violations), violations


def test_get_user_by_id_as_themself(stack: Stack, client: httpx.Client, account: Account) -> None:
    response = client.get(f"/api/v1/users/{account.user_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == account.user_id
    assert "password" not in response.json()


# ---- Envoy's own replies are JSON google.rpc.Status -------------------------------------------


def test_unknown_path_is_404_json(client: httpx.Client) -> None:
    response = client.get("/api/v1/nope")
    assert response.status_code == 404
    status = status_of(response)
    assert status["code"] == 5  # NOT_FOUND
    assert error_info(status) == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "ROUTE_NOT_FOUND",
        "domain": "envoy",
    }


def test_unknown_method_on_a_known_path_is_405_json(client: httpx.Client) -> None:
    response = client.delete("/api/v1/users")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, GET"
    assert error_reason(status_of(response)) == "METHOD_NOT_ALLOWED"


def test_unknown_query_parameter_is_400_json(stack: Stack, client: httpx.Client, admin: Account) -> None:
    response = client.get("/api/v1/users", params={"page_size": 5, "colour": "blue"}, headers=admin.headers)
    assert response.status_code == 400, response.text
    status = status_of(response)
    assert status["code"] == 3
    assert error_reason(status) == "INVALID_REQUEST"
    assert "colour" in status["message"]


def test_known_query_parameters_pass(stack: Stack, client: httpx.Client, admin: Account) -> None:
    response = client.get("/api/v1/users", params={"page_size": 2}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert len(response.json()["users"]) <= 2


def test_malformed_json_body_is_400_json(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/users", content=b'{"username": "x", "email": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    status = status_of(response)
    assert status["code"] == 3
    assert error_reason(status) == "INVALID_REQUEST"


def test_wrongly_typed_json_field_is_400_json(client: httpx.Client) -> None:
    response = client.post("/api/v1/users", json={"username": ["not", "a", "string"]})
    assert response.status_code == 400
    assert error_reason(status_of(response)) == "INVALID_REQUEST"


def test_body_over_the_limit_is_413_json(client: httpx.Client) -> None:
    big = {"username": "x" * (3 * 1024 * 1024)}
    response = client.post("/api/v1/users", json=big)
    assert response.status_code == 413
    status = status_of(response)
    assert error_reason(status) == "REQUEST_TOO_LARGE"


def test_upstream_down_is_503_json(stack: Stack, client: httpx.Client, account: Account) -> None:
    stack.stop_service("users")
    try:
        response = client.get(f"/api/v1/users/{account.user_id}", headers=account.headers)
        assert response.status_code == 503, response.text
        status = status_of(response)
        assert status["code"] == 14  # UNAVAILABLE
        assert error_info(status) == {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "UPSTREAM_UNAVAILABLE",
            "domain": "envoy",
        }
    finally:
        stack.restart_service("users")
    assert client.get(f"/api/v1/users/{account.user_id}", headers=account.headers).status_code == 200
    wait_until_auth_reaches_users(client)


# ---- gRPC: reflection on the service port, native gRPC through Envoy --------------------------


def test_grpcurl_lists_and_health_checks_the_users_port(stack: Stack, grpcurl: Grpcurl) -> None:
    needs(stack, "users")
    listed = grpcurl("-plaintext", stack.grpc_address("users"), "list")
    assert listed.returncode == 0, listed.stderr
    services = listed.stdout.split()
    assert "pinexa.users.v1.UserService" in services
    assert "grpc.health.v1.Health" in services
    health = grpcurl("-plaintext", stack.grpc_address("users"), "grpc.health.v1.Health/Check")
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout) == {"status": "SERVING"}
    described = grpcurl("-plaintext", stack.grpc_address("users"), "describe", "pinexa.users.v1.UserService")
    assert "rpc CreateUser" in described.stdout


def test_grpcurl_through_envoy_with_the_protoset(stack: Stack, grpcurl: Grpcurl, account: Account) -> None:
    target = ["-plaintext", "-protoset", str(DESCRIPTOR_SET)]
    listed = grpcurl(*target, stack.envoy_address, "list")
    assert listed.returncode == 0, listed.stderr
    assert "pinexa.users.v1.UserService" in listed.stdout.split()

    got = grpcurl(
        *target,
        "-H",
        f"authorization: Bearer {account.access_token}",
        stack.envoy_address,
        "pinexa.users.v1.UserService/GetUser",
        data={"id": account.user_id},
    )
    assert got.returncode == 0, got.stderr
    user = json.loads(got.stdout)
    assert user["id"] == account.user_id and user["username"] == account.username

    name = unique_name("grpc")
    created = grpcurl(
        *target,
        stack.envoy_address,
        "pinexa.users.v1.UserService/CreateUser",
        data={
            "user": {"username": name, "email": f"{name}@example.com", "password": "correct horse battery"}
        },
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["username"] == name


INTERNAL_METHODS = {
    "users": ("pinexa.users.v1.UsersInternalService/VerifyCredentials", {"username": "x", "password": "y"}),
    "data": ("pinexa.data.v1.DataInternalService/PurgeUserData", {"user_id": "x"}),
}


@pytest.mark.parametrize("owner", sorted(INTERNAL_METHODS))
def test_internal_services_are_not_reachable_through_envoy(
    stack: Stack, client: httpx.Client, grpcurl: Grpcurl, account: Account, owner: str
) -> None:
    needs(stack, owner)
    method, request = INTERNAL_METHODS[owner]
    target = ["-plaintext", "-protoset", str(DESCRIPTOR_SET)]

    # It exists on the service's own port (refused there only for lack of the internal token)...
    direct = grpcurl(*target, stack.grpc_address(owner), method, data=request)
    assert "Unimplemented" not in direct.stderr, direct.stderr
    assert "Unauthenticated" in direct.stderr, direct.stderr

    # ...but through Envoy there is no route to it, even with a valid user token,
    with_token = grpcurl(
        *target,
        "-H",
        f"authorization: Bearer {account.access_token}",
        stack.envoy_address,
        method,
        data=request,
    )
    assert with_token.returncode != 0
    assert "Code: Unimplemented" in with_token.stderr, with_token.stderr
    # ...or with the internal token itself,
    sneaky = grpcurl(
        *target,
        "-H",
        f"authorization: Bearer {account.access_token}",
        "-H",
        f"x-pinexa-internal-token: {stack.env['INTERNAL_TOKEN']}",
        stack.envoy_address,
        method,
        data=request,
    )
    assert "Code: Unimplemented" in sneaky.stderr, sneaky.stderr
    # ...and it has no REST binding either.
    rest = client.post(f"/{method}", json=request, headers=account.headers)
    assert rest.status_code == 404
    assert error_reason(status_of(rest)) == "ROUTE_NOT_FOUND"


# ---- jwt_authn at the edge ---------------------------------------------------------------------


def _signing_key(stack: Stack) -> SigningKey:
    keys = load_key_files(stack.base_dir / "keys")
    assert keys, "auth wrote no dev key"
    return keys[-1]


def forged(stack: Stack, account: Account, name: str) -> str:
    """One of tests/auth/forge.py's forgeries, made with auth's real key for `account`."""
    return forgeries(_signing_key(stack), sub=account.user_id)[name][0]


def test_the_edge_accepts_a_real_token_and_one_signed_with_auths_key(
    stack: Stack, client: httpx.Client, account: Account
) -> None:
    needs(stack, "auth", "users")
    assert client.get("/api/profile", headers=account.headers).status_code == 200
    token = _signing_key(stack).sign(claims(account.user_id))
    response = client.get("/api/profile", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text  # so the refusals below are about the flaw


def test_missing_token_is_refused_at_the_edge_with_401_json(stack: Stack, client: httpx.Client) -> None:
    response = client.get("/api/profile")
    assert response.status_code == 401
    status = status_of(response)
    assert status["code"] == 16  # UNAUTHENTICATED
    assert error_info(status) == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "TOKEN_MISSING",
        "domain": "envoy",  # Envoy answered: the request never reached the users service
    }


@pytest.mark.parametrize("flaw", [*EDGE_REFUSES, "not a JWT"])
def test_forged_tokens_are_refused_at_the_edge_with_401_json(
    stack: Stack, client: httpx.Client, account: Account, flaw: str
) -> None:
    needs(stack, "auth", "users")
    token = forged(stack, account, flaw)
    for path in ("/api/profile", f"/api/v1/users/{account.user_id}", "/api/v1/data"):
        response = client.get(path, headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 401, (path, response.text)
        status = status_of(response)
        assert status["code"] == 16
        assert error_info(status)["domain"] == "envoy", status
        assert error_reason(status) == "TOKEN_INVALID"


def test_forged_token_is_refused_at_the_edge_over_native_grpc(
    stack: Stack, grpcurl: Grpcurl, account: Account
) -> None:
    needs(stack, "auth", "users")
    token = forged(stack, account, "signed by another key under the real kid")
    target = ["-plaintext", "-protoset", str(DESCRIPTOR_SET), stack.envoy_address]
    method = "pinexa.users.v1.UserService/GetMe"
    refused = grpcurl("-H", f"authorization: Bearer {token}", *target, method, data={})
    assert "Code: Unauthenticated" in refused.stderr, refused.stderr
    # Envoy's answer, not the service's: its ErrorInfo, as REST callers get it.
    assert '"domain":"envoy","reason":"TOKEN_INVALID"' in refused.stderr, refused.stderr
    missing = grpcurl(*target, method, data={})
    assert "Code: Unauthenticated" in missing.stderr and '"reason":"TOKEN_MISSING"' in missing.stderr


def test_public_routes_need_no_token_and_protected_ones_do(stack: Stack, client: httpx.Client) -> None:
    needs(stack, "auth", "users")
    assert client.get("/.well-known/jwks.json").status_code == 200
    assert client.post("/api/v1/users", json=sign_up_body()).status_code == 200
    login = client.post(
        "/api/v1/auth/login", json={"username": "nobody-" + uuid.uuid4().hex, "password": "x" * 12}
    )
    assert error_info(status_of(login))["domain"] == "pinexa.auth"  # reached auth, no token needed
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"})
    assert error_info(status_of(refresh))["domain"] == "pinexa.auth"
    logout = client.post("/api/v1/auth/logout", json={"refresh_token": "nope"})
    assert logout.status_code == 200, logout.text  # an unknown token ends nothing (RFC 7009)
    assert logout.json() == {"revoked_sessions": 0}
    # Listing users shares its path with sign-up, but not its method: it needs a token.
    listed = client.get("/api/v1/users")
    assert listed.status_code == 401 and error_info(status_of(listed))["domain"] == "envoy"
    for method, path in [("GET", "/api/v1/data"), ("POST", "/api/v1/data"), ("DELETE", "/api/v1/users/x")]:
        response = client.request(method, path, json={} if method == "POST" else None)
        assert response.status_code == 401, (method, path, response.text)
        assert error_reason(status_of(response)) == "TOKEN_MISSING"


def test_logout_with_an_expired_token_still_ends_the_session_but_never_all_sessions(
    stack: Stack, client: httpx.Client, account: Account
) -> None:
    needs(stack, "auth", "users")
    expired = {"authorization": f"Bearer {forged(stack, account, 'expired')}"}
    # all_sessions acts on the token's subject, so a bad token is refused - by auth itself: the
    # edge lets logout through so that a client whose access token expired can still log out.
    refused = client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": account.refresh_token, "all_sessions": True},
        headers=expired,
    )
    assert refused.status_code == 401
    assert error_info(status_of(refused))["domain"] == "pinexa.auth"
    # A plain logout with the same expired token ends the session its refresh token names.
    plain = client.post("/api/v1/auth/logout", json={"refresh_token": account.refresh_token}, headers=expired)
    assert plain.status_code == 200, plain.text
    assert plain.json()["revoked_sessions"] == 1
    after = client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert after.status_code == 401


def test_the_edge_forwards_the_token_to_the_service(
    stack: Stack, client: httpx.Client, account: Account
) -> None:
    me = client.get("/api/profile", headers=account.headers)
    assert me.status_code == 200 and me.json()["id"] == account.user_id


# ---- graceful shutdown under load ----------------------------------------------------------------


def _active_requests(client: httpx.Client, stack: Stack, cluster: str) -> int:
    stats = client.get(
        f"{stack.admin_url}/stats", params={"filter": f"^cluster.{cluster}.upstream_rq_active$"}
    )
    line = stats.text.strip()
    return int(line.rsplit(":", 1)[1]) if ":" in line else 0


async def test_sigterm_to_users_lets_in_flight_requests_finish(stack: Stack, client: httpx.Client) -> None:
    needs(stack, "users")
    bodies = [sign_up_body() for _ in range(8)]
    try:
        async with httpx.AsyncClient(base_url=stack.rest_url, timeout=30) as http:
            calls = [asyncio.create_task(http.post("/api/v1/users", json=body)) for body in bodies]
            # Wait until Envoy has requests outstanding at the users service (sign-up hashes the
            # password with argon2, so they take a while), then SIGTERM it.
            deadline = time.monotonic() + 10
            in_flight = 0
            while in_flight == 0 and time.monotonic() < deadline:
                in_flight = await asyncio.to_thread(_active_requests, client, stack, "users")
                await asyncio.sleep(0.005)
            assert in_flight > 0, "no request was in flight"
            users = stack.children["users"]
            users.signal(signal.SIGTERM)
            responses = await asyncio.gather(*calls)
        assert [r.status_code for r in responses] == [200] * len(bodies), [
            r.text for r in responses if r.is_error
        ]
        assert await asyncio.to_thread(users.wait, users.stop_timeout), "users did not exit after SIGTERM"
        assert users.process is not None and users.process.returncode == 0
    finally:
        # From this (the main) thread: a child started from a worker thread would not be tied
        # to this process's lifetime (see devstack.stack._die_with_parent).
        stack.restart_service("users")
        await asyncio.to_thread(wait_until_auth_reaches_users, client)
    # The accounts really exist: the same sign-ups now conflict.
    again = await asyncio.to_thread(client.post, "/api/v1/users", json=bodies[0])
    assert again.status_code == 409
