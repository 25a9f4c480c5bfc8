"""Issue 12's sessions over REST through the real Envoy, on the real auth, users and data
processes (the session stack, exactly as `make run` starts it): list and end sessions, the
revoked session's access token refused by users and data within 2 s although Envoy's own JWT
check still passes it, an admin's sign-out and disable, password change, and UpdateUser
refusing a password."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import jwt
import pytest

from devstack.stack import Stack
from tests.e2e.conftest import Account, error_reason, field_violations, log_in, status_of

pytestmark = pytest.mark.e2e


def sid(account: Account) -> str:
    return str(jwt.decode(account.access_token, options={"verify_signature": False})["sid"])


def refused_by_users_and_data(client: httpx.Client, account: Account, within: float = 2.0) -> float:
    """Seconds from now until both users and data refuse the account's access token (401
    SESSION_REVOKED); fails if that takes longer than `within`."""
    started = time.monotonic()
    pending = {"/api/profile", "/api/v1/data"}
    while pending:
        for path in sorted(pending):
            response = client.get(path, headers=account.headers)
            if response.status_code == 401:
                assert error_reason(status_of(response)) == "SESSION_REVOKED", response.text
                pending.discard(path)
            else:
                assert response.status_code == 200, response.text
        elapsed = time.monotonic() - started
        assert elapsed < within or not pending, (
            f"{sorted(pending)} still accept the token after {elapsed:.2f} s"
        )
        if pending:
            time.sleep(0.02)  # polling interval
    return time.monotonic() - started


def test_list_and_end_a_session_from_another(
    stack: Stack, fixture_client: httpx.Client, account: Account, new_account: Callable[[], Account]
) -> None:
    client = fixture_client
    other_device = log_in(client, account.username, account.password, user_id=account.user_id)
    listed = client.get("/api/v1/auth/sessions", headers=other_device.headers)
    assert listed.status_code == 200, listed.text
    sessions = {s["id"]: s for s in listed.json()["sessions"]}
    assert set(sessions) == {sid(account), sid(other_device)}
    assert sessions[sid(other_device)]["current"] is True and sessions[sid(account)]["current"] is False
    mine = sessions[sid(account)]
    assert mine["user_agent"].startswith("python-httpx/") and mine["client_address"] == "127.0.0.2"
    assert set(mine) == {"id", "created_at", "last_used_at", "user_agent", "client_address", "current"}

    # Another account cannot end it.
    stranger = new_account()
    refused = client.delete(f"/api/v1/auth/sessions/{sid(account)}", headers=stranger.headers)
    assert refused.status_code == 404 and error_reason(status_of(refused)) == "SESSION_NOT_FOUND"
    assert client.get("/api/v1/data", headers=account.headers).status_code == 200

    ended = client.delete(f"/api/v1/auth/sessions/{sid(account)}", headers=other_device.headers)
    assert ended.status_code == 200 and ended.json() == {}, ended.text
    elapsed = refused_by_users_and_data(client, account)
    print(f"revocation to refusal by users and data through Envoy: {elapsed * 1000:.0f} ms")  # noqa: T201
    spent = client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert spent.status_code == 401 and error_reason(status_of(spent)) == "REFRESH_TOKEN_REVOKED"
    assert client.get("/api/profile", headers=other_device.headers).status_code == 200


def test_logout_of_the_other_sessions(fixture_client: httpx.Client, account: Account) -> None:
    client = fixture_client
    mine = log_in(client, account.username, account.password, user_id=account.user_id)
    out = client.post("/api/v1/auth/logout", json={"other_sessions": True}, headers=mine.headers)
    assert out.status_code == 200 and out.json() == {"revoked_sessions": 1}, out.text
    refused_by_users_and_data(client, account)
    assert client.get("/api/profile", headers=mine.headers).status_code == 200


def test_an_admin_signs_out_and_disables_an_account(
    fixture_client: httpx.Client, admin: Account, account: Account, new_account: Callable[[], Account]
) -> None:
    client = fixture_client
    stranger = new_account()
    for path in (f"/api/v1/users/{account.user_id}:signOut", f"/api/v1/users/{account.user_id}:disable"):
        refused = client.post(path, json={}, headers=stranger.headers)
        assert refused.status_code == 403 and error_reason(status_of(refused)) == "ADMIN_ONLY", refused.text

    out = client.post(f"/api/v1/users/{account.user_id}:signOut", json={}, headers=admin.headers)
    assert out.status_code == 200 and out.json() == {"revoked_sessions": 1}, out.text
    refused_by_users_and_data(client, account)

    again = log_in(client, account.username, account.password, user_id=account.user_id)
    disabled = client.post(f"/api/v1/users/{account.user_id}:disable", json={}, headers=admin.headers)
    assert disabled.status_code == 200 and disabled.json() == {"revoked_sessions": 1}, disabled.text
    refused_by_users_and_data(client, again)
    login = client.post(
        "/api/v1/auth/login", json={"username": account.username, "password": account.password}
    )
    assert login.status_code == 403 and error_reason(status_of(login)) == "ACCOUNT_DISABLED"
    shown = client.get(f"/api/v1/users/{account.user_id}", headers=admin.headers)
    assert shown.json()["disabled"] is True

    enabled = client.post(f"/api/v1/users/{account.user_id}:enable", json={}, headers=admin.headers)
    assert enabled.status_code == 200 and enabled.json() == {}
    log_in(client, account.username, account.password, user_id=account.user_id)


def test_change_password_over_rest(fixture_client: httpx.Client, admin: Account, account: Account) -> None:
    client = fixture_client
    mine = log_in(client, account.username, account.password, user_id=account.user_id)
    path = f"/api/v1/users/{account.user_id}:changePassword"
    body = {"current_password": account.password, "new_password": "a brand new passphrase"}

    by_admin = client.post(path, json=body, headers=admin.headers)
    assert by_admin.status_code == 403 and error_reason(status_of(by_admin)) == "NOT_YOUR_ACCOUNT"
    wrong = client.post(path, json={**body, "current_password": "not the password"}, headers=mine.headers)
    assert wrong.status_code == 400 and error_reason(status_of(wrong)) == "INVALID_CREDENTIALS"
    assert "current_password" in field_violations(wrong.json())
    weak = client.post(path, json={**body, "new_password": "short"}, headers=mine.headers)
    assert weak.status_code == 400 and "new_password" in field_violations(status_of(weak))

    changed = client.post(path, json=body, headers=mine.headers)
    assert changed.status_code == 200 and changed.json() == {"revoked_sessions": 1}, changed.text
    refused_by_users_and_data(client, account)
    assert client.get("/api/profile", headers=mine.headers).status_code == 200
    old = client.post("/api/v1/auth/login", json={"username": account.username, "password": account.password})
    assert old.status_code == 401
    log_in(client, account.username, body["new_password"], user_id=account.user_id)


def test_update_user_refuses_a_password(fixture_client: httpx.Client, account: Account) -> None:
    response = fixture_client.patch(
        f"/api/v1/users/{account.user_id}?update_mask=display_name",
        json={"display_name": "Ada", "password": "a brand new passphrase"},
        headers=account.headers,
    )
    assert response.status_code == 400, response.text
    body = status_of(response)
    assert error_reason(body) == "PASSWORD_NOT_UPDATABLE" and "user.password" in field_violations(body)
    log_in(fixture_client, account.username, account.password, user_id=account.user_id)
