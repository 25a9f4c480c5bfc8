"""The data domain's rules, table-driven, on `MemoryItemStore` with a `FakeClock` (tests/support.py,
moved by hand): no network, no server, no sleeping. (The same rules over gRPC against nx-27017 are
test_items.py, test_list.py and test_service.py; the store's side of the contract is
test_store_conformance.py.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.data.domain import MAX_UPDATE_ATTEMPTS, DataDomain, ItemInput
from services.data.memory import MemoryItemStore
from services.data.model import Item, Order
from services.kit.context import Principal, Role
from services.kit.errors import (
    EtagMismatch,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PinexaError,
    Unauthenticated,
)
from tests.support import FakeClock

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MS = 0.001  # FakeClock advances in seconds
ALICE = "alice"
BOB = "bob"


def principal(user_id: str, role: Role = "user") -> Principal:
    return Principal(user_id=user_id, role=role, token_id="t", expires_at=2**31)


@dataclass
class World:
    domain: DataDomain
    store: MemoryItemStore
    clock: FakeClock

    async def create(self, user: str = ALICE, title: str = "t", **fields: Any) -> Item:
        return await self.domain.create(principal(user), ItemInput(title=title, **fields))

    async def pages(self, who: Principal, size: int, **fields: Any) -> list[list[Item]]:
        """Every page of a listing, following next_page_token."""
        pages: list[list[Item]] = []
        token = ""
        while True:
            args: dict[str, Any] = {"filter_text": "", "query": "", "order_by": "", **fields}
            page = await self.domain.list(who, requested_page_size=size, page_token=token, **args)
            pages.append(page.items)
            token = page.next_page_token
            if not token:
                return pages


def counter_ids() -> Callable[[], str]:
    """Ids in creation order (ObjectIds grow with time; here exactly)."""
    count = 0

    def new_id() -> str:
        nonlocal count
        count += 1
        return f"{count:024x}"

    return new_id


@pytest.fixture
def world() -> World:
    store, clock = MemoryItemStore(), FakeClock(start=START.timestamp())
    return World(DataDomain(store, clock=clock.utc_ms, new_id=counter_ids()), store, clock)


ADMIN = principal("root", "admin")


# ---- create and get ---------------------------------------------------------------------------


async def test_create_stamps_owner_times_version_and_defaults(world: World) -> None:
    item = await world.create(ALICE, "First", content="c", attributes={"n": 1})
    assert (item.id, item.user_id, item.status, item.version, item.etag) == (
        f"{1:024x}",
        ALICE,
        "DRAFT",
        1,
        "v1",
    )
    assert item.created_at == item.updated_at == START
    assert await world.domain.get(principal(ALICE), item.id) == item
    assert await world.domain.get(principal(ALICE), item.id.upper()) == item  # ids in either case


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        (ItemInput(title=""), {"item.title"}),
        (ItemInput(title="   "), {"item.title"}),
        (ItemInput(title="x" * 201), {"item.title"}),
        (ItemInput(title="t", status="DONE"), {"item.status"}),
        (ItemInput(title="t", attributes={"$where": 1}), {"item.attributes"}),
        (ItemInput(title="t", attributes={"a.b": 1}), {"item.attributes"}),
        (ItemInput(title="t", attributes={"n": float("nan")}), {"item.attributes"}),
        (ItemInput(title="t", content="é" * (512 * 1024 + 1)), {"item.content"}),
        (
            ItemInput(title="", status="X", attributes={"$x": 1}),
            {"item.title", "item.status", "item.attributes"},
        ),
    ],
)
async def test_invalid_items_name_every_bad_field_and_store_nothing(
    world: World, data: ItemInput, fields: set[str]
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await world.domain.create(principal(ALICE), data)
    assert {field for field, _ in caught.value.violations} == fields
    assert world.store.items == {}


@pytest.mark.parametrize(
    ("item_id", "error"),
    [("", InvalidArgument), ("xyz", InvalidArgument), ("0" * 23, InvalidArgument), ("f" * 24, NotFound)],
)
async def test_get_of_a_bad_or_unknown_id(world: World, item_id: str, error: type[PinexaError]) -> None:
    with pytest.raises(error):
        await world.domain.get(principal(ALICE), item_id)


# ---- ownership --------------------------------------------------------------------------------


async def _get(world: World, who: Principal, item: Item) -> Any:
    return await world.domain.get(who, item.id)


async def _put(world: World, who: Principal, item: Item) -> Any:
    return await world.domain.update(who, item.id, ItemInput(title="changed"), mask=["title"], etag="")


async def _delete(world: World, who: Principal, item: Item) -> Any:
    return await world.domain.delete(who, item.id, etag="")


OPERATIONS = {"get": _get, "update": _put, "delete": _delete}


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    ("who", "allowed"),
    [(principal(ALICE), True), (principal(BOB), False), (ADMIN, True), (principal(ALICE, "admin"), True)],
    ids=["owner", "another-user", "admin", "owner-as-admin"],
)
async def test_only_the_owner_or_an_admin_reaches_an_item(
    world: World, operation: str, who: Principal, allowed: bool
) -> None:
    item = await world.create(ALICE, "mine")
    act = OPERATIONS[operation]
    if allowed:
        await act(world, who, item)
        return
    # Refused as NOT_FOUND, exactly as for an id that does not exist, and nothing changes.
    with pytest.raises(NotFound) as caught:
        await act(world, who, item)
    assert caught.value.reason == "ITEM_NOT_FOUND"
    assert world.store.items[item.id] == item


async def test_an_admins_items_are_the_admins_and_lists_are_scoped(world: World) -> None:
    mine = await world.create(ALICE)
    theirs = await world.create(BOB)
    admins = await world.domain.create(ADMIN, ItemInput(title="admin's"))
    assert admins.user_id == "root"
    listed = {who: [i.id for p in await world.pages(principal(who), 10) for i in p] for who in (ALICE, BOB)}
    assert listed == {ALICE: [mine.id], BOB: [theirs.id]}
    everything = [i.id for p in await world.pages(ADMIN, 10) for i in p]
    assert everything == [admins.id, theirs.id, mine.id]
    only_bob = await world.pages(ADMIN, 10, filter_text=f'user_id = "{BOB}"')
    assert [i.id for p in only_bob for i in p] == [theirs.id]


@pytest.mark.parametrize("filter_text", [f'user_id = "{BOB}"', f'status = DRAFT OR user_id != "{ALICE}"'])
async def test_a_user_cannot_filter_by_user_id(world: World, filter_text: str) -> None:
    await world.create(BOB)
    with pytest.raises(PermissionDenied) as caught:
        await world.pages(principal(ALICE), 10, filter_text=filter_text)
    assert caught.value.reason == "FILTER_FIELD_ADMIN_ONLY"


# ---- update: etags, masks, the clock ----------------------------------------------------------


@pytest.mark.parametrize(
    ("etag", "applied"),
    [
        ("", True),
        ("v2", True),
        ('"v2"', True),
        (' "v2" ', True),
        ("v1", False),
        ("v3", False),
        ("junk", False),
    ],
)
async def test_update_with_a_matching_or_stale_etag(world: World, etag: str, applied: bool) -> None:
    item = await world.create(ALICE, "one")
    world.clock.advance(5 * MS)
    second = await world.domain.update(
        principal(ALICE), item.id, ItemInput(title="two"), mask=["title"], etag=""
    )
    assert second.etag == "v2"
    world.clock.advance(5 * MS)
    request = world.domain.update(
        principal(ALICE), item.id, ItemInput(title="three"), mask=["title"], etag=etag
    )
    if applied:
        third = await request
        assert (third.title, third.version, third.created_at) == ("three", 3, START)
        assert third.updated_at == START + timedelta(milliseconds=10)
        assert await world.domain.get(principal(ALICE), item.id) == third
    else:
        with pytest.raises(EtagMismatch) as caught:
            await request
        assert caught.value.metadata == {"current_etag": "v2"}
        assert await world.domain.get(principal(ALICE), item.id) == second


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        ([], {"title": "T", "content": "", "status": "DRAFT", "attributes": {}}),  # PUT: every field
        (["*"], {"title": "T", "content": "", "status": "DRAFT", "attributes": {}}),
        (["title"], {"title": "T", "content": "c", "status": "PUBLISHED", "attributes": {"k": 1}}),
        (["content", "attributes"], {"title": "t", "content": "", "status": "PUBLISHED", "attributes": {}}),
    ],
)
async def test_put_replaces_and_patch_changes_exactly_the_mask(
    world: World, mask: list[str], expected: dict[str, Any]
) -> None:
    item = await world.create(ALICE, "t", content="c", status="PUBLISHED", attributes={"k": 1})
    updated = await world.domain.update(principal(ALICE), item.id, ItemInput(title="T"), mask=mask, etag="")
    fields = {"title": updated.title, "content": updated.content, "status": updated.status}
    assert {**fields, "attributes": updated.attributes} == expected


@pytest.mark.parametrize("mask", [["id"], ["user_id"], ["etag"], ["created_at"], ["title", "nope"]])
async def test_read_only_or_unknown_mask_paths_are_refused(world: World, mask: list[str]) -> None:
    item = await world.create(ALICE)
    with pytest.raises(InvalidArgument) as caught:
        await world.domain.update(principal(ALICE), item.id, ItemInput(title="x"), mask=mask, etag="")
    assert {field for field, _ in caught.value.violations} == {"update_mask"}
    assert world.store.items[item.id] == item


@pytest.mark.parametrize(("step_ms", "moves"), [(250, True), (0, False), (-1000, False)])
async def test_updated_at_follows_the_clock_but_never_goes_back(
    world: World, step_ms: int, moves: bool
) -> None:
    item = await world.create(ALICE)
    world.clock.advance(step_ms * MS)
    updated = await world.domain.update(
        principal(ALICE), item.id, ItemInput(title="x"), mask=["title"], etag=""
    )
    assert updated.updated_at == (world.clock.utc_ms() if moves else item.updated_at)
    assert updated.created_at == item.created_at


class RacingStore(MemoryItemStore):
    """A store in which another writer changes the item between each read and write, `races`
    times (the in-memory stand-in for a concurrent request)."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races

    async def replace(self, item: Item, *, expected_version: int) -> bool:
        if self.races > 0:
            self.races -= 1
            current = self.items[item.id]
            other = {**current.attributes, f"other{self.races}": True}
            self.items[item.id] = replace(current, attributes=other, version=current.version + 1)
        return await super().replace(item, expected_version=expected_version)


