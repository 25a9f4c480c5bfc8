"""The strict edge over REST through the real stack (issue 8: unknown fields, bad bytes; issue 9:
control characters).

- Unknown JSON fields, at any depth, and unknown query parameters are 400 INVALID_REQUEST with a
  BadRequest naming each one, and nothing changes. Proto names and lowerCamel spellings pass;
  free-form attributes take any keys.
- Invalid UTF-8, overlong encodings and lone surrogates anywhere in a path, query or body are 400
  INVALID_REQUEST, never a 500 with Python text.
- Control characters in any text field are 400 naming the field; tab and newline pass in content.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from typing import Any

import grpc
import httpx
import pytest
from grpc_status import rpc_status

from devstack.stack import Stack
from tests.e2e.conftest import Account, error_info, field_violations, status_of

pytestmark = pytest.mark.e2e

LEAKS = (
    "DecodeError",
    "<class",
    "Traceback",
    "google.protobuf.message",
    "Unexpected <",
    "grpc-",
    ":authority",
)


def _refused(response: httpx.Response, reason: str = "INVALID_REQUEST") -> dict[str, Any]:
    assert response.status_code == 400, (response.status_code, response.text)
    body = status_of(response)
    assert body["code"] == 3, body
    assert error_info(body)["reason"] == reason, body
    for leak in LEAKS:
        assert leak not in response.text, response.text
    return body


def _new_username() -> str:
    return f"s{uuid.uuid4().hex[:12]}"


# -- unknown fields ---------------------------------------------------------------------------


def test_a_typo_under_an_update_mask_is_refused_and_changes_nothing(
    client: httpx.Client, account: Account
) -> None:
    url = f"/api/v1/users/{account.user_id}"
    set_name = client.patch(
        f"{url}?update_mask=display_name", json={"display_name": "Ada"}, headers=account.headers
    )
    assert set_name.status_code == 200, set_name.text

    response = client.patch(
        f"{url}?update_mask=display_name", json={"dispaly_name": "x"}, headers=account.headers
    )
    body = _refused(response)
    assert set(field_violations(body)) == {"user.dispaly_name"}
    assert error_info(body)["domain"] == "envoy"
    assert client.get(url, headers=account.headers).json()["display_name"] == "Ada"


def test_sign_up_with_an_extra_field_is_refused_and_creates_nothing(client: httpx.Client) -> None:
    username = _new_username()
    user = {"username": username, "email": f"{username}@example.com", "password": "correct horse battery"}
    for path in ("/api/v1/users", "/api/signup"):
        body = _refused(client.post(path, json={**user, "nickname": "x", "extra": {"a": 1}}))
        assert set(field_violations(body)) == {"user.nickname", "user.extra"}
    login = client.post("/api/v1/auth/login", json={"username": username, "password": user["password"]})
    assert login.status_code == 401, login.text
    assert client.post("/api/v1/users", json=user).status_code == 200


def test_lower_camel_and_proto_names_are_accepted(client: httpx.Client, account: Account) -> None:
    username = _new_username()
    created = client.post(
        "/api/signup",
        json={
            "username": username,
            "email": f"{username}@example.com",
            "password": "correct horse battery",
            "displayName": "Camel",
        },
    )
    assert created.status_code == 200, created.text
    assert created.json()["display_name"] == "Camel"
    url = f"/api/v1/users/{account.user_id}"
    patched = client.patch(
        f"{url}?updateMask=displayName", json={"displayName": "C2"}, headers=account.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["display_name"] == "C2"
    listed = client.get("/api/v1/data?pageSize=5&page_size=5&orderBy=title", headers=account.headers)
    assert listed.status_code == 200, listed.text


def test_unknown_fields_at_depth_are_named_and_attributes_take_any_keys(
    client: httpx.Client, account: Account
) -> None:
    attributes = {"anything": {"deep": [{"x": 1}]}, "createdAt": "free", "nickname": True}
    item = client.post("/api/v1/data", json={"title": "t", "attributes": attributes}, headers=account.headers)
    assert item.status_code == 200, item.text
    item_id = item.json()["id"]

    response = client.put(
        f"/api/v1/data/{item_id}",
        json={"title": "changed", "attributes": {"ok": 1}, "colour": "red", "status": "DRAFT", "tilte": "x"},
        headers=account.headers,
    )
    assert set(field_violations(_refused(response))) == {"item.colour", "item.tilte"}
    assert client.get(f"/api/v1/data/{item_id}", headers=account.headers).json()["title"] == "t"


def test_unknown_fields_in_body_star_routes(client: httpx.Client) -> None:
    body = _refused(client.post("/api/v1/auth/login", json={"username": "a", "password": "b", "otp": "1"}))
    assert set(field_violations(body)) == {"otp"}
    body = _refused(client.post("/api/v1/auth/refresh", json={"refreshToken": "x", "refresh": "y"}))
    assert set(field_violations(body)) == {"refresh"}


@pytest.mark.parametrize(
    ("path", "unknown"),
    [
        ("/api/v1/data?page_size=5&colour=red", {"colour"}),
        ("/api/v1/data?pagesize=5&order_by=title&x.y=1", {"pagesize", "x.y"}),
        ("/api/v1/users/{id}?fields=all", {"fields"}),
        ("/api/profile?verbose=1", {"verbose"}),
    ],
)
def test_unknown_query_parameters_are_named(
    client: httpx.Client, account: Account, path: str, unknown: set[str]
) -> None:
    response = client.get(path.replace("{id}", account.user_id), headers=account.headers)
    assert set(field_violations(_refused(response))) == unknown


def test_an_unknown_query_parameter_on_a_write_changes_nothing(
    client: httpx.Client, account: Account
) -> None:
    url = f"/api/v1/users/{account.user_id}"
    response = client.patch(
        f"{url}?update_mask=display_name&dry_run=true", json={"display_name": "Nope"}, headers=account.headers
    )
    assert set(field_violations(_refused(response))) == {"dry_run"}
    assert client.get(url, headers=account.headers).json()["display_name"] != "Nope"


# -- bad bytes -------------------------------------------------------------------------------

BAD_ESCAPES = {
    "invalid": "%ff",
    "overlong-slash": "%c0%af",
    "overlong-3": "%e0%80%af",
    "cesu-surrogate": "%ed%a0%80",
    "truncated": "%e2%82",
    "past-10ffff": "%f4%90%80%80",
}


@pytest.mark.parametrize("bad", list(BAD_ESCAPES.values()), ids=list(BAD_ESCAPES))
@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("POST", "/api/v1/auth/login?username={bad}"),
        ("POST", "/api/v1/auth/refresh?refresh_token={bad}"),
        ("GET", "/api/v1/users/{bad}"),
        ("GET", "/api/v1/data?filter={bad}"),
        ("DELETE", "/api/v1/data/{bad}"),
        ("GET", "/api/v1/data?{bad}=1"),
        ("GET", "/nowhere/{bad}"),
    ],
)
def test_bad_bytes_in_a_path_or_query_are_400(
    client: httpx.Client, account: Account, method: str, template: str, bad: str
) -> None:
    response = client.request(method, template.format(bad=bad), headers=account.headers, content=b"{}")
    _refused(response)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"username": "\xff", "password": "x"}',
        b'{"username": "\xc0\xaf", "password": "x"}',
        b'{"username": "\xed\xa0\x80", "password": "x"}',
        b'{"username": "\\ud800", "password": "x"}',
        b'{"username": "a\\udc00b", "password": "x"}',
        b'{"username": "\\ud800\\u0041", "password": "x"}',
        b'{"\xff": 1}',
    ],
)
def test_bad_bytes_in_a_body_are_400(client: httpx.Client, raw: bytes) -> None:
    response = client.post("/api/v1/auth/login", content=raw, headers={"content-type": "application/json"})
    _refused(response)


def test_valid_non_ascii_and_surrogate_pairs_pass(client: httpx.Client, account: Account) -> None:
    raw = '{"title": "caf\u00e9 \u6f22\u5b57 \\ud83d\\ude00 \U0001f600"}'.encode()
    response = client.post(
        "/api/v1/data", content=raw, headers={**account.headers, "content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "caf\u00e9 \u6f22\u5b57 \U0001f600 \U0001f600"
    query = client.get("/api/v1/data", params={"query": "caf\u00e9"}, headers=account.headers)
    assert query.status_code == 200, query.text


# -- control characters (issue 9) ------------------------------------------------------------


def test_control_characters_are_refused_in_text_fields(client: httpx.Client, account: Account) -> None:
    username = _new_username()
    response = client.post(
        "/api/v1/users",
        json={
            "username": f"{username}\u0000",
            "email": f"{username}@example.com",
            "password": "correct horse\u0007!",
            "display_name": "A\tB",
        },
    )
    body = _refused(response, "INVALID_INPUT")
    assert set(field_violations(body)) == {"user.username", "user.password", "user.display_name"}

    ok = client.post(
        "/api/v1/data",
        json={"title": "t", "content": "line 1\n\tline 2\r\n", "attributes": {"note": "a\tb\nc"}},
        headers=account.headers,
    )
    assert ok.status_code == 200, ok.text
    bad = client.post(
        "/api/v1/data",
        json={"title": "t\u001b[31m", "content": "nul\u0000", "attributes": {"note": "\u007f"}},
        headers=account.headers,
    )
    assert set(field_violations(_refused(bad, "INVALID_INPUT"))) == {
        "item.title",
        "item.content",
        "item.attributes.note",
    }
    query = client.get("/api/v1/data", params={"query": "a\u0001"}, headers=account.headers)
    assert set(field_violations(_refused(query, "INVALID_INPUT"))) == {"query"}


@pytest.mark.parametrize(
    ("method", "payload"),
    [
        ("pinexa.users.v1.UserService/CreateUser", b"\x0a\x03\x12\x01\xff"),  # user.username: invalid UTF-8
        ("pinexa.data.v1.DataService/ListItems", b"\x1a\x01\xff"),  # filter: invalid UTF-8
        ("pinexa.data.v1.DataService/ListItems", b"\xff\xff\xff\xff"),  # not a message
        ("pinexa.auth.v1.AuthService/Login", b"\x0a\x02\xc0\xaf"),  # username: overlong
    ],
)
def test_native_grpc_bad_bytes_through_envoy_are_invalid_argument(
    stack: Stack, account: Account, method: str, payload: bytes
) -> None:
    """Envoy passes native gRPC through; the service answers INVALID_ARGUMENT with details."""
    with grpc.insecure_channel(stack.envoy_address) as channel:
        call = channel.unary_unary(
            f"/{method}", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        with pytest.raises(grpc.RpcError) as caught:
            call(payload, timeout=10, metadata=(("authorization", f"Bearer {account.access_token}"),))
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    for leak in LEAKS:
        assert leak not in (error.details() or "")
    status = rpc_status.from_call(error)
    assert status is not None and status.details, "no google.rpc.Status details"


# -- a seeded fuzz of the filter's JSON walk and byte checks -----------------------------------

FUZZ_KEYS = [
    "title",
    "content",
    "attributes",
    "status",
    "etag",
    "display_name",
    "displayName",
    "username",
    "password",
    "email",
    "refresh_token",
    "x",
    "",
    "a.b",
    "\\u0074itle",
    "\u00e9",
    '"',
    "\\",
]


def _fuzz_value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.4:
        return rng.choice([1, -2.5e300, True, None, "", "text", "\u00e9\u6f22", 'a\\"b', "\ud83d\ude00"])
    if roll < 0.7:
        return {rng.choice(FUZZ_KEYS): _fuzz_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return [_fuzz_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def _fuzz_body(rng: random.Random) -> bytes:
    text = json.dumps(
        _fuzz_value(rng, 0)
        if rng.random() < 0.2
        else {rng.choice(FUZZ_KEYS): _fuzz_value(rng, 1) for _ in range(rng.randint(0, 5))}
    )
    raw = text.encode()
    mutation = rng.random()
    if mutation < 0.15:  # truncated
        raw = raw[: rng.randint(0, len(raw))]
    elif mutation < 0.3:  # a random byte somewhere
        at = rng.randint(0, len(raw))
        raw = raw[:at] + bytes([rng.randint(0, 255)]) + raw[at:]
    elif mutation < 0.4:  # an escape somewhere
        at = rng.randint(0, len(raw))
        raw = raw[:at] + rng.choice([b"\\ud800", b"\\udc00", b"\\u00", b"\\", b'"', b"{", b"]"]) + raw[at:]
    return raw


def test_a_fuzz_of_bodies_and_queries_gets_no_5xx_and_no_python_text(
    stack: Stack, client: httpx.Client, account: Account
) -> None:
    rng = random.Random(20261203)
    routes = [
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/users"),
        ("PATCH", f"/api/v1/users/{account.user_id}?update_mask=display_name"),
        ("PUT", f"/api/v1/users/{account.user_id}"),
        ("POST", "/api/v1/data"),
        ("PATCH", "/api/v1/data/000000000000000000000000?update_mask=title"),
    ]
    statuses: dict[int, int] = {}
    for _ in range(300):
        method, path = rng.choice(routes)
        if rng.random() < 0.2:
            sep = "&" if "?" in path else "?"
            path += sep + rng.choice(
                ["a=1", "%ff=1", "update_mask=%e2%82", "pageSize=x", "=", "&&", "x.y.z=1"]
            )
        started = time.monotonic()
        response = client.request(
            method,
            path,
            content=_fuzz_body(rng),
            headers={**account.headers, "content-type": "application/json"},
        )
        assert time.monotonic() - started < 6
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (method, path, response.status_code, response.text)
        if response.status_code >= 400:
            status_of(response)
            for leak in LEAKS:
                assert leak not in response.text, response.text
    assert statuses.get(400, 0) > 50, statuses  # the fuzz does reach the refusals
    # A script error would let the request through unchecked: there must have been none.
    stats = httpx.get(f"{stack.admin_url}/stats", params={"filter": r"lua\.errors"}).text
    assert re.findall(r"lua\.errors: (\d+)", stats) and set(re.findall(r"lua\.errors: (\d+)", stats)) == {
        "0"
    }, stats


def test_a_large_body_is_scanned_promptly(client: httpx.Client, account: Account) -> None:
    """Near the 2 MiB cap, mostly non-ASCII (the slow path of the UTF-8 check), with the unknown
    field last: the refusal comes from the filter alone, after a full scan."""
    content = "caf\u00e9 \u6f22\u5b57 " * 60_000  # 1.5 MB of UTF-8
    raw = json.dumps({"title": "t", "content": content, "attributes": {"k": [content[:1000]] * 100}, "zz": 1})
    timings = []
    for _ in range(3):
        started = time.monotonic()
        response = client.post(
            "/api/v1/data",
            content=raw.encode(),
            headers={**account.headers, "content-type": "application/json"},
        )
        timings.append(time.monotonic() - started)
        assert set(field_violations(_refused(response))) == {"item.zz"}
    assert min(timings) < 1.0, timings
