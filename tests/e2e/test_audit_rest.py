"""The security audit trail (issue 14) over REST through the real Envoy, on the stack `make run`
starts: on its SQLite default (the session's stack) and on PostgreSQL (a stack of this module's
own, users and auth sharing one throwaway database). A login, a failed login and a password change
appear in `GET /api/v1/audit-events` and `GET /api/v1/users/{id}/audit-events` with the request ids
the client sent and the client address Envoy saw; paging and filters; refusals as JSON; and no
password, token or hash in any record or in the services' log files."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import Ports, Stack
from tests.e2e.conftest import (
    FIXTURE_CLIENT_IP,
    Account,
    error_reason,
    log_in,
    make_client,
    sign_up_and_log_in,
    status_of,
    unique_name,
)
from tests.support import mail_token

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture(scope="module")
def pg_stack(
    tmp_path_factory: pytest.TempPathFactory, postgres_database_factory: Callable[[], str]
) -> Iterator[tuple[Stack, dict[str, str]]]:
    name = unique_name("admin")
    admin = {"username": name, "email": f"{name}@example.com", "password": "admin password 12"}
    env = {
        "DATABASE_URL": postgres_database_factory(),
        "ADMIN_USERNAME": admin["username"],
        "ADMIN_EMAIL": admin["email"],
        "ADMIN_PASSWORD": admin["password"],
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }
    with Stack(tmp_path_factory.mktemp("audit-pg"), Ports.free(), env=env) as running:
        yield running, admin


@pytest.fixture(params=["sqlite", "postgres"])
def setup(
    request: pytest.FixtureRequest, admin_credentials: dict[str, str]
) -> Iterator[tuple[Stack, httpx.Client, Account]]:
    """(the stack, a client from FIXTURE_CLIENT_IP, its admin logged in) on either database."""
    if request.param == "sqlite":
        stack: Stack = request.getfixturevalue("stack")
        credentials = admin_credentials
    else:
        stack, credentials = request.getfixturevalue("pg_stack")
    with make_client(stack.rest_url, local_address=FIXTURE_CLIENT_IP) as client:
        admin = log_in(client, credentials["username"], credentials["password"])
        yield stack, client, admin


def events(
    client: httpx.Client, admin: Account, path: str = "/api/v1/audit-events", **params: Any
) -> list[Any]:
    found: list[Any] = []
    page_token = ""
    while True:
        response = client.get(path, params={**params, "page_token": page_token}, headers=admin.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"audit_events", "next_page_token"}
        found.extend(body["audit_events"])
        page_token = body["next_page_token"]
        if not page_token:
            return found


def test_login_failed_login_and_password_change_with_their_request_ids(
    setup: tuple[Stack, httpx.Client, Account],
) -> None:
    stack, client, admin = setup
    account = sign_up_and_log_in(client)
    ids = {label: f"{label}-{uuid.uuid4().hex[:12]}" for label in ("login", "failed", "change")}

    login = client.post(
        "/api/v1/auth/login",
        json={"username": account.username, "password": account.password},
        headers={"x-request-id": ids["login"]},
    )
    assert login.status_code == 200, login.text
    tokens = login.json()
    failed = client.post(
        "/api/v1/auth/login",
        json={"username": account.username, "password": "not the password"},
        headers={"x-request-id": ids["failed"]},
    )
    assert failed.status_code == 401
    changed = client.post(
        f"/api/v1/users/{account.user_id}:changePassword",
        json={"current_password": account.password, "new_password": NEW_PASSWORD},
        headers={"authorization": f"Bearer {tokens['access_token']}", "x-request-id": ids["change"]},
    )
    assert changed.status_code == 200, changed.text

    mine = events(client, admin, filter=f'subject_id = "{account.user_id}"', page_size=2)
    by_rid: dict[str, list[Any]] = {}
    for event in mine:
        by_rid.setdefault(event["request_id"], []).append(event)
    [ok] = by_rid[ids["login"]]
    assert (ok["type"], ok["outcome"], ok["service"], ok["actor_id"]) == (
        "LOGIN_SUCCEEDED",
        "SUCCESS",
        "auth",
        account.user_id,
    )
    assert ok["client_address"] == FIXTURE_CLIENT_IP  # what Envoy saw
    assert set(ok) == {
        "id",
        "type",
        "outcome",
        "actor_id",
        "subject_id",
        "occurred_at",
        "client_address",
        "request_id",
        "service",
        "detail",
    }
    [bad] = by_rid[ids["failed"]]
    assert (bad["type"], bad["outcome"], bad["actor_id"], bad["detail"]["reason"]) == (
        "LOGIN_FAILED",
        "FAILURE",
        "",
        "INVALID_CREDENTIALS",
    )
    change = {e["type"]: e for e in by_rid[ids["change"]]}
    assert change["PASSWORD_CHANGED"]["service"] == "users"
    assert change["PASSWORD_CHANGED"]["client_address"] == FIXTURE_CLIENT_IP
    assert change["SESSION_REVOKED"]["detail"]["reason"] == "password_changed"  # the other session ended

    # The account reads its own, through its own path; the same records.
    own_token = log_in(client, account.username, NEW_PASSWORD, user_id=account.user_id)
    own = events(client, own_token, path=f"/api/v1/users/{account.user_id}/audit-events")
    assert own[0]["type"] == "LOGIN_SUCCEEDED"  # that login, newest first
    assert [e["id"] for e in own[1:]] == [e["id"] for e in mine]

    # Filters: by type, and by time.
    failures = events(client, admin, filter=f'subject_id = "{account.user_id}" AND type = LOGIN_FAILED')
    assert [e["request_id"] for e in failures] == [ids["failed"]]
    since = ok["occurred_at"]
    recent = events(client, admin, filter=f'subject_id = "{account.user_id}" AND occurred_at >= "{since}"')
    assert {ids["login"], ids["failed"], ids["change"]} <= {e["request_id"] for e in recent}
    assert all(e["occurred_at"] >= since for e in recent)

    # No secret in any record, nor in any service's log file.
    secret_tokens = [
        tokens[key] for key in ("access_token", "refresh_token", "device_token") if tokens.get(key)
    ]
    assert len(secret_tokens) >= 2, tokens
    secrets = {account.password, NEW_PASSWORD, "not the password", *secret_tokens}
    secrets |= {hashlib.sha256(str(s).encode()).hexdigest() for s in list(secrets)}
    dumped = json.dumps(mine)
    logs = "".join(Path(stack.log_path(name)).read_text(errors="replace") for name in ("auth", "users"))
    assert '"msg": "audit"' in logs and ids["login"] in logs
    for secret in secrets:
        assert str(secret) not in dumped and str(secret) not in logs


def test_refusals_are_json(setup: tuple[Stack, httpx.Client, Account]) -> None:
    _stack, client, admin = setup
    alice, bob = sign_up_and_log_in(client), sign_up_and_log_in(client)

    everyone = client.get("/api/v1/audit-events", headers=alice.headers)
    assert everyone.status_code == 403 and error_reason(status_of(everyone)) == "ADMIN_ONLY"
    others = client.get(f"/api/v1/users/{bob.user_id}/audit-events", headers=alice.headers)
    assert others.status_code == 403 and error_reason(status_of(others)) == "PERMISSION_DENIED"
    anonymous = client.get(f"/api/v1/users/{alice.user_id}/audit-events")
    assert anonymous.status_code == 401
    status_of(anonymous)
    bad_filter = client.get("/api/v1/audit-events", params={"filter": "type = "}, headers=admin.headers)
    assert bad_filter.status_code == 400 and error_reason(status_of(bad_filter)) == "INVALID_FILTER"
    bad_token = client.get("/api/v1/audit-events", params={"page_token": "x"}, headers=admin.headers)
    assert bad_token.status_code == 400 and error_reason(status_of(bad_token)) == "INVALID_INPUT"
    unknown = client.get("/api/v1/audit-events", params={"colour": "red"}, headers=admin.headers)
    assert unknown.status_code == 400 and error_reason(status_of(unknown)) == "INVALID_REQUEST"
    # An admin reads bob's.
    bobs = events(client, admin, path=f"/api/v1/users/{bob.user_id}/audit-events")
    assert {e["type"] for e in bobs} == {"ACCOUNT_CREATED", "LOGIN_SUCCEEDED"}


def test_auth_down_is_503_with_a_reason(
    stack: Stack, admin: Account, client_from: Callable[[str], httpx.Client]
) -> None:
    """Without auth's records a page would silently miss logins: users answers 503 instead."""
    client = client_from("127.0.0.31")
    stack.stop_service("auth")
    try:
        response = client.get("/api/v1/audit-events", headers=admin.headers)
        assert response.status_code == 503 and error_reason(status_of(response)) == "AUTH_UNAVAILABLE"
    finally:
        stack.restart_service("auth")