@pytest.mark.parametrize(
    ("races", "etag", "outcome"),
    [
        (1, "", "applied"),  # re-read, re-applied: neither write is lost
        (3, "", "applied"),
        (MAX_UPDATE_ATTEMPTS - 1, "", "applied"),
        (MAX_UPDATE_ATTEMPTS, "", "CONCURRENT_UPDATE"),
        (1, "v1", "ETAG_MISMATCH"),  # with an etag the client asked for exactly that version
    ],
)
async def test_concurrent_writes_are_retried_or_refused(races: int, etag: str, outcome: str) -> None:
    store = RacingStore(0)
    domain = DataDomain(store, clock=FakeClock(start=START.timestamp()).utc_ms, new_id=counter_ids())
    item = await domain.create(principal(ALICE), ItemInput(title="t"))
    store.races = races
    request = domain.update(principal(ALICE), item.id, ItemInput(title="mine"), mask=["title"], etag=etag)
    if outcome == "applied":
        updated = await request
        assert updated.version == races + 2 and updated.title == "mine"
        assert set(updated.attributes) == {f"other{n}" for n in range(races)}  # theirs kept too
        assert store.items[item.id] == updated
    else:
        with pytest.raises(EtagMismatch) as caught:
            await request
        assert caught.value.reason == outcome
        assert store.items[item.id].title == "t"


