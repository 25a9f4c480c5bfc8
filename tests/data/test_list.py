"""ListItems over gRPC: keyset pagination, orders, filters, full-text search and who sees what."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from pymongo import AsyncMongoClient

from pinexa.data.v1 import data_pb2
from services.data.model import Item as StoredItem
from services.data.server import COLLECTION
from services.data.store import MongoItemStore
from tests.data.harness import DataClient
from tests.support import error_info, field_violations, rpc_error

Item = data_pb2.Item


async def make_items(data: DataClient, user: str, count: int, **fields: Any) -> list[Item]:
    """`count` items created one after another (so created_at is non-decreasing)."""
    return [await data.create(user, f"item {n:03}", **fields) for n in range(count)]


def ids(items: list[Item]) -> list[str]:
    return [i.id for i in items]


def newest_first(items: list[Item]) -> list[str]:
    return [i.id for i in sorted(items, key=lambda i: (i.created_at.ToDatetime(), i.id), reverse=True)]


def stored_item(n: int, user: str, *, title: str, created_at: datetime, updated_at: datetime) -> StoredItem:
    """An item to put straight into the store, with chosen id (n in hex) and times."""
    return StoredItem(
        id=f"{n:024x}",
        user_id=user,
        title=title,
        content="",
        status="DRAFT",
        attributes={},
        created_at=created_at,
        updated_at=updated_at,
        version=1,
    )


# ---- pagination -------------------------------------------------------------------------------


async def test_25_items_in_pages_of_10(data: DataClient, user_a: str) -> None:
    created = await make_items(data, user_a, 25)
    pages = []
    token = ""
    while True:
        page = await data.list(user_a, page_size=10, page_token=token)
        pages.append(ids(list(page.items)))
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    seen = [i for p in pages for i in p]
    assert len(set(seen)) == 25
    assert seen == newest_first(created)


async def test_page_size_defaults_to_20_and_is_capped_at_100(data: DataClient, user_a: str) -> None:
    await asyncio.gather(*(data.create(user_a, f"t{n}") for n in range(105)))
    assert len((await data.list(user_a)).items) == 20
    page = await data.list(user_a, page_size=1000)
    assert len(page.items) == 100 and page.next_page_token
    rest = await data.list(user_a, page_size=1000, page_token=page.next_page_token)
    assert len(rest.items) == 5 and not rest.next_page_token
    error = await rpc_error(data.list(user_a, page_size=-1), grpc.StatusCode.INVALID_ARGUMENT)
    assert "page_size" in field_violations(error)


async def test_exact_last_page_has_no_token(data: DataClient, user_a: str) -> None:
    await make_items(data, user_a, 10)
    page = await data.list(user_a, page_size=10)
    assert len(page.items) == 10 and page.next_page_token == ""
    empty = await data.list(user_a, page_size=10)
    assert empty.next_page_token == ""
    assert (await data.list("nobody")).items == []


async def test_pages_stay_correct_while_items_come_and_go(data: DataClient, user_a: str) -> None:
    """No duplicates, and every item that existed throughout is seen exactly once."""
    created = await make_items(data, user_a, 30)
    order = newest_first(created)
    first = await data.list(user_a, page_size=10)
    assert ids(list(first.items)) == order[:10]
    # Between pages: delete items already seen and not yet seen, add new ones.
    deleted = {order[3], order[12], order[13], order[25]}
    for item_id in deleted:
        await data.data.DeleteItem(data_pb2.DeleteItemRequest(id=item_id), metadata=data.auth(user_a))
    added = await make_items(data, user_a, 5)
    seen = ids(list(first.items))
    token = first.next_page_token
    while token:
        page = await data.list(user_a, page_size=10, page_token=token)
        seen.extend(ids(list(page.items)))
        token = page.next_page_token
        if token and len(seen) < 40:  # keep changing things while paging
            extra = await data.create(user_a, "late")
            added.append(extra)
    assert len(seen) == len(set(seen)), "no item appears twice"
    throughout = set(order) - deleted
    assert throughout <= set(seen), "nothing that existed throughout is missed"
    assert set(seen) <= set(order) | {i.id for i in added}


async def test_same_timestamp_is_broken_by_id(
    data: DataClient, user_a: str, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """Items created in the same millisecond still page correctly: the id breaks the tie."""
    store = MongoItemStore(mongo_client[data.database][COLLECTION])
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    stored = [
        stored_item(
            n,
            user_a,
            title="same",
            created_at=moment if n < 15 else moment - timedelta(milliseconds=1),
            updated_at=moment,
        )
        for n in range(1, 21)
    ]
    for item in stored:
        await store.insert(item)
    for order_by, expected in [
        ("created_at desc", [f"{n:024x}" for n in [*range(14, 0, -1), *range(20, 14, -1)]]),
        ("updated_at desc", [f"{n:024x}" for n in range(20, 0, -1)]),
        ("title", [f"{n:024x}" for n in range(1, 21)]),
    ]:
        got = [i.id for i in await data.list_all(user_a, page_size=3, order_by=order_by)]
        assert got == expected, order_by


@pytest.mark.parametrize("order_by", ["created_at desc", "updated_at desc"])
async def test_sub_second_order_disagreeing_with_ids(
    data: DataClient,
    user_a: str,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    order_by: str,
) -> None:
    """Within one second, times in the opposite order to ids (an item edited later, or items
    created by another replica) still page exactly: the keyset compares dates to the millisecond.
    (nx-27017 0.8.1 compares a top-level date condition at one-second precision, see
    test_time_filters; inside the keyset's $or it compares exactly, so both servers pass this.)"""
    store = MongoItemStore(mongo_client[data.database][COLLECTION])
    base = datetime(2026, 2, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    for n in range(1, 7):
        moment = base + timedelta(milliseconds=10 - n)
        await store.insert(stored_item(n, user_a, title=str(n), created_at=moment, updated_at=moment))
    got = [i.id for i in await data.list_all(user_a, page_size=2, order_by=order_by)]
    assert got == [f"{n:024x}" for n in range(1, 7)]


async def test_orders(data: DataClient, user_a: str) -> None:
    items = {title: await data.create(user_a, title) for title in ["b", "a", "c", "B", "a"]}
    by_title = await data.list_all(user_a, page_size=2, order_by="title")
    # Byte-wise order (upper case first); equal titles in id order.
    assert [i.title for i in by_title] == ["B", "a", "a", "b", "c"]
    a_items = [i for i in by_title if i.title == "a"]
    assert a_items[0].id < a_items[1].id
    assert [i.title for i in await data.list_all(user_a, order_by="  TITLE  asc ")] == [
        "B",
        "a",
        "a",
        "b",
        "c",
    ]
    # updated_at desc: an edited item comes first.
    await data.update(user_a, Item(id=items["b"].id, title="b"), mask=["title"])
    by_update = await data.list_all(user_a, page_size=2, order_by="updated_at desc")
    assert by_update[0].id == items["b"].id
    default = await data.list_all(user_a, page_size=2)
    assert ids(default) == ids(await data.list_all(user_a, order_by="created_at desc"))
    assert ids(default) == newest_first(default)


@pytest.mark.parametrize("order_by", ["created_at", "created_at asc", "title desc", "random", "id"])
async def test_unsupported_orders_are_invalid(data: DataClient, user_a: str, order_by: str) -> None:
    error = await rpc_error(data.list(user_a, order_by=order_by), grpc.StatusCode.INVALID_ARGUMENT)
    assert "order_by" in field_violations(error)


async def test_page_tokens_are_bound_to_their_query(data: DataClient, user_a: str, user_b: str) -> None:
    await make_items(data, user_a, 3, status=Item.PUBLISHED)
    token = (await data.list(user_a, page_size=1, filter="status = PUBLISHED")).next_page_token
    assert token
    # The same query in another spelling is the same query.
    page = await data.list(user_a, page_size=1, filter='status="PUBLISHED"', page_token=token)
    assert len(page.items) == 1
    for other in [
        {"filter": "status = DRAFT"},
        {"filter": "status = PUBLISHED", "order_by": "title"},
        {"filter": "status = PUBLISHED", "query": "item"},
    ]:
        error = await rpc_error(
            data.list(user_a, page_size=1, page_token=token, **other), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert "page_token" in field_violations(error)
    # Another user cannot replay it.
    await rpc_error(
        data.list(user_b, page_size=1, filter="status = PUBLISHED", page_token=token),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    for garbage in ["nope", "e30", token[:-3]]:
        await rpc_error(data.list(user_a, page_token=garbage), grpc.StatusCode.INVALID_ARGUMENT)


@pytest.mark.parametrize(
    ("order_by", "key"),
    [
        ("", 10**20),
        ("updated_at desc", -(10**20)),
        ("", 1.5),
        ("", True),
        ("", "2026-01-01"),
        ("title", 3),
    ],
)
async def test_edited_page_tokens_are_invalid_argument(
    data: DataClient, user_a: str, order_by: str, key: object
) -> None:
    """Page tokens are opaque, not signed: a client can decode one, change the position and keep
    the query fingerprint. Whatever it puts there is INVALID_ARGUMENT, never INTERNAL."""
    await make_items(data, user_a, 2)
    token = (await data.list(user_a, page_size=1, order_by=order_by)).next_page_token
    payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    payload["p"]["k"] = key
    edited = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    error = await rpc_error(
        data.list(user_a, page_size=1, order_by=order_by, page_token=edited), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert field_violations(error) == {"page_token": "malformed page token"}


async def test_large_items_split_pages_under_the_message_limit(data: DataClient, user_a: str) -> None:
    big = "x" * (1024 * 1024 - 10)
    for n in range(5):
        await data.create(user_a, f"big {n}", content=big)
    first = await data.list(user_a, page_size=10)
    assert 1 <= len(first.items) < 5 and first.next_page_token
    assert first.ByteSize() < 4 * 1024 * 1024
    everything = await data.list_all(user_a, page_size=10)
    assert len({i.id for i in everything}) == 5


# ---- filters ----------------------------------------------------------------------------------


@pytest.fixture
async def catalogue(data: DataClient, user_a: str) -> dict[str, Item]:
    specs: dict[str, dict[str, Any]] = {
        "red3": {"status": Item.PUBLISHED, "attributes": {"color": "red", "n": 3, "meta": {"size": "L"}}},
        "red7": {"status": Item.DRAFT, "attributes": {"color": "red", "n": 7, "ok": True}},
        "blue1": {"status": Item.PUBLISHED, "attributes": {"color": "blue", "n": 1, "ok": False}},
        "plain": {"status": Item.ARCHIVED},
        "text5": {"status": Item.DRAFT, "attributes": {"n": "5", "tags": ["x", "y"]}},
    }
    return {title: await data.create(user_a, title, **spec) for title, spec in specs.items()}


async def titles(data: DataClient, user: str, **fields: Any) -> set[str]:
    return {i.title for i in await data.list_all(user, **fields)}


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        ('status = "PUBLISHED"', {"red3", "blue1"}),
        ("status != PUBLISHED", {"red7", "plain", "text5"}),
        ('attributes.color = "red"', {"red3", "red7"}),
        ("attributes.n >= 3", {"red3", "red7"}),  # numbers compare with numbers only: "5" is a string
        ("attributes.n < 3", {"blue1"}),
        ('attributes.n = "5"', {"text5"}),
        ("attributes.ok = true", {"red7"}),
        ("attributes.ok = false", {"blue1"}),
        ('attributes.meta.size = "L"', {"red3"}),
        ('attributes.tags = "y"', {"text5"}),  # a list matches when any element does
        ('attributes.color = "red" AND status = PUBLISHED', {"red3"}),
        ('attributes.color = "blue" OR attributes.n = 7', {"blue1", "red7"}),
        ("status = ARCHIVED OR status = PUBLISHED AND attributes.n > 2", {"red3"}),
        ('NOT attributes.color = "red"', {"blue1", "plain", "text5"}),
        ('attributes.color != "red"', {"blue1", "plain", "text5"}),
        ('title >= "red" AND title < "s"', {"red3", "red7"}),
        ("attributes.missing = 1", set()),
    ],
)
async def test_filters(
    data: DataClient, user_a: str, catalogue: dict[str, Item], filter_text: str, expected: set[str]
) -> None:
    assert await titles(data, user_a, filter=filter_text, page_size=2) == expected


async def test_time_filters(
    data: DataClient, user_a: str, mongo_client: AsyncMongoClient[dict[str, Any]], is_nx: bool
) -> None:
    store = MongoItemStore(mongo_client[data.database][COLLECTION])
    base = datetime(2026, 1, 1, tzinfo=UTC)
    times = {"t0": base, "t1.5": base + timedelta(seconds=1.5), "t3": base + timedelta(seconds=3)}
    for n, (title, moment) in enumerate(times.items(), start=1):
        await store.insert(stored_item(n, user_a, title=title, created_at=moment, updated_at=moment))
    assert await titles(data, user_a, filter='created_at > "2026-01-01T00:00:00Z"') == {"t1.5", "t3"}
    assert await titles(data, user_a, filter='created_at >= "2026-01-01T00:00:00Z"') == set(times)
    assert await titles(data, user_a, filter='created_at < "2026-01-01T00:00:03Z"') == {"t0", "t1.5"}
    assert await titles(data, user_a, filter='created_at <= "2026-01-01T01:00:03+01:00"') == set(times)
    assert await titles(data, user_a, filter='updated_at > "2026-01-01T00:00:02Z"') == {"t3"}
    assert await titles(data, user_a, filter='updated_at < "2000-01-01T00:00:00Z"') == set()
    # Sub-second bounds: MongoDB compares dates to the millisecond. nx-27017 0.8.1 compares them
    # through SQLite's datetime(), which drops fractions of a second (a known difference).
    sub_second = await titles(data, user_a, filter='created_at > "2026-01-01T00:00:01.2Z"')
    if is_nx:
        assert sub_second == {"t3"}
    else:
        assert sub_second == {"t1.5", "t3"}


async def test_bad_filter_is_invalid_argument_naming_the_problem(data: DataClient, user_a: str) -> None:
    error = await rpc_error(data.list(user_a, filter="status = = DRAFT"), grpc.StatusCode.INVALID_ARGUMENT)
    assert error_info(error).reason == "INVALID_FILTER"  # type: ignore[union-attr]
    assert "column 10" in field_violations(error)["filter"]
    error = await rpc_error(
        data.list(user_a, filter='attributes.x = {"$where": "1"}'), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "filter" in field_violations(error)


# ---- who sees what ----------------------------------------------------------------------------


async def test_users_see_only_their_own_items(data: DataClient, user_a: str, user_b: str) -> None:
    mine = await make_items(data, user_a, 3)
    theirs = await make_items(data, user_b, 2)
    assert set(ids(await data.list_all(user_a))) == set(ids(mine))
    assert set(ids(await data.list_all(user_b))) == set(ids(theirs))
    # A filter or a query cannot widen it.
    assert set(ids(await data.list_all(user_b, filter='title >= ""'))) == set(ids(theirs))
    assert set(ids(await data.list_all(user_b, query="item"))) <= set(ids(theirs))


async def test_only_admins_filter_by_user_id(data: DataClient, user_a: str, user_b: str) -> None:
    await make_items(data, user_a, 1)
    error = await rpc_error(
        data.list(user_b, filter=f'user_id = "{user_a}"'), grpc.StatusCode.PERMISSION_DENIED
    )
    assert error_info(error).reason == "FILTER_FIELD_ADMIN_ONLY"  # type: ignore[union-attr]
    await rpc_error(
        data.list(user_b, filter=f'status = DRAFT OR user_id = "{user_a}"'), grpc.StatusCode.PERMISSION_DENIED
    )


async def test_admin_sees_everyone_and_filters_by_user_id(data: DataClient, user_a: str, user_b: str) -> None:
    mine = await make_items(data, user_a, 3)
    theirs = await make_items(data, user_b, 2)
    everything = set(ids(await data.list_all("root", role="admin", page_size=2)))
    assert set(ids(mine)) | set(ids(theirs)) <= everything
    only_b = await data.list_all("root", role="admin", filter=f'user_id = "{user_b}"', page_size=1)
    assert set(ids(only_b)) == set(ids(theirs))
    not_b = await data.list_all("root", role="admin", filter=f'user_id != "{user_b}"')
    assert set(ids(not_b)) == everything - set(ids(theirs))


async def test_list_needs_a_token(data: DataClient) -> None:
    await rpc_error(data.data.ListItems(data_pb2.ListItemsRequest()), grpc.StatusCode.UNAUTHENTICATED)


# ---- full-text search -------------------------------------------------------------------------


@pytest.fixture
async def documents(data: DataClient, user_a: str) -> dict[str, Item]:
    texts = {
        "gardening": "Tomatoes need sun and water every morning",
        "cooking": "A tomato sauce with garlic, simmered slowly",
        "running": "Running in the morning before work",
        "Zebra notes": "nothing to see",
    }
    return {title: await data.create(user_a, title, content=content) for title, content in texts.items()}


async def test_query_finds_a_word_in_content_or_title(
    data: DataClient, user_a: str, user_b: str, documents: dict[str, Item]
) -> None:
    assert await titles(data, user_a, query="garlic") == {"cooking"}
    assert await titles(data, user_a, query="GARLIC") == {"cooking"}  # case-insensitive
    assert await titles(data, user_a, query="zebra") == {"Zebra notes"}  # title
    assert await titles(data, user_a, query="morning") == {"gardening", "running"}
    assert await titles(data, user_a, query="aardvark") == set()
    assert await titles(data, user_b, query="garlic") == set()  # never another user's items


async def test_query_combines_with_filter_order_and_pages(
    data: DataClient, user_a: str, documents: dict[str, Item]
) -> None:
    await data.update(user_a, Item(id=documents["running"].id, status=Item.PUBLISHED), mask=["status"])
    assert await titles(data, user_a, query="morning", filter="status = PUBLISHED") == {"running"}
    found = await data.list_all(user_a, query="morning", order_by="title", page_size=1)
    assert [i.title for i in found] == ["gardening", "running"]


async def test_multi_word_queries(
    data: DataClient, user_a: str, documents: dict[str, Item], is_nx: bool
) -> None:
    # Both servers agree when every word matches: the item is found.
    assert await titles(data, user_a, query="morning sun") >= {"gardening"}
    # They differ when only some words match. MongoDB's $text ORs the words (any word matches);
    # nx-27017 ANDs them. The service passes the words through to $text unchanged.
    if is_nx:
        assert await titles(data, user_a, query="morning sun") == {"gardening"}
    else:
        assert await titles(data, user_a, query="morning sun") == {"gardening", "running"}


async def test_stemming_is_mongodb_only(
    data: DataClient, user_a: str, documents: dict[str, Item], is_nx: bool
) -> None:
    # MongoDB's text index (default language English) stems: "tomato" matches "Tomatoes".
    # nx-27017 has no stemming, so only the exact word matches there.
    found = await titles(data, user_a, query="tomato")
    assert "cooking" in found
    if is_nx:
        assert found == {"cooking"}
    else:
        assert found == {"cooking", "gardening"}


async def test_overlong_query_is_invalid(data: DataClient, user_a: str) -> None:
    error = await rpc_error(data.list(user_a, query="x" * 501), grpc.StatusCode.INVALID_ARGUMENT)
    assert "query" in field_violations(error)
