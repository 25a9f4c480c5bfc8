"""Password reset over REST through the real Envoy, on the real auth, users and data processes
and the dev stack's SMTP server, which writes each mail to the stack's mail/ folder (as `make run`
does to var/mail/): no token needed for either step, the same answer for an unknown address,
the link from the real .eml, every session ended (its access token refused by users and data
within 2 s), the old password refused, and the refused cases as JSON."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.conftest import Account, error_info, error_reason, field_violations, log_in, status_of
from tests.e2e.test_sessions_rest import refused_by_users_and_data
from tests.support import mail_token

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "a brand new passphrase"
RESET_CLIENT_IP = "127.0.0.13"  # its own mail budget: other suites' requests do not spend it


@pytest.fixture(scope="module")
def reset_client(client_from: Callable[[str], httpx.Client]) -> httpx.Client:
    return client_from(RESET_CLIENT_IP)


def reset_mails(mail_dir: Path, to: str, count: int = 1, timeout: float = 20) -> list[EmailMessage]:
    """The reset mails to `to` in the stack's mail folder, once there are `count`."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for eml in sorted(mail_dir.glob("*.eml")) if mail_dir.exists() else []:
            message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
            if message["To"] == to and str(message["Subject"]).startswith("Reset your"):
                found.append(message)
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"{len(found)} reset mail(s) to {to}"
            return found  # type: ignore[return-value]
        time.sleep(0.1)  # polling interval


def test_a_forgotten_password_is_reset_from_the_mailed_link(
    stack: Stack, reset_client: httpx.Client, fixture_client: httpx.Client, account: Account
) -> None:
    client = reset_client
    other = log_in(fixture_client, account.username, account.password, user_id=account.user_id)
    asked = client.post("/api/v1/auth/password:reset", json={"email": account.email})
    assert (asked.status_code, asked.json()) == (200, {}), asked.text
    unknown = client.post("/api/v1/auth/password:reset", json={"email": "nobody.here@example.com"})
    assert (unknown.status_code, unknown.content) == (200, asked.content)

    [message] = reset_mails(stack.mail_dir, account.email)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"{stack.rest_url}/reset-password?token=" in text
    token = mail_token(message, "/reset-password")

    short = client.post("/api/v1/auth/password:confirmReset", json={"token": token, "new_password": "short"})
    assert short.status_code == 400 and "new_password" in field_violations(status_of(short)), short.text
    done = client.post(
        "/api/v1/auth/password:confirmReset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert (done.status_code, done.json()) == (200, {"revoked_sessions": 2}), done.text

    for session in (account, other):
        refused_by_users_and_data(client, session)
        spent = client.post("/api/v1/auth/refresh", json={"refresh_token": session.refresh_token})
        assert spent.status_code == 401 and error_reason(status_of(spent)) == "REFRESH_TOKEN_REVOKED"
    old = client.post("/api/v1/auth/login", json={"username": account.username, "password": account.password})
    assert old.status_code == 401 and error_reason(status_of(old)) == "INVALID_CREDENTIALS"
    fresh = log_in(fixture_client, account.username, NEW_PASSWORD)
    assert client.get("/api/profile", headers=fresh.headers).json()["email_verified"] is True

    again = client.post(
        "/api/v1/auth/password:confirmReset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert again.status_code == 401, again.text
    info = error_info(status_of(again))
    assert (info["reason"], info["domain"]) == ("MAIL_TOKEN_USED", "pinexa.auth")


def test_a_superseded_link_and_a_made_up_one_are_refused(
    stack: Stack, reset_client: httpx.Client, new_account: Callable[[], Account]
) -> None:
    client, account = reset_client, new_account()
    for _ in range(2):
        assert client.post("/api/v1/auth/password:reset", json={"email": account.email}).status_code == 200
    first, second = reset_mails(stack.mail_dir, account.email, 2)
    for token, reason in (
        (mail_token(first, "/reset-password"), "MAIL_TOKEN_SUPERSEDED"),
        ("made-up", "MAIL_TOKEN_INVALID"),
    ):
        refused = client.post(
            "/api/v1/auth/password:confirmReset", json={"token": token, "new_password": NEW_PASSWORD}
        )
        assert refused.status_code == 401 and error_reason(status_of(refused)) == reason, refused.text
    ok = client.post(
        "/api/v1/auth/password:confirmReset",
        json={"token": mail_token(second, "/reset-password"), "new_password": NEW_PASSWORD},
    )
    assert ok.status_code == 200, ok.text


def test_too_many_requests_for_one_address_are_429_with_retry_after(
    client_from: Callable[[str], httpx.Client],
) -> None:
    client = client_from("127.0.0.14")
    address = "flooded.address@example.com"  # no account: the limit is the same
    answers = [client.post("/api/v1/auth/password:reset", json={"email": address}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429], [a.text for a in answers]
    limited = answers[-1]
    assert error_reason(status_of(limited)) == "TOO_MANY_MAILS"
    assert 0 < int(limited.headers["retry-after"]) <= 3600
    assert any("RetryInfo" in d["@type"] for d in status_of(limited)["details"])


def test_bad_input_is_json(reset_client: httpx.Client) -> None:
    for path, body, field in (
        ("/api/v1/auth/password:reset", {"email": "not an address"}, "email"),
        ("/api/v1/auth/password:confirmReset", {"token": "", "new_password": NEW_PASSWORD}, "token"),
    ):
        answer = reset_client.post(path, json=body)
        assert answer.status_code == 400 and answer.headers["content-type"].startswith("application/json")
        assert field in field_violations(status_of(answer)), answer.text
