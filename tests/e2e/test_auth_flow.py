"""Issue 3's checks over REST through a real Envoy, on the real auth and users processes.

This module starts its own stack (auth + users + Envoy, exactly as `make run` does, on free
ports) rather than the session one, for two settings:
- REFRESH_REUSE_GRACE_SECONDS=1, so "reuse after the grace window" takes one second, not ten;
- JWT_PRIVATE_KEYS set to a key made here, so forged tokens can be signed with the real key
  (a wrong iss, an expired token ...) as well as with strangers' keys;
and Envoy caches the JWKS for 1 s instead of 30 s, so the key-rotation test (last in this file,
because it changes the signing key) sees Envoy pick up a new key quickly.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import jwt
import pytest

from devstack.stack import Ports, Stack
from pinexa.users.v1 import users_pb2, users_pb2_grpc
from services.auth.keys import SigningKey, generate_private_key, private_key_pem, write_new_key
from tests.auth.forge import EDGE_REFUSES, claims, forgeries, signed
from tests.e2e.conftest import Account, error_reason, log_in, make_client, sign_up_and_log_in, status_of
from tests.support import error_info

pytestmark = pytest.mark.e2e

GRACE_SECONDS = 1.0


class AuthStack:
    def __init__(self, stack: Stack, key: SigningKey) -> None:
        self.stack = stack
        self.key = key
        self.client = make_client(stack.rest_url)

    def from_ip(self, address: str) -> httpx.Client:
        return make_client(self.stack.rest_url, local_address=address)


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStack]:
    private_key = generate_private_key("ES256")
    key = SigningKey.from_private_key(private_key, source="test")
    env = {
        "JWT_PRIVATE_KEYS": private_key_pem(private_key),
        "REFRESH_REUSE_GRACE_SECONDS": str(GRACE_SECONDS),
        "LOG_LEVEL": "INFO",
    }
    base: Path = tmp_path_factory.mktemp("auth-stack")
    with Stack(
        base, Ports.free(), env=env, services=("auth", "users"), envoy_overrides={"jwks_cache_duration": "1s"}
    ) as stack:
        running = AuthStack(stack, key)
        yield running
        running.client.close()


def refresh(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def profile(client: httpx.Client, access_token: str) -> httpx.Response:
    return client.get("/api/profile", headers={"authorization": f"Bearer {access_token}"})


def test_sign_up_login_profile_refresh_reuse_logout(auth_stack: AuthStack) -> None:
    client = auth_stack.client
    account = sign_up_and_log_in(client)
    me = profile(client, account.access_token)
    assert me.status_code == 200 and me.json()["username"] == account.username

    first = refresh(client, account.refresh_token)
    assert first.status_code == 200, first.text
    pair = first.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["token_type"] == "Bearer" and pair["expires_in"] == 900
    assert profile(client, pair["access_token"]).status_code == 200

    time.sleep(GRACE_SECONDS + 0.2)  # let the grace window of the first spend pass (not a wait for a server)
    reused = refresh(client, account.refresh_token)
    assert reused.status_code == 401
    assert error_reason(status_of(reused)) == "REFRESH_TOKEN_REUSED"
    # The family is revoked: the newest refresh token is dead too.
    newest = refresh(client, pair["refresh_token"])
    assert newest.status_code == 401 and error_reason(status_of(newest)) == "REFRESH_TOKEN_REVOKED"

    again = log_in(client, account.username, account.password, user_id=account.user_id)
    out = client.post(
        "/api/v1/auth/logout", json={"refresh_token": again.refresh_token}, headers=again.headers
    )
    assert out.status_code == 200 and out.json() == {"revoked_sessions": 1}
    after = refresh(client, again.refresh_token)
    assert after.status_code == 401 and error_reason(status_of(after)) == "REFRESH_TOKEN_REVOKED"
    # The session's access token is refused too, within 2 s (auth's revocation stream), though
    # Envoy's own check (signature, expiry) still passes.
    deadline = time.monotonic() + 2.0
    while (gone := profile(client, again.access_token)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling interval
    assert gone.status_code == 401 and error_reason(status_of(gone)) == "SESSION_REVOKED"


def test_logout_all_sessions(auth_stack: AuthStack) -> None:
    client = auth_stack.client
    account = sign_up_and_log_in(client)
    second = log_in(client, account.username, account.password, user_id=account.user_id)
    refused = client.post("/api/v1/auth/logout", json={"all_sessions": True})
    assert refused.status_code == 401 and error_reason(status_of(refused)) == "TOKEN_MISSING"
    out = client.post("/api/v1/auth/logout", json={"all_sessions": True}, headers=account.headers)
    assert out.status_code == 200 and out.json() == {"revoked_sessions": 2}
    for token in (account.refresh_token, second.refresh_token):
        assert refresh(client, token).status_code == 401


def test_two_concurrent_refreshes_do_not_log_the_user_out(auth_stack: AuthStack) -> None:
    account = sign_up_and_log_in(auth_stack.client)
    with (
        auth_stack.from_ip("127.0.0.1") as tab_a,
        auth_stack.from_ip("127.0.0.1") as tab_b,
        concurrent.futures.ThreadPoolExecutor(2) as pool,
    ):
        responses = list(pool.map(lambda c: refresh(c, account.refresh_token), (tab_a, tab_b)))
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    for response in responses:
        pair = response.json()
        assert profile(auth_stack.client, pair["access_token"]).status_code == 200
        assert refresh(auth_stack.client, pair["refresh_token"]).status_code == 200


def test_forged_tokens_are_rejected_at_the_edge_and_by_the_service(auth_stack: AuthStack) -> None:
    account = sign_up_and_log_in(auth_stack.client)
    tokens = forgeries(auth_stack.key, sub=account.user_id)
    assert set(EDGE_REFUSES) <= set(tokens)
    channel = grpc.insecure_channel(auth_stack.stack.grpc_address("users"))
    users = users_pb2_grpc.UserServiceStub(channel)
    try:
        for name, (token, reason) in tokens.items():
            response = profile(auth_stack.client, token)
            assert response.status_code == 401, (name, response.text)
            body = status_of(response)
            if name in EDGE_REFUSES:
                # Refused by Envoy's jwt_authn: no service answered (its ErrorInfo would say so).
                domains = [d.get("domain") for d in body.get("details", [])]
                assert "pinexa.users" not in domains, (name, body)
            with pytest.raises(grpc.RpcError) as caught:
                users.GetMe(
                    users_pb2.GetMeRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=5
                )
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
            info = error_info(caught.value)
            assert info is not None and info.reason == reason, (name, info)
        # A missing token: 401 at the edge, TOKEN_MISSING at the service.
        missing = auth_stack.client.get("/api/profile")
        assert missing.status_code == 401
        status_of(missing)
        with pytest.raises(grpc.RpcError) as caught:
            users.GetMe(users_pb2.GetMeRequest(), timeout=5)
        info = error_info(caught.value)
        assert info is not None and info.reason == "TOKEN_MISSING"
        # And a correctly signed token passes both.
        good = signed(auth_stack.key, claims(account.user_id))
        assert profile(auth_stack.client, good).status_code == 200
    finally:
        channel.close()


def test_twenty_wrong_passwords_lead_to_429(auth_stack: AuthStack) -> None:
    account = sign_up_and_log_in(auth_stack.client)
    with auth_stack.from_ip("127.0.0.31") as attacker:
        codes = []
        last = None
        for _ in range(20):
            last = attacker.post(
                "/api/v1/auth/login", json={"username": account.username, "password": "not the password"}
            )
            codes.append(last.status_code)
        assert codes[:5] == [401] * 5
        assert 429 in codes
        assert last is not None and last.status_code == 429
        body = status_of(last)
        assert error_reason(body) == "LOGIN_THROTTLED"
        assert any(d["@type"].endswith("google.rpc.RetryInfo") for d in body["details"])
        assert int(last.headers["retry-after"]) >= 1
        # During the back-off even the right password is refused.
        right = attacker.post(
            "/api/v1/auth/login", json={"username": account.username, "password": account.password}
        )
        assert right.status_code == 429


def test_a_device_token_gets_the_owner_in_during_a_flood(auth_stack: AuthStack) -> None:
    """Issue 9 over REST: the login response carries a device token; while wrong passwords pour
    in from several addresses, the owner sending it back gets in at once."""
    account = sign_up_and_log_in(auth_stack.client)
    login = {"username": account.username, "password": account.password}
    with auth_stack.from_ip("127.0.0.51") as owner:
        first = owner.post("/api/v1/auth/login", json=login)
        assert first.status_code == 200, first.text
        device = first.json()["device_token"]
        assert isinstance(device, str) and len(device) >= 43  # 256 random bits, base64url

        codes: list[tuple[int, str]] = []
        stop = threading.Event()

        def flood(address: str) -> None:
            with auth_stack.from_ip(address) as attacker:
                while not stop.is_set():
                    wrong = attacker.post(
                        "/api/v1/auth/login", json={"username": account.username, "password": "not it at all"}
                    )
                    codes.append((wrong.status_code, error_reason(status_of(wrong))))
                    stop.wait(0.07)  # under Envoy's per-address limit, so auth sees every guess

        addresses = [f"127.0.0.{n}" for n in range(52, 57)]
        with concurrent.futures.ThreadPoolExecutor(len(addresses)) as pool:
            running = [pool.submit(flood, address) for address in addresses]
            try:
                deadline = time.monotonic() + 30
                while (429, "LOGIN_THROTTLED") not in codes:
                    assert time.monotonic() < deadline, codes
                    time.sleep(0.02)
                # Without the device token the owner is locked out with the strangers ...
                plain = owner.post("/api/v1/auth/login", json=login)
                assert plain.status_code == 429 and error_reason(status_of(plain)) == "LOGIN_THROTTLED"
                # ... with it (either JSON spelling), they get in at once.
                for body in ({**login, "device_token": device}, {**login, "deviceToken": device}):
                    started = time.monotonic()
                    response = owner.post("/api/v1/auth/login", json=body)
                    assert response.status_code == 200, response.text
                    assert time.monotonic() - started < 5
                    assert response.json()["device_token"] == device
                    assert profile(owner, response.json()["access_token"]).status_code == 200
            finally:
                stop.set()
                for future in running:
                    future.result()
    assert {code for code, _ in codes} <= {401, 429}
    assert sum(1 for code, _ in codes if code == 401) <= 15


def test_unknown_user_and_wrong_password_look_the_same(auth_stack: AuthStack) -> None:
    account = sign_up_and_log_in(auth_stack.client)
    with auth_stack.from_ip("127.0.0.32") as client:
        wrong = client.post(
            "/api/v1/auth/login", json={"username": account.username, "password": "nope nope nope"}
        )
        unknown = client.post(
            "/api/v1/auth/login", json={"username": "no_such_user_x", "password": "nope nope nope"}
        )
    assert wrong.status_code == unknown.status_code == 401
    assert status_of(wrong)["message"] == status_of(unknown)["message"]
    assert error_reason(status_of(wrong)) == error_reason(status_of(unknown)) == "INVALID_CREDENTIALS"


def test_jwks_verifies_a_token_with_pyjwt(auth_stack: AuthStack) -> None:
    account: Account = sign_up_and_log_in(auth_stack.client)
    jwks_client = jwt.PyJWKClient(f"{auth_stack.stack.rest_url}/.well-known/jwks.json")
    signing_key = jwks_client.get_signing_key_from_jwt(account.access_token)
    decoded = jwt.decode(
        account.access_token,
        signing_key.key,
        algorithms=["ES256", "EdDSA"],
        audience="pinexa",
        issuer="pinexa-auth",
    )
    assert decoded["sub"] == account.user_id and decoded["role"] == "user"
    assert signing_key.key_id == auth_stack.key.kid


def test_key_rotation_through_the_edge(auth_stack: AuthStack) -> None:
    """The documented rotation: add a key that activates a little later, restart auth. Envoy and
    the services learn the new key while the old one still signs; then the new one signs, and
    tokens signed with the old, still-published key keep working."""
    client = auth_stack.client
    account = sign_up_and_log_in(client)
    old_kid = jwt.get_unverified_header(account.access_token)["kid"]
    activation = float(math.ceil(time.time()) + 4)  # whole seconds, as the key file holds them
    _, new_key = write_new_key(auth_stack.stack.base_dir / "keys", activates_at=activation)
    auth_stack.stack.restart_service("auth")

    jwks = client.get("/.well-known/jwks.json").json()
    assert [k["kid"] for k in jwks["keys"]] == [new_key.kid, old_kid]  # newest first
    # Before activation, new logins are still signed with the old key ...
    early = log_in(client, account.username, account.password, user_id=account.user_id)
    if time.time() < activation:
        assert jwt.get_unverified_header(early.access_token)["kid"] == old_kid
    # ... while Envoy fetches the new key (poll until a token signed with it passes the edge).
    probe = signed(new_key, claims(account.user_id))
    deadline = time.monotonic() + 20
    while profile(client, probe).status_code != 200:
        assert time.monotonic() < deadline, "Envoy never accepted the new key"
        time.sleep(0.1)  # polling interval
    # After activation the new key signs; both generations of tokens are accepted.
    while time.time() < activation:
        time.sleep(0.1)  # waiting for the activation time the test chose, not for a server
    late = log_in(client, account.username, account.password, user_id=account.user_id)
    assert jwt.get_unverified_header(late.access_token)["kid"] == new_key.kid
    assert profile(client, late.access_token).status_code == 200
    assert profile(client, account.access_token).status_code == 200
    # The refresh token from before the restart still works, and now gets a new-key token.
    pair = refresh(client, account.refresh_token).json()
    assert jwt.get_unverified_header(pair["access_token"])["kid"] == new_key.kid