# ---- delete -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("etag", "error"),
    [
        ("", None),
        ("v1", None),
        ('"v1"', None),
        ("v0", EtagMismatch),
        ("v2", EtagMismatch),
        ("junk", EtagMismatch),
    ],
)
async def test_delete_with_and_without_an_expected_version(
    world: World, etag: str, error: type[PinexaError] | None
) -> None:
    item = await world.create(ALICE)
    if error is None:
        await world.domain.delete(principal(ALICE), item.id, etag=etag)
        assert world.store.items == {}
        with pytest.raises(NotFound):  # and it is gone for good
            await world.domain.delete(principal(ALICE), item.id, etag=etag)
    else:
        with pytest.raises(error) as caught:
            await world.domain.delete(principal(ALICE), item.id, etag=etag)
        assert caught.value.metadata == {"current_etag": "v1"}
        assert world.store.items[item.id] == item


# ---- list: orders, ties, pages ----------------------------------------------------------------


ORDER_BY = {Order.CREATED_DESC: "", Order.UPDATED_DESC: "updated_at desc", Order.TITLE_ASC: "title"}


async def tied_world(world: World) -> list[Item]:
    """Twelve items whose keys tie in groups: four share each millisecond of creation, titles
    repeat, and edits give updated_at an order of its own."""
    items = []
    for n, title in enumerate(["b", "a", "B", "b", "c", "a", "a", "é", "b", "A", "a", "c"]):
        if n % 4 == 0:
            world.clock.advance(1 * MS)
        items.append(await world.create(ALICE, title))
    await world.create(BOB, "a")  # never in Alice's pages
    world.clock.advance(1 * MS)
    for item in items[::3]:  # four edits in the same millisecond, after every creation
        updated = await world.domain.update(
            principal(ALICE), item.id, ItemInput(title=item.title), mask=["title"], etag=""
        )
        items[items.index(item)] = updated
    return items


