"""`MemoryItemStore`: the `model.ItemStore` in a process's memory, for tests and experiments.

It keeps `store.MongoItemStore`'s contract as MongoDB evaluates it
(tests/data/test_store_conformance.py runs the same tests on both, and on nx-27017):

- ids are ObjectIds: given in any case, kept and returned in lower case, anything else refused as
  `bson.ObjectId` refuses it; an id already stored is `DuplicateItem` and changes nothing;
- times are stored as BSON dates: UTC, floored to the millisecond; what is stored is a copy, so a
  caller changing its item or the attributes it got back changes nothing stored;
- owner scoping, the version checks of replace and delete, purge (mark first, then delete) and
  is_purged as in MongoDB;
- `list` sorts by (order key, id), in the order's direction, pages with the same keyset condition
  and evaluates the filter with MongoDB's query semantics: comparisons only between values of one
  type (numbers with numbers, strings with strings, byte-wise), a dotted path reaching into nested
  documents and through arrays, a list matching when any element does, != and NOT matching items
  without the field;
- `text` is MongoDB's `$text` on title and content: whole words, case- and diacritic-insensitive,
  any word matches, `-word` excludes, a `"quoted phrase"` must appear. Unlike MongoDB it neither
  stems words nor drops English stop words ("tomato" does not find "tomatoes"; see
  tests/data/test_store_conformance.py::test_search_stemming).

Every method runs without awaiting, so each is atomic under asyncio, as one MongoDB
single-document operation is.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from services.data.filters import And, Comparison, Node, Not, Or, Scalar
from services.data.model import Cursor, DuplicateItem, Item, ItemStore, ListQuery, Order

_NUMBER = (int, float)
_FIELDS = tuple(field.name for field in fields(Item))
_WORD = re.compile(r"[^\W_]+")
_PHRASE = re.compile(r'"([^"]*)"')


def _bson_time(moment: datetime) -> datetime:
    """A datetime as a BSON date holds it: UTC, floored to the millisecond."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _object_id(raw: str) -> str:
    return str(ObjectId(raw))


def _stored(item: Item) -> Item:
    return replace(
        item,
        id=_object_id(item.id),
        attributes=copy.deepcopy(item.attributes),
        created_at=_bson_time(item.created_at),
        updated_at=_bson_time(item.updated_at),
    )


def _copy(item: Item) -> Item:
    return replace(item, attributes=copy.deepcopy(item.attributes))


# ---- MongoDB's query semantics for the filter tree ---------------------------------------------


def _bracket(value: Any) -> str | None:
    """MongoDB compares only values of one type bracket; bool is not a number there."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, _NUMBER):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "date"
    return None


def _resolve(value: Any, path: list[str]) -> Iterator[Any]:
    """The values a dotted path reaches, as MongoDB finds them: through nested documents, into
    each document of an array, and at a numeric segment also at that index of an array."""
    if not path:
        yield value
        return
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        if head in value:
            yield from _resolve(value[head], rest)
    elif isinstance(value, list):
        if head.isdigit() and int(head) < len(value):
            yield from _resolve(value[int(head)], rest)
        for element in value:
            if isinstance(element, dict):
                yield from _resolve(element, path)


def _candidates(document: dict[str, Any], field: str) -> Iterator[Any]:
    """Every value a comparison on `field` looks at: each one the path reaches, and the elements
    of those that are arrays (one level, as MongoDB does)."""
    for value in _resolve(document, field.split(".")):
        yield value
        if isinstance(value, list):
            yield from value


def _compares(candidate: Any, op: str, bound: Scalar) -> bool:
    if _bracket(candidate) is None or _bracket(candidate) != _bracket(bound):
        return False
    if op == "=":
        return bool(candidate == bound)
    if op == "<":
        return bool(candidate < bound)
    if op == "<=":
        return bool(candidate <= bound)
    if op == ">":
        return bool(candidate > bound)
    return bool(candidate >= bound)  # ">="


def _matches(node: Node, document: dict[str, Any]) -> bool:
    if isinstance(node, Comparison):
        bound = _bson_time(node.value) if isinstance(node.value, datetime) else node.value
        if node.op == "!=":  # $ne: no candidate equals it (so also: the field is missing)
            return not any(_compares(c, "=", bound) for c in _candidates(document, node.field))
        return any(_compares(c, node.op, bound) for c in _candidates(document, node.field))
    if isinstance(node, And):
        return all(_matches(term, document) for term in node.terms)
    if isinstance(node, Or):
        return any(_matches(term, document) for term in node.terms)
    if isinstance(node, Not):
        return not _matches(node.term, document)
    raise TypeError(f"not a filter node: {node!r}")


def _document(item: Item) -> dict[str, Any]:
    """The item as the stored document the filter paths name (`id` is `_id` there)."""
    return {"_id": item.id, **{name: getattr(item, name) for name in _FIELDS}}


# ---- MongoDB's $text on title and content ------------------------------------------------------


def _fold(text: str) -> str:
    """Case- and diacritic-insensitive, as MongoDB's text index (version 3) compares."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _words(text: str) -> set[str]:
    return set(_WORD.findall(_fold(text)))


