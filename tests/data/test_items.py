"""Create, read, update and delete over gRPC against a real data service and MongoDB (or nx-27017):
validation, ownership, update masks and optimistic concurrency."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import empty_pb2

from pinexa.data.v1 import data_pb2
from tests.data.harness import ATTRIBUTES, DataClient, struct
from tests.support import error_info, field_violations, rpc_error

Item = data_pb2.Item

# ---- create and read --------------------------------------------------------------------------


async def test_create_then_get_returns_exactly_what_was_stored(data: DataClient, user_a: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    created = await data.create(
        user_a, "First", content="some content", status=Item.PUBLISHED, attributes=ATTRIBUTES
    )
    assert re.fullmatch(r"[0-9a-f]{24}", created.id)
    assert created.user_id == user_a
    assert (created.title, created.content, created.status) == ("First", "some content", Item.PUBLISHED)
    assert dict(created.attributes) == dict(struct(ATTRIBUTES))
    assert created.etag
    assert created.created_at == created.updated_at
    assert before < created.created_at.ToDatetime(tzinfo=UTC) < datetime.now(UTC) + timedelta(seconds=1)

    fetched = await data.get(user_a, created.id)
    assert fetched == created


async def test_status_defaults_to_draft_and_attributes_to_empty(data: DataClient, user_a: str) -> None:
    created = await data.create(user_a, "t")
    assert created.status == Item.DRAFT
    assert created.HasField("attributes") and len(created.attributes) == 0
    assert await data.get(user_a, created.id) == created


async def test_output_only_fields_in_create_are_ignored(data: DataClient, user_a: str, user_b: str) -> None:
    item = Item(title="t", id="0" * 24, user_id=user_b, etag="v99")
    item.created_at.FromDatetime(datetime(2000, 1, 1, tzinfo=UTC))
    created = await data.data.CreateItem(data_pb2.CreateItemRequest(item=item), metadata=data.auth(user_a))
    assert created.user_id == user_a and created.id != "0" * 24 and created.etag != "v99"
    assert created.created_at.ToDatetime().year > 2000


async def test_create_needs_a_token(data: DataClient) -> None:
    error = await rpc_error(
        data.data.CreateItem(data_pb2.CreateItemRequest(item=Item(title="t"))),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert error_info(error).reason == "TOKEN_MISSING"  # type: ignore[union-attr]


# ---- validation -------------------------------------------------------------------------------


async def test_every_invalid_field_is_named(data: DataClient, user_a: str) -> None:
    error = await rpc_error(
        data.create(user_a, "", content="x" * (1024 * 1024 + 1), status=7, attributes={"$where": "1"}),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    violations = field_violations(error)
    assert set(violations) == {"item.title", "item.content", "item.status", "item.attributes"}
    assert error_info(error).reason == "INVALID_INPUT"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("title", "ok"),
    [("", False), ("   ", False), ("x" * 200, True), ("é" * 200, True), ("x" * 201, False)],
)
async def test_title_is_required_and_at_most_200_characters(
    data: DataClient, user_a: str, title: str, ok: bool
) -> None:
    if ok:
        assert (await data.create(user_a, title)).title == title
    else:
        error = await rpc_error(data.create(user_a, title), grpc.StatusCode.INVALID_ARGUMENT)
        assert "item.title" in field_violations(error)


async def test_content_is_at_most_one_mebibyte_of_utf8(data: DataClient, user_a: str) -> None:
    mib = 1024 * 1024
    created = await data.create(user_a, "big", content="x" * mib)
    assert len((await data.get(user_a, created.id)).content) == mib
    error = await rpc_error(
        data.create(user_a, "big", content="x" * (mib + 1)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "item.content" in field_violations(error)
    # Counted in bytes: 2-byte characters reach the limit at half the count.
    error = await rpc_error(
        data.create(user_a, "big", content="é" * (mib // 2 + 1)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "item.content" in field_violations(error)


@pytest.mark.parametrize(
    "attributes",
    [
        {"$where": "sleep(1000)"},
        {"a.b": 1},
        {"ok": {"$gt": ""}},
        {"ok": {"inner": {"x.y": 1}}},
        {"list": [{"$set": 1}]},
        {"list": [[{"a.b": 1}]]},
        {"": 1},
        {"nul\x00key": 1},
    ],
    ids=[
        "dollar",
        "dot",
        "nested-dollar",
        "nested-dot",
        "dollar-in-list",
        "dot-in-nested-list",
        "empty",
        "nul",
    ],
)
async def test_attribute_keys_cannot_inject_operators(
    data: DataClient, user_a: str, attributes: dict
) -> None:  # type: ignore[type-arg]
    error = await rpc_error(data.create(user_a, "t", attributes=attributes), grpc.StatusCode.INVALID_ARGUMENT)
    assert "item.attributes" in field_violations(error)
    assert (await data.list(user_a)).items == []


async def test_attribute_values_may_contain_dollars_and_dots(data: DataClient, user_a: str) -> None:
    attributes = {"query": {"where": "$where a.b"}, "list": ["$x", "a.b"]}
    created = await data.create(user_a, "t", attributes=attributes)
    assert dict((await data.get(user_a, created.id)).attributes) == dict(struct(attributes))


def nested(depth: int) -> dict:  # type: ignore[type-arg]
    value: dict = {"leaf": 1}  # type: ignore[type-arg]
    for _ in range(depth - 1):
        value = {"k": value}
    return value


async def test_attributes_nest_at_most_eight_levels(data: DataClient, user_a: str) -> None:
    await data.create(user_a, "ok", attributes=nested(8))
    error = await rpc_error(
        data.create(user_a, "deep", attributes=nested(9)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "deeper than 8" in field_violations(error)["item.attributes"]

    # Lists count as a level too: seven objects, then a list (8) is fine, a list in it (9) is not.
    def with_list(leaf: object) -> dict:  # type: ignore[type-arg]
        value: dict = {"list": leaf}  # type: ignore[type-arg]
        for _ in range(6):
            value = {"k": value}
        return value

    await data.create(user_a, "ok", attributes=with_list([1]))
    error = await rpc_error(
        data.create(user_a, "deep", attributes=with_list([[1]])), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "deeper than 8" in field_violations(error)["item.attributes"]


async def test_attributes_are_at_most_64_kib_as_json(data: DataClient, user_a: str) -> None:
    # {"v":"..."} is 8 bytes of JSON around the string.
    await data.create(user_a, "fits", attributes={"v": "x" * (64 * 1024 - 8)})
    error = await rpc_error(
        data.create(user_a, "too big", attributes={"v": "x" * (64 * 1024 - 7)}),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "65537 bytes" in field_violations(error)["item.attributes"]


async def test_malformed_ids_are_invalid(data: DataClient, user_a: str) -> None:
    for bad in ("", "nope", "0" * 23, "g" * 24, "0" * 25):
        error = await rpc_error(data.get(user_a, bad), grpc.StatusCode.INVALID_ARGUMENT)
        assert "id" in field_violations(error)


async def test_unknown_item_is_not_found(data: DataClient, user_a: str) -> None:
    error = await rpc_error(data.get(user_a, "0" * 24), grpc.StatusCode.NOT_FOUND)
    assert error_info(error).reason == "ITEM_NOT_FOUND"  # type: ignore[union-attr]


# ---- ownership --------------------------------------------------------------------------------


async def test_another_users_item_is_not_found_for_every_method(
    data: DataClient, user_a: str, user_b: str
) -> None:
    mine = await data.create(user_a, "mine", content="secret")
    await rpc_error(data.get(user_b, mine.id), grpc.StatusCode.NOT_FOUND)
    await rpc_error(data.update(user_b, Item(id=mine.id, title="stolen")), grpc.StatusCode.NOT_FOUND)
    await rpc_error(
        data.update(user_b, Item(id=mine.id, title="stolen", etag=mine.etag)), grpc.StatusCode.NOT_FOUND
    )
    await rpc_error(
        data.data.DeleteItem(data_pb2.DeleteItemRequest(id=mine.id), metadata=data.auth(user_b)),
        grpc.StatusCode.NOT_FOUND,
    )
    # Same answer as an id that does not exist: nothing leaks.
    missing = await rpc_error(data.get(user_b, "0" * 24), grpc.StatusCode.NOT_FOUND)
    other = await rpc_error(data.get(user_b, mine.id), grpc.StatusCode.NOT_FOUND)
    assert error_info(missing).reason == error_info(other).reason  # type: ignore[union-attr]
    assert (await data.list(user_b)).items == []
    # ... and the owner's item is untouched.
    assert await data.get(user_a, mine.id) == mine


async def test_admin_reads_updates_and_deletes_any_item(data: DataClient, user_a: str) -> None:
    item = await data.create(user_a, "mine")
    assert await data.get("root", item.id, role="admin") == item
    updated = await data.update("root", Item(id=item.id, title="moderated"), mask=["title"], role="admin")
    assert updated.title == "moderated" and updated.user_id == user_a
    await data.data.DeleteItem(data_pb2.DeleteItemRequest(id=item.id), metadata=data.auth("root", "admin"))
    await rpc_error(data.get(user_a, item.id), grpc.StatusCode.NOT_FOUND)


async def test_an_admins_own_items_belong_to_the_admin(data: DataClient) -> None:
    created = await data.create("root", "admin's", role="admin")
    assert created.user_id == "root"


# ---- update -----------------------------------------------------------------------------------


async def test_put_replaces_every_mutable_field(data: DataClient, user_a: str) -> None:
    item = await data.create(user_a, "old", content="old", status=Item.PUBLISHED, attributes={"a": 1})
    updated = await data.update(user_a, Item(id=item.id, title="new"))
    assert (updated.title, updated.content, updated.status) == ("new", "", Item.DRAFT)
    assert len(updated.attributes) == 0
    assert updated.etag != item.etag
    assert updated.created_at == item.created_at and updated.user_id == user_a
    assert updated.updated_at.ToDatetime() >= item.updated_at.ToDatetime()
    assert await data.get(user_a, item.id) == updated


async def test_patch_changes_exactly_the_masked_fields(data: DataClient, user_a: str) -> None:
    item = await data.create(user_a, "old", content="body", status=Item.PUBLISHED, attributes={"a": 1})
    patch = Item(
        id=item.id, title="ignored", content="ignored", status=Item.ARCHIVED, attributes=struct({"b": 2})
    )
    updated = await data.update(user_a, patch, mask=["status", "attributes"])
    assert (updated.title, updated.content, updated.status) == ("old", "body", Item.ARCHIVED)
    assert dict(updated.attributes) == dict(struct({"b": 2}))
    # An empty title is fine when title is not in the mask.
    updated = await data.update(user_a, Item(id=item.id, content="new body"), mask=["content"])
    assert (updated.title, updated.content) == ("old", "new body")


async def test_patch_validates_only_masked_fields(data: DataClient, user_a: str) -> None:
    item = await data.create(user_a, "t")
    error = await rpc_error(
        data.update(user_a, Item(id=item.id), mask=["title"]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert set(field_violations(error)) == {"item.title"}
    # In a PATCH, status must be named explicitly; UNSPECIFIED is not a status.
    error = await rpc_error(
        data.update(user_a, Item(id=item.id), mask=["status"]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert set(field_violations(error)) == {"item.status"}
    error = await rpc_error(
        data.update(user_a, Item(id=item.id, attributes=struct({"$inc": 1})), mask=["attributes"]),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(field_violations(error)) == {"item.attributes"}
    assert await data.get(user_a, item.id) == item


@pytest.mark.parametrize(
    "path", ["user_id", "id", "etag", "created_at", "nope", "attributes.color", "title.x"]
)
async def test_unknown_or_read_only_mask_paths_are_invalid(data: DataClient, user_a: str, path: str) -> None:
    item = await data.create(user_a, "t")
    error = await rpc_error(
        data.update(user_a, Item(id=item.id, title="x", user_id="thief"), mask=["title", path]),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "update_mask" in field_violations(error)
    assert await data.get(user_a, item.id) == item


async def test_star_mask_is_a_full_replacement(data: DataClient, user_a: str) -> None:
    item = await data.create(user_a, "t", content="c", attributes={"a": 1})
    updated = await data.update(user_a, Item(id=item.id, title="u"), mask=["*"])
    assert (updated.title, updated.content, len(updated.attributes)) == ("u", "", 0)


async def test_update_needs_an_id(data: DataClient, user_a: str) -> None:
    error = await rpc_error(data.update(user_a, Item(title="x")), grpc.StatusCode.INVALID_ARGUMENT)
    assert "item.id" in field_violations(error)


# ---- optimistic concurrency -------------------------------------------------------------------


async def test_stale_etag_is_aborted_and_changes_nothing(data: DataClient, user_a: str) -> None:
    item = await data.create(user_a, "v1")
    current = await data.update(user_a, Item(id=item.id, title="v2", etag=item.etag), mask=["title"])
    assert current.etag != item.etag
    error = await rpc_error(
        data.update(user_a, Item(id=item.id, title="lost", etag=item.etag), mask=["title"]),
        grpc.StatusCode.ABORTED,
    )
    assert error_info(error).reason == "ETAG_MISMATCH"  # type: ignore[union-attr]
    assert await data.get(user_a, item.id) == current
    # PUT with a stale etag too.
    await rpc_error(
        data.update(user_a, Item(id=item.id, title="lost", etag=item.etag)), grpc.StatusCode.ABORTED
    )
    # A made-up etag never matches.
    await rpc_error(data.update(user_a, Item(id=item.id, title="x", etag="garbage")), grpc.StatusCode.ABORTED)
    assert await data.get(user_a, item.id) == current


async def test_concurrent_updates_with_one_etag_let_exactly_one_win(data: DataClient, user_a: str) -> None:
    item = await data.create(user_a, "start")
    attempts = [
        data.update(user_a, Item(id=item.id, title=f"writer {n}", etag=item.etag), mask=["title"])
        for n in range(10)
    ]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    winners = [r for r in results if isinstance(r, data_pb2.Item)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 9
    assert all(e.code() == grpc.StatusCode.ABORTED for e in losers)
    assert await data.get(user_a, item.id) == winners[0]


async def test_updates_without_etag_are_never_lost_either(data: DataClient, user_a: str) -> None:
    item = await data.create(user_a, "start")
    results = await asyncio.gather(
        *(data.update(user_a, Item(id=item.id, content=f"c{n}"), mask=["content"]) for n in range(8))
    )
    # Each write is atomic and bumps the version once: eight writes, eight distinct etags.
    assert len({r.etag for r in results}) == 8
    final = await data.get(user_a, item.id)
    assert final.etag == max((r.etag for r in results), key=lambda e: int(e.strip('"v')))


async def test_delete_honours_the_etag(data: DataClient, user_a: str) -> None:
    item = await data.create(user_a, "t")
    current = await data.update(user_a, Item(id=item.id, title="t2"), mask=["title"])
    delete = data.data.DeleteItem
    await rpc_error(
        delete(data_pb2.DeleteItemRequest(id=item.id, etag=item.etag), metadata=data.auth(user_a)),
        grpc.StatusCode.ABORTED,
    )
    assert await data.get(user_a, item.id) == current
    result = await delete(
        data_pb2.DeleteItemRequest(id=item.id, etag=current.etag), metadata=data.auth(user_a)
    )
    assert result == empty_pb2.Empty()
    await rpc_error(data.get(user_a, item.id), grpc.StatusCode.NOT_FOUND)
    # Deleting again is NOT_FOUND, with or without an etag.
    await rpc_error(
        delete(data_pb2.DeleteItemRequest(id=item.id), metadata=data.auth(user_a)), grpc.StatusCode.NOT_FOUND
    )
    await rpc_error(
        delete(data_pb2.DeleteItemRequest(id=item.id, etag=current.etag), metadata=data.auth(user_a)),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_delete_without_etag(data: DataClient, user_a: str) -> None:
    item = await data.create(user_a, "t")
    await data.data.DeleteItem(data_pb2.DeleteItemRequest(id=item.id), metadata=data.auth(user_a))
    await rpc_error(data.get(user_a, item.id), grpc.StatusCode.NOT_FOUND)


async def test_updated_at_stays_a_date(data: DataClient, user_a: str) -> None:
    """Updates replace the whole document: nx-27017 0.8.1 stores a datetime sent in $set as a
    string, which would break ordering and filters on updated_at (MongoDB stores a date either way)."""
    first = await data.create(user_a, "first")
    second = await data.create(user_a, "second")
    updated = await data.update(user_a, Item(id=first.id, title="first, edited"), mask=["title"])
    assert updated.updated_at.ToDatetime() >= second.updated_at.ToDatetime()
    assert updated.updated_at == (await data.get(user_a, first.id)).updated_at
    since = first.created_at.ToDatetime(tzinfo=UTC).isoformat()
    page = await data.list(user_a, filter=f'updated_at >= "{since}"', order_by="updated_at desc")
    assert page.items[0].id == first.id
    assert {i.id for i in page.items} == {first.id, second.id}


async def test_concurrent_patches_of_different_fields_all_survive(data: DataClient, user_a: str) -> None:
    item = await data.create(user_a, "start", content="start")
    await asyncio.gather(
        data.update(user_a, Item(id=item.id, title="new title"), mask=["title"]),
        data.update(user_a, Item(id=item.id, content="new content"), mask=["content"]),
        data.update(user_a, Item(id=item.id, status=Item.PUBLISHED), mask=["status"]),
        data.update(user_a, Item(id=item.id, attributes=struct({"k": "v"})), mask=["attributes"]),
    )
    final = await data.get(user_a, item.id)
    assert (final.title, final.content, final.status) == ("new title", "new content", Item.PUBLISHED)
    assert dict(final.attributes) == dict(struct({"k": "v"}))
    assert final.etag == "v5"


async def test_non_finite_numbers_and_huge_keys_are_refused_cleanly(data: DataClient, user_a: str) -> None:
    for number in (float("nan"), float("inf")):
        item = Item(title="t")
        item.attributes.fields["x"].number_value = number
        error = await rpc_error(
            data.data.CreateItem(data_pb2.CreateItemRequest(item=item), metadata=data.auth(user_a)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert "not finite" in field_violations(error)["item.attributes"]
    error = await rpc_error(
        data.create(user_a, "t", attributes={"$" + "k" * 100_000: 1}), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert len(field_violations(error)["item.attributes"]) < 200  # the key is not echoed whole