def expected(items: list[Item], order: Order) -> list[str]:
    def key(item: Item) -> tuple[Any, str]:
        return (item.title.encode() if order is Order.TITLE_ASC else getattr(item, order.field)), item.id

    return [i.id for i in sorted(items, key=key, reverse=order.direction < 0)]


@pytest.mark.parametrize("order", list(Order), ids=lambda o: o.name)
@pytest.mark.parametrize("size", [1, 4, 5, 12, 100])
async def test_pages_in_every_order_with_ties(world: World, order: Order, size: int) -> None:
    items = await tied_world(world)
    pages = await world.pages(principal(ALICE), size, order_by=ORDER_BY[order])
    assert [i.id for p in pages for i in p] == expected(items, order)
    assert [len(p) for p in pages] == [min(size, 12 - size * n) for n in range(len(pages))]


async def test_items_that_come_and_go_between_pages(world: World) -> None:
    items = await tied_world(world)
    order = expected(items, Order.CREATED_DESC)
    first = await world.domain.list(
        principal(ALICE), requested_page_size=5, page_token="", filter_text="", query="", order_by=""
    )
    gone = {order[1], order[7]}
    for item_id in gone:
        await world.domain.delete(principal(ALICE), item_id, etag="")
    world.clock.advance(1 * MS)
    late = await world.create(ALICE, "late")  # newest: before the cursor, so not on later pages
    seen = [i.id for i in first.items]
    token = first.next_page_token
    while token:
        page = await world.domain.list(
            principal(ALICE), requested_page_size=5, page_token=token, filter_text="", query="", order_by=""
        )
        seen += [i.id for i in page.items]
        token = page.next_page_token
    assert seen == [i for i in order if i not in gone or i == order[1]] and late.id not in seen


@pytest.mark.parametrize(
    ("other", "why"),
    [
        ({"filter_text": "status = DRAFT"}, "another filter"),
        ({"order_by": "title"}, "another order"),
        ({"query": "t"}, "another search"),
    ],
)
async def test_a_page_token_is_bound_to_its_query(world: World, other: dict[str, Any], why: str) -> None:
    for n in range(3):
        await world.create(ALICE, f"t{n}")
    args: dict[str, Any] = {"filter_text": "", "query": "", "order_by": ""}
    page = await world.domain.list(principal(ALICE), requested_page_size=1, page_token="", **args)
    for who, changes in [(principal(ALICE), other), (principal(BOB), {})]:
        with pytest.raises(InvalidArgument) as caught:
            await world.domain.list(
                who, requested_page_size=1, page_token=page.next_page_token, **{**args, **changes}
            )
        assert {field for field, _ in caught.value.violations} == {"page_token"}, why