def _text_matcher(search: str) -> Callable[[Item], bool]:
    phrases = [_fold(p) for p in _PHRASE.findall(search) if p.strip()]
    terms: set[str] = set()
    excluded: set[str] = set()
    for token in _PHRASE.sub(" ", search).split():
        if token.startswith("-"):
            excluded |= _words(token[1:])
        else:
            terms |= _words(token)

    def matches(item: Item) -> bool:
        fields = (_fold(item.title), _fold(item.content))
        words = _words(item.title) | _words(item.content)
        if words & excluded:
            return False
        if phrases:  # every phrase must appear; the terms then only rank, as in MongoDB
            return all(any(p in field for field in fields) for p in phrases)
        return bool(words & terms)

    return matches


# ---- the store ---------------------------------------------------------------------------------


def _key(item: Item, order: Order) -> Any:
    return getattr(item, order.field)


def _beyond(item: Item, cursor: Cursor, order: Order) -> bool:
    """The keyset condition: after `cursor` in the order's direction, the id breaking ties."""
    key = _bson_time(cursor.key) if isinstance(cursor.key, datetime) else cursor.key
    mine, theirs = (_key(item, order), item.id), (key, _object_id(cursor.id))
    return mine > theirs if order.direction > 0 else mine < theirs


class MemoryItemStore:
    """Items and purge marks in two dicts."""

    def __init__(self) -> None:
        self.items: dict[str, Item] = {}  # id -> the stored item
        self.purged: dict[str, datetime] = {}  # user_id -> when PurgeUserData ran

    def _find(self, item_id: str, owner: str | None) -> Item | None:
        item = self.items.get(_object_id(item_id))
        if item is None or (owner is not None and item.user_id != owner):
            return None
        return item

    async def insert(self, item: Item) -> None:
        stored = _stored(item)
        if stored.id in self.items:
            raise DuplicateItem(stored.id)
        self.items[stored.id] = stored

    async def get(self, item_id: str, *, owner: str | None) -> Item | None:
        item = self._find(item_id, owner)
        return None if item is None else _copy(item)

    async def replace(self, item: Item, *, expected_version: int) -> bool:
        current = self._find(item.id, item.user_id)
        if current is None or current.version != expected_version:
            return False
        stored = _stored(item)
        self.items[stored.id] = stored
        return True

    async def delete(self, item_id: str, *, owner: str | None, expected_version: int | None) -> bool:
        current = self._find(item_id, owner)
        if current is None or (expected_version is not None and current.version != expected_version):
            return False
        del self.items[current.id]
        return True

    async def list(self, query: ListQuery) -> list[Item]:
        order = query.order
        text = _text_matcher(query.text) if query.text else None
        found = [
            item
            for item in self.items.values()
            if (query.owner is None or item.user_id == query.owner)
            and (query.filter is None or _matches(query.filter, _document(item)))
            and (text is None or text(item))
            and (query.after is None or _beyond(item, query.after, order))
        ]
        found.sort(key=lambda item: (_key(item, order), item.id), reverse=order.direction < 0)
        limit = abs(query.limit)  # MongoDB: 0 is no limit, a negative one is its absolute value
        return [_copy(item) for item in (found[:limit] if limit else found)]

    async def purge(self, user_id: str, *, at: datetime) -> int:
        self.purged[user_id] = _bson_time(at)
        doomed = [item_id for item_id, item in self.items.items() if item.user_id == user_id]
        for item_id in doomed:
            del self.items[item_id]
        return len(doomed)

    async def is_purged(self, user_id: str) -> bool:
        return user_id in self.purged


_: type[ItemStore] = MemoryItemStore  # mypy checks that it is one
