"""Issue 13 over REST through the real Envoy, on the real auth and users processes (the stack
`make run` starts), with pyotp as the authenticator: enrol and activate, log in with password
and code, a recovery code once, replay and two-steps-off codes refused, step-up refused with a
password-only session and accepted after reauthentication, and an admin removing the factor."""

from __future__ import annotations

import time

import httpx
import jwt
import pyotp
import pytest

from tests.e2e.conftest import Account, error_info, error_reason, status_of

pytestmark = pytest.mark.e2e


def _step_with_time_left() -> int:
    """The current RFC 6238 step, once at least 8 s of it are left."""
    if time.time() % 30 > 22:
        time.sleep(30 - time.time() % 30 + 0.05)
    return int(time.time() // 30)


def _mfa_token(client: httpx.Client, account: Account) -> str:
    response = client.post(
        "/api/v1/auth/login", json={"username": account.username, "password": account.password}
    )
    assert response.status_code == 401, response.text
    info = error_info(status_of(response))
    assert info["reason"] == "MFA_REQUIRED", info
    return str(info["metadata"]["mfa_token"])


def test_totp_through_envoy(fixture_client: httpx.Client, account: Account, admin: Account) -> None:
    client = fixture_client
    step = _step_with_time_left()
    enrolled = client.post(f"/api/v1/users/{account.user_id}/totp:enroll", json={}, headers=account.headers)
    assert enrolled.status_code == 200, enrolled.text
    body = enrolled.json()
    assert set(body) == {"secret", "otpauth_uri", "qr_svg"} and body["otpauth_uri"].startswith(
        "otpauth://totp/"
    )
    device = pyotp.TOTP(body["secret"])
    activated = client.post(
        f"/api/v1/users/{account.user_id}/totp:activate",
        json={"code": device.generate_otp(step - 1)},
        headers=account.headers,
    )
    assert activated.status_code == 200, activated.text
    codes = activated.json()["recovery_codes"]
    assert len(codes) == 10

    # Password and code.
    mfa = _mfa_token(client, account)
    for code in (device.generate_otp(step - 1), device.generate_otp(step - 2), device.generate_otp(step + 2)):
        refused = client.post("/api/v1/auth/login:mfa", json={"mfa_token": mfa, "code": code})
        assert refused.status_code == 401 and error_reason(status_of(refused)) == "INVALID_SECOND_FACTOR"
    pair = client.post("/api/v1/auth/login:mfa", json={"mfa_token": mfa, "code": device.generate_otp(step)})
    assert pair.status_code == 200, pair.text
    claims = jwt.decode(pair.json()["access_token"], options={"verify_signature": False})
    assert claims["amr"] == ["pwd", "otp"] and claims["auth_time"] == claims["iat"]
    stepped = {"authorization": f"Bearer {pair.json()['access_token']}"}
    # Replay of the code just used, with a fresh password step.
    replay = client.post(
        "/api/v1/auth/login:mfa",
        json={"mfa_token": _mfa_token(client, account), "code": device.generate_otp(step)},
    )
    assert replay.status_code == 401 and error_reason(status_of(replay)) == "INVALID_SECOND_FACTOR"

    # A recovery code works once.
    first = client.post(
        "/api/v1/auth/login:mfa", json={"mfa_token": _mfa_token(client, account), "recovery_code": codes[0]}
    )
    assert first.status_code == 200, first.text
    second = client.post(
        "/api/v1/auth/login:mfa", json={"mfa_token": _mfa_token(client, account), "recovery_code": codes[0]}
    )
    assert second.status_code == 401 and error_reason(status_of(second)) == "INVALID_SECOND_FACTOR"

    # Step-up: the password-only session the account had before activation may not change the
    # e-mail; after reauthenticating with a code it may.
    change = {"email": f"new.{account.email}"}
    old = client.patch(
        f"/api/v1/users/{account.user_id}?update_mask=email", json=change, headers=account.headers
    )
    assert old.status_code == 401 and error_reason(status_of(old)) == "REAUTHENTICATION_REQUIRED", old.text
    renewed = client.post(
        "/api/v1/auth/reauthenticate", json={"code": device.generate_otp(step + 1)}, headers=account.headers
    )
    assert renewed.status_code == 200, renewed.text
    fresh = {"authorization": f"Bearer {renewed.json()['access_token']}"}
    ok = client.patch(f"/api/v1/users/{account.user_id}?update_mask=email", json=change, headers=fresh)
    # Accepted: pending until the new address confirms it (the e-mail verification flow).
    assert ok.status_code == 200 and ok.json()["pending_email"] == change["email"], ok.text

    # Only an admin removes a factor, and the account's sessions end.
    mine = client.post(f"/api/v1/users/{account.user_id}/totp:remove", json={}, headers=stepped)
    assert mine.status_code == 403, mine.text
    removed = client.post(f"/api/v1/users/{account.user_id}/totp:remove", json={}, headers=admin.headers)
    assert removed.status_code == 200 and removed.json()["removed"] is True, removed.text
    assert removed.json()["revoked_sessions"] >= 3
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": pair.json()["refresh_token"]})
    assert refreshed.status_code == 401, refreshed.text
    # The ended sessions' access tokens are refused too, once users hears of it (about a second).
    deadline = time.monotonic() + 10
    while (gone := client.get(f"/api/v1/users/{account.user_id}", headers=fresh)).status_code == 200:
        assert time.monotonic() < deadline, "users still accepts an access token of an ended session"
        time.sleep(0.1)
    assert gone.status_code == 401 and error_reason(status_of(gone)) == "SESSION_REVOKED", gone.text
    plain = client.post(
        "/api/v1/auth/login", json={"username": account.username, "password": account.password}
    )
    assert plain.status_code == 200, plain.text
