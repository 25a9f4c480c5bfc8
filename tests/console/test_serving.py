"""Envoy serves the console at / on the same origin as the API, and auth's cookie mode keeps the
refresh token out of the page's reach (README "The web console")."""

from __future__ import annotations

import gzip
import re
import time

import httpx
import jwt
import pyotp
import pytest

from devstack import console
from devstack.stack import Stack
from envoy import render
from services.auth import servicer
from tests.e2e.conftest import error_reason, status_of, unique_name

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
COOKIE_MODE = {servicer.SESSION_MODE_HEADER: "cookie"}


def _sign_up(client: httpx.Client) -> str:
    name = unique_name("cookie")
    response = client.post(
        "/api/v1/users", json={"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return name


def _set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


@pytest.mark.parametrize("page", [f"/{page}" for page in render.CONSOLE_PAGES])
def test_every_console_page_is_the_app_with_a_strict_policy(console_client: httpx.Client, page: str) -> None:
    response = console_client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<div id="root">' in response.text
    assert response.headers["cache-control"] == "no-cache"
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_mailed_link_opens_the_console_page_through_envoy(
    console_stack: Stack, console_client: httpx.Client
) -> None:
    """PUBLIC_BASE_URL is the stack's edge, so the verification mail's link is a console page
    that Envoy serves with its token in the query (the page then calls the API)."""
    name = _sign_up(console_client)
    address = f"{name}@example.com"
    deadline, link = time.monotonic() + 20, None
    while link is None and time.monotonic() < deadline:
        for path in sorted(console_stack.mail_dir.glob("*.eml")):
            text = path.read_text()
            if f"To: {address}" in text:
                match = re.search(r"(http://\S+)/verify-email\?token=[A-Za-z0-9_-]+", text)
                assert match, text
                link = match
        time.sleep(0.2)
    assert link is not None, f"no verification mail to {address} in {console_stack.mail_dir}"
    assert link.group(1) == console_stack.rest_url
    response = console_client.get(link.group(0))
    assert response.status_code == 200
    assert '<div id="root">' in response.text
    assert response.headers["cache-control"] == "no-cache"
    # The page with another query string, or none, is the app too (it explains a bad link).
    for url in ("/reset-password?token=abc", "/verify-email", "/verify-email?token=x&utm_source=mail"):
        assert console_client.get(url).status_code == 200, url


def test_the_bundle_is_sent_gzipped_and_nothing_comes_from_elsewhere(console_client: httpx.Client) -> None:
    response = console_client.get("/assets/console.js", headers={"accept-encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    built = (console.DIST / "assets" / "console.js").read_bytes()
    assert response.content == built  # httpx decoded the gzip
    assert gzip.decompress((console.DIST / "console.js.gz").read_bytes()) == built
    index = (console.DIST / "index.html").read_text()
    assert "http://" not in index and "https://" not in index  # no CDN, no web fonts


def test_other_paths_stay_the_api_s_json_errors(console_client: httpx.Client) -> None:
    for path in ("/nope", "/api/v1/nope", "/items/extra/path"):
        response = console_client.get(path)
        assert response.status_code == 404, path
        assert error_reason(status_of(response)) == "ROUTE_NOT_FOUND"
    response = console_client.post("/items", json={})
    assert response.status_code == 404
    assert error_reason(status_of(response)) == "ROUTE_NOT_FOUND"


def test_cookie_mode_login_refresh_and_logout(console_client: httpx.Client) -> None:
    name = _sign_up(console_client)
    login = console_client.post(
        "/api/v1/auth/login", json={"username": name, "password": PASSWORD}, headers=COOKIE_MODE
    )
    assert login.status_code == 200, login.text
    body = login.json()
    assert body["refresh_token"] == "" and body["access_token"]
    cookies = _set_cookies(login)
    assert sorted(c.split("Path=")[1].split(";")[0] for c in cookies) == list(
        sorted(servicer.REFRESH_COOKIE_PATHS)
    )
    for cookie in cookies:
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # PINEXA_ENV=development: plain http://127.0.0.1
    token = cookies[0].split(";")[0].split("=", 1)[1]
    jar = {"cookie": f"{servicer.REFRESH_COOKIE}={token}"}

    # The cookie alone is not enough (CSRF): without the header it is never read.
    refused = console_client.post("/api/v1/auth/refresh", json={}, headers=jar)
    assert refused.status_code == 400
    assert error_reason(status_of(refused)) == "INVALID_INPUT"

    refreshed = console_client.post("/api/v1/auth/refresh", json={}, headers={**jar, **COOKIE_MODE})
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] == ""
    new_token = _set_cookies(refreshed)[0].split(";")[0].split("=", 1)[1]
    assert new_token != token

    new_jar = {"cookie": f"{servicer.REFRESH_COOKIE}={new_token}", **COOKIE_MODE}
    out = console_client.post("/api/v1/auth/logout", json={}, headers=new_jar)
    assert out.status_code == 200, out.text
    assert out.json() == {"revoked_sessions": 1}
    cleared = _set_cookies(out)
    assert len(cleared) == 2
    assert all("Max-Age=0" in c and f'{servicer.REFRESH_COOKIE}=""' in c for c in cleared)
    after = console_client.post("/api/v1/auth/refresh", json={}, headers=new_jar)
    assert after.status_code == 401
    assert error_reason(status_of(after)) == "REFRESH_TOKEN_REVOKED"


def test_native_clients_keep_the_json_bodies(console_client: httpx.Client) -> None:
    name = _sign_up(console_client)
    login = console_client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200
    assert login.json()["refresh_token"] and not _set_cookies(login)
    pair = login.json()
    refreshed = console_client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    assert refreshed.json()["refresh_token"] and not _set_cookies(refreshed)


def test_the_cookie_is_secure_outside_development() -> None:
    headers = servicer.set_cookie_headers("t0ken", servicer.CookiePolicy(secure=True, max_age_seconds=60))
    assert [value for _, value in headers] == [
        f"pinexa_refresh=t0ken; HttpOnly; Max-Age=60; Path={path}; SameSite=Strict; Secure"
        for path in servicer.REFRESH_COOKIE_PATHS
    ]


def test_cookie_mode_second_factor_step_sets_the_cookie(console_client: httpx.Client) -> None:
    """The console's sign-in with a code: login:mfa in cookie mode answers like Login (the refresh
    token in the HttpOnly cookie, never the body), and without the header keeps the JSON body."""
    name = _sign_up(console_client)
    login = console_client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    pair = login.json()
    auth = {"authorization": f"Bearer {pair['access_token']}"}
    user_id = jwt.decode(pair["access_token"], options={"verify_signature": False})["sub"]
    enrolled = console_client.post(f"/api/v1/users/{user_id}/totp:enroll", json={}, headers=auth)
    assert enrolled.status_code == 200, enrolled.text
    device = pyotp.TOTP(enrolled.json()["secret"])
    activated = console_client.post(
        f"/api/v1/users/{user_id}/totp:activate", json={"code": device.now()}, headers=auth
    )
    assert activated.status_code == 200, activated.text
    recovery = activated.json()["recovery_codes"]

    def mfa_token() -> str:
        answer = console_client.post(
            "/api/v1/auth/login", json={"username": name, "password": PASSWORD}, headers=COOKIE_MODE
        )
        assert answer.status_code == 401, answer.text
        assert not _set_cookies(answer)  # no session before the second step
        info = next(d for d in status_of(answer)["details"] if d.get("reason"))
        assert info["reason"] == "MFA_REQUIRED"
        return str(info["metadata"]["mfa_token"])

    step = console_client.post(
        "/api/v1/auth/login:mfa",
        json={"mfa_token": mfa_token(), "recovery_code": recovery[0]},
        headers=COOKIE_MODE,
    )
    assert step.status_code == 200, step.text
    assert step.json()["refresh_token"] == "" and step.json()["access_token"]
    cookies = _set_cookies(step)
    assert sorted(c.split("Path=")[1].split(";")[0] for c in cookies) == sorted(servicer.REFRESH_COOKIE_PATHS)
    assert all("HttpOnly" in c and "SameSite=Strict" in c for c in cookies)
    token = cookies[0].split(";")[0].split("=", 1)[1]
    jar = {"cookie": f"{servicer.REFRESH_COOKIE}={token}", **COOKIE_MODE}
    refreshed = console_client.post("/api/v1/auth/refresh", json={}, headers=jar)
    assert refreshed.status_code == 200, refreshed.text

    native = console_client.post(
        "/api/v1/auth/login:mfa", json={"mfa_token": mfa_token(), "recovery_code": recovery[1]}
    )
    assert native.status_code == 200, native.text
    assert native.json()["refresh_token"] and not _set_cookies(native)