def _mailed_token(stack: Stack, address: str, timeout: float = 20) -> str:
    """The link's token in the mail `address` received (the stack's SMTP server writes .eml files)."""
    deadline = time.monotonic() + timeout
    while True:
        for path in sorted(stack.mail_dir.glob("*.eml")) if stack.mail_dir.exists() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if message["To"] == address:
                return mail_token(message)  # type: ignore[arg-type]
        assert time.monotonic() < deadline, f"no mail to {address}"
        time.sleep(0.1)  # polling interval


def test_an_e_mail_change_is_recorded_when_the_new_address_is_confirmed(
    setup: tuple[Stack, httpx.Client, Account],
) -> None:
    stack, client, admin = setup
    account = sign_up_and_log_in(client)
    new_address = f"new-{account.username}@example.com"
    asked = client.patch(
        f"/api/v1/users/{account.user_id}",
        params={"update_mask": "email"},
        json={"email": new_address},
        headers={**account.headers, "x-request-id": f"ask-{uuid.uuid4().hex[:12]}"},
    )
    assert asked.status_code == 200, asked.text
    path = f"/api/v1/users/{account.user_id}/audit-events"
    types = [e["type"] for e in events(client, account, path=path)]
    assert "EMAIL_CHANGE_REQUESTED" in types and "EMAIL_CHANGED" not in types  # not yet: pending

    confirm_id = f"confirm-{uuid.uuid4().hex[:12]}"
    confirmed = client.post(
        "/api/v1/auth/email:verify",
        json={"token": _mailed_token(stack, new_address)},
        headers={"x-request-id": confirm_id},
    )
    assert confirmed.status_code == 200, confirmed.text
    [changed] = events(client, admin, filter=f'subject_id = "{account.user_id}" AND type = EMAIL_CHANGED')
    assert (changed["request_id"], changed["actor_id"], changed["service"]) == (
        confirm_id,
        account.user_id,
        "users",
    )
    assert changed["client_address"] == FIXTURE_CLIENT_IP and changed["detail"] == {}


def test_a_long_client_request_id_is_cut_to_fit_not_a_failed_login(
    setup: tuple[Stack, httpx.Client, Account],
) -> None:
    """The client chooses x-request-id; one longer than the column (PostgreSQL checks widths) is
    recorded cut to 128 characters, and the login still succeeds."""
    _stack, client, admin = setup
    account = sign_up_and_log_in(client)
    long_id = "long-" + "x" * 300
    login = client.post(
        "/api/v1/auth/login",
        json={"username": account.username, "password": account.password},
        headers={"x-request-id": long_id},
    )
    assert login.status_code == 200, login.text
    recorded = events(client, admin, filter=f'subject_id = "{account.user_id}" AND type = LOGIN_SUCCEEDED')
    assert long_id[:128] in {e["request_id"] for e in recorded}
