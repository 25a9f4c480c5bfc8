"""The data API over REST through the real Envoy, with the whole stack as `make run` starts it
(auth, users, data, nx-27017): what issue 4 checks by hand, as tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

from devstack.stack import MONGO, Stack
from tests.e2e.conftest import Account, error_reason, field_violations, status_of

pytestmark = pytest.mark.e2e

ATTRIBUTES = {"color": "red", "n": 3, "ok": True, "tags": ["a", "b"], "nested": {"deep": {"x": 1.5}}}


@pytest.fixture(autouse=True)
def _needs_data(stack: Stack) -> None:
    assert "data" in stack.services, "the stack did not start the data service"


def create(client: httpx.Client, account: Account, **fields: Any) -> dict[str, Any]:
    body = {"title": "an item", **fields}
    response = client.post("/api/v1/data", json=body, headers=account.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def list_url(**params: Any) -> str:
    """/api/v1/data with its query string percent-encoded (spaces as %20, as curl's
    --data-urlencode does). Envoy's transcoder does not turn '+' into a space unless
    query_param_unescape_plus is set, so form-style encoding would reach us as '+'."""
    return f"/api/v1/data?{urlencode(params, quote_via=quote)}" if params else "/api/v1/data"


def poll(predicate: Callable[[], bool], *, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)  # polling interval


def test_create_and_read_back_exactly(client: httpx.Client, account: Account) -> None:
    created = create(
        client, account, title="First", content="hello", status="PUBLISHED", attributes=ATTRIBUTES
    )
    assert set(created) >= {"id", "user_id", "title", "content", "status", "attributes", "created_at", "etag"}
    assert created["user_id"] == account.user_id
    assert created["status"] == "PUBLISHED"
    assert created["attributes"] == ATTRIBUTES
    assert created["created_at"].endswith("Z")
    fetched = client.get(f"/api/v1/data/{created['id']}", headers=account.headers)
    assert fetched.status_code == 200
    assert fetched.json() == created
    # lowerCamel input is accepted too (updateMask as a query parameter); output stays snake_case.
    camel = client.post(
        "/api/v1/data", json={"title": "camel", "attributes": {"k": "v"}}, headers=account.headers
    )
    assert camel.status_code == 200 and "user_id" in camel.json()
    patched = client.patch(
        f"/api/v1/data/{camel.json()['id']}",
        params={"updateMask": "title"},
        json={"title": "Camel"},
        headers=account.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "Camel" and patched.json()["attributes"] == {"k": "v"}


def test_25_items_in_three_pages(client: httpx.Client, account: Account) -> None:
    made = {create(client, account, title=f"item {n}")["id"] for n in range(25)}
    seen: list[str] = []
    pages = 0
    token = ""
    while True:
        response = client.get(list_url(**{"page_size": 10, "page_token": token}), headers=account.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        seen.extend(item["id"] for item in body.get("items", []))
        token = body.get("next_page_token", "")
        if not token:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == made


def test_filters_and_search(client: httpx.Client, account: Account) -> None:
    red = create(client, account, title="red one", status="PUBLISHED", attributes={"color": "red", "n": 5})
    create(client, account, title="blue one", status="DRAFT", attributes={"color": "blue", "n": 1})
    word = create(client, account, title="notes", content="the quick brown fox jumps")

    def titles(**params: Any) -> set[str]:
        response = client.get(list_url(**params), headers=account.headers)
        assert response.status_code == 200, response.text
        return {item["title"] for item in response.json().get("items", [])}

    assert titles(filter='status = "PUBLISHED"') == {"red one"}
    assert titles(filter='attributes.color = "red"') == {"red one"}
    assert titles(filter="attributes.n >= 3 AND status = PUBLISHED") == {"red one"}
    assert titles(filter='created_at > "2000-01-01T00:00:00Z"') >= {"red one", "blue one", "notes"}
    assert titles(query="fox") == {word["title"]}
    # Form-style encoding ('+' for a space, as httpx and HTML forms send it) works as well.
    plus = client.get("/api/v1/data", params={"filter": 'status = "PUBLISHED"'}, headers=account.headers)
    assert plus.status_code == 200, plus.text
    assert {item["title"] for item in plus.json()["items"]} == {"red one"}
    assert titles(order_by="title", filter="attributes.n > 0") == {"red one", "blue one"}
    bad = client.get(list_url(**{"filter": "status = = x"}), headers=account.headers)
    assert bad.status_code == 400
    body = status_of(bad)
    assert error_reason(body) == "INVALID_FILTER"
    assert "filter" in field_violations(body)
    assert red["id"]


def test_stale_etag_is_409_and_changes_nothing(client: httpx.Client, account: Account) -> None:
    item = create(client, account, title="v1", content="body")
    path = f"/api/v1/data/{item['id']}"
    patched = client.patch(
        path,
        params={"update_mask": "title"},
        json={"title": "v2", "etag": item["etag"]},
        headers=account.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "v2" and patched.json()["content"] == "body"
    stale = client.put(path, json={"title": "lost", "etag": item["etag"]}, headers=account.headers)
    assert stale.status_code == 409
    assert error_reason(status_of(stale)) == "ETAG_MISMATCH"
    assert client.get(path, headers=account.headers).json() == patched.json()
    gone = client.delete(path, params={"etag": item["etag"]}, headers=account.headers)
    assert gone.status_code == 409
    assert (
        client.delete(path, params={"etag": patched.json()["etag"]}, headers=account.headers).status_code
        == 200
    )
    assert client.get(path, headers=account.headers).status_code == 404


def test_another_user_gets_404_and_never_sees_your_items(
    client: httpx.Client, account: Account, new_account: Callable[[], Account]
) -> None:
    mine = create(client, account, title="private")
    other = new_account()
    path = f"/api/v1/data/{mine['id']}"
    for response in [
        client.get(path, headers=other.headers),
        client.put(path, json={"title": "x"}, headers=other.headers),
        client.delete(path, headers=other.headers),
    ]:
        assert response.status_code == 404
        assert error_reason(status_of(response)) == "ITEM_NOT_FOUND"
    listed = client.get(list_url(**{"page_size": 100}), headers=other.headers).json()
    assert mine["id"] not in {item["id"] for item in listed.get("items", [])}
    refused = client.get(list_url(**{"filter": f'user_id = "{account.user_id}"'}), headers=other.headers)
    assert refused.status_code == 403
    assert client.get(path, headers=account.headers).status_code == 200
    assert client.get(path).status_code == 401


def test_admin_lists_a_users_items(client: httpx.Client, account: Account, admin: Account) -> None:
    item = create(client, account, title="for the admin")
    response = client.get(list_url(**{"filter": f'user_id = "{account.user_id}"'}), headers=admin.headers)
    assert response.status_code == 200
    assert [i["id"] for i in response.json()["items"]] == [item["id"]]


@pytest.mark.parametrize(
    "attributes", [{"$where": "1"}, {"a.b": 1}, {"ok": {"$gt": ""}}, {"list": [{"x.y": 1}]}]
)
def test_operator_injection_in_attribute_keys_is_400(
    client: httpx.Client, account: Account, attributes: dict[str, Any]
) -> None:
    response = client.post(
        "/api/v1/data", json={"title": "t", "attributes": attributes}, headers=account.headers
    )
    assert response.status_code == 400
    body = status_of(response)
    assert "attributes" in next(iter(field_violations(body)))


def test_deleting_a_user_removes_their_items(
    client: httpx.Client, new_account: Callable[[], Account], admin: Account
) -> None:
    doomed = new_account()
    for n in range(3):
        create(client, doomed, title=f"doomed {n}")

    def items_left() -> int:
        response = client.get(list_url(**{"filter": f'user_id = "{doomed.user_id}"'}), headers=admin.headers)
        assert response.status_code == 200, response.text
        return len(response.json().get("items", []))

    assert items_left() == 3
    assert client.delete(f"/api/v1/users/{doomed.user_id}", headers=doomed.headers).status_code == 200
    poll(lambda: items_left() == 0, what="the purge")


def test_deleting_a_user_while_data_is_down_purges_once_it_is_back(
    stack: Stack, client: httpx.Client, new_account: Callable[[], Account], admin: Account
) -> None:
    doomed = new_account()
    for n in range(2):
        create(client, doomed, title=f"doomed {n}")
    stack.stop_service("data")
    try:
        assert client.delete(f"/api/v1/users/{doomed.user_id}", headers=admin.headers).status_code == 200
    finally:
        stack.restart_service("data")

    def gone() -> bool:
        response = client.get(list_url(**{"filter": f'user_id = "{doomed.user_id}"'}), headers=admin.headers)
        return response.status_code == 200 and not response.json().get("items")

    poll(gone, what="the purge after the data service came back")


def test_mongodb_stopped_gives_503_and_recovers_without_a_restart(
    stack: Stack, client: httpx.Client, account: Account
) -> None:
    if not stack.runs_mongo:
        pytest.skip("MONGODB_URL points at a server this stack did not start")
    item = create(client, account, title="durable", content="survives the outage")
    path = f"/api/v1/data/{item['id']}"
    data_pid = stack.children["data"].pid
    stack.stop_service(MONGO)
    try:
        outage = client.get(path, headers=account.headers)
        assert outage.status_code == 503, outage.text
        assert error_reason(status_of(outage)) == "DATA_STORE_UNAVAILABLE"
        listed = client.get("/api/v1/data", headers=account.headers)
        assert listed.status_code == 503
    finally:
        # The same nx-27017 again: same port, same data file (Stack starts it as `make run` does).
        stack.restart_service(MONGO)

    def back() -> bool:
        return client.get(path, headers=account.headers).status_code == 200

    poll(back, timeout=30, what="the data service to recover")
    assert client.get(path, headers=account.headers).json() == item
    assert stack.children["data"].pid == data_pid  # recovered by itself: same process