# ---- list: filters and search -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_text", "query", "titles"),
    [
        ("status = PUBLISHED", "", {"red", "blue"}),
        ('attributes.color = "red"', "", {"red", "dark red"}),
        ("attributes.n > 2", "", {"red"}),
        ('NOT attributes.color = "red"', "", {"blue", "plain"}),
        ('created_at > "2026-03-01T12:00:00.001Z"', "", {"blue", "plain"}),
        ('updated_at <= "2026-03-01T12:00:00.002Z"', "", {"red", "dark red", "blue"}),
        ("", "sunny", {"blue", "plain"}),
        ("", "SUNNY day", {"blue", "plain"}),
        ("", "sunny -night", {"blue"}),
        ("", '"rainy night"', {"dark red"}),
        ("status = DRAFT", "sunny", {"plain"}),
    ],
)
async def test_filters_and_search(world: World, filter_text: str, query: str, titles: set[str]) -> None:
    await world.create(ALICE, "red", status="PUBLISHED", attributes={"color": "red", "n": 3})
    await world.create(ALICE, "dark red", content="a rainy night", attributes={"color": "red"})
    world.clock.advance(2 * MS)
    await world.create(ALICE, "blue", content="sunny day", status="PUBLISHED", attributes={"color": "blue"})
    world.clock.advance(1 * MS)
    await world.create(ALICE, "plain", content="sunny night")
    await world.create(BOB, "bob's", content="sunny", attributes={"color": "red"})
    pages = await world.pages(principal(ALICE), 2, filter_text=filter_text, query=query)
    assert {i.title for p in pages for i in p} == titles


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"filter_text": "status = DONE"}, "filter"),
        ({"filter_text": "colour = 1"}, "filter"),
        ({"query": "x" * 501}, "query"),
        ({"order_by": "created_at asc"}, "order_by"),
        ({"page_token": "not-a-token"}, "page_token"),
    ],
)
async def test_bad_list_arguments_name_the_field(world: World, fields: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"filter_text": "", "query": "", "order_by": "", "page_token": "", **fields}
    with pytest.raises(InvalidArgument) as caught:
        await world.domain.list(principal(ALICE), requested_page_size=10, **args)
    assert {name for name, _ in caught.value.violations} == {field}


# ---- purge ------------------------------------------------------------------------------------


async def test_purge_deletes_a_users_items_and_a_purged_owner_cannot_create(world: World) -> None:
    for n in range(4):
        await world.create(ALICE, f"a{n}")
    kept = await world.create(BOB, "b")
    world.clock.advance(60_000 * MS)
    assert await world.domain.purge_user(ALICE) == 4
    assert world.store.purged == {ALICE: START + timedelta(minutes=1)}  # when, by the domain's clock
    assert list(world.store.items) == [kept.id]
    # Alice's access token outlives her account: it creates nothing, and leaves nothing behind.
    with pytest.raises(Unauthenticated) as caught:
        await world.create(ALICE, "after")
    assert caught.value.reason == "ACCOUNT_DELETED"
    assert list(world.store.items) == [kept.id]
    # Others are unaffected; a second purge finds nothing and is no error.
    assert (await world.create(BOB, "still fine")).user_id == BOB
    assert await world.domain.purge_user(ALICE) == 0


@pytest.mark.parametrize("user_id", ["", "  "])
async def test_purge_needs_a_user_id(world: World, user_id: str) -> None:
    await world.create(ALICE)
    with pytest.raises(InvalidArgument):
        await world.domain.purge_user(user_id)
    assert len(world.store.items) == 1 and world.store.purged == {}
