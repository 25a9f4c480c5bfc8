"""Data items: validation, ownership, optimistic concurrency and keyset pagination.

Plain typed logic; the store (MongoDB) is passed in. Rules:

- A user sees and changes only their own items; another user's item is NOT_FOUND, so its
  existence does not leak. An admin sees and changes every item and may filter by user_id.
- Ids are MongoDB ObjectIds as 24 lower-case hex characters. Times are UTC with millisecond
  precision (what BSON stores). The etag is an opaque rendering of an integer version that
  every write increments; a stale etag is ABORTED (ETAG_MISMATCH) and changes nothing.
- Lists are keyset-paginated on (order key, id), never with skip: items added or deleted between
  pages never cause a duplicate or a miss among the others. An item whose order key changes
  between pages (an edit, in `updated_at desc`; a new title, in `title`) moves: it may then be
  seen twice or not at all, as in any keyset over a mutable key.
- After PurgeUserData, the user's access tokens (valid until they expire) create nothing more.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from services.data.filters import STATUSES, canonical, parse_filter
from services.data.model import Cursor, Item, ItemStore, ListQuery, Order
from services.kit.context import Principal
from services.kit.errors import EtagMismatch, InvalidArgument, NotFound, Unauthenticated, Violations
from services.kit.pagination import decode_page_token, encode_page_token, malformed_page_token, page_size

MAX_TITLE_CHARS = 200
MAX_CONTENT_BYTES = 1024 * 1024
MAX_ATTRIBUTES_BYTES = 64 * 1024
MAX_ATTRIBUTES_DEPTH = 8
MAX_QUERY_CHARS = 500
MAX_UPDATE_ATTEMPTS = 16
MUTABLE_FIELDS = ("title", "content", "status", "attributes")
DEFAULT_STATUS = "DRAFT"
# A page stops early (with a next_page_token) once it holds about this much item data, so a
# page of large items stays under gRPC's 4 MiB message limit.
PAGE_BYTE_BUDGET = 3 * 1024 * 1024

_ID = re.compile(r"[0-9a-fA-F]{24}")
_ETAG = re.compile(r'"?v(\d{1,18})"?')
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class ItemInput:
    """What a client sends: `status` is "" when unspecified."""

    title: str = ""
    content: str = ""
    status: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


_ORDERS = {
    "": Order.CREATED_DESC,
    "created_at desc": Order.CREATED_DESC,
    "updated_at desc": Order.UPDATED_DESC,
    "title": Order.TITLE_ASC,
    "title asc": Order.TITLE_ASC,
}


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Item]
    next_page_token: str


def utc_now_ms() -> datetime:
    """Now in UTC, truncated to the millisecond precision BSON dates have."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_object_id() -> str:
    return str(ObjectId())


# ---- validation ----------------------------------------------------------------------------


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_attributes(attributes: Mapping[str, Any], violations: Violations, path: str) -> None:
    problems: list[str] = []

    def walk(value: Any, where: str, depth: int) -> None:
        if len(problems) >= 5:
            return
        if isinstance(value, Mapping):
            if depth > MAX_ATTRIBUTES_DEPTH:
                problems.append(f"nesting at {_clip(where)} is deeper than {MAX_ATTRIBUTES_DEPTH} levels")
                return
            for raw_key, child in value.items():
                key = str(raw_key)
                label = f"key {_clip(key)!r} at {_clip(where) or 'the top level'}"
                if key.startswith("$"):
                    problems.append(f'{label} must not start with "$"')
                elif "." in key:
                    problems.append(f'{label} must not contain "."')
                elif not key or "\x00" in key:
                    problems.append(f"{label} must be non-empty and without NUL")
                walk(child, f"{where}.{key}" if where else key, depth + 1)
        elif isinstance(value, list | tuple):
            if depth > MAX_ATTRIBUTES_DEPTH:
                problems.append(f"nesting at {_clip(where)} is deeper than {MAX_ATTRIBUTES_DEPTH} levels")
                return
            for index, child in enumerate(value):
                walk(child, f"{where}[{index}]", depth + 1)
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"the number at {_clip(where)} is not finite")

    walk(attributes, "", 1)
    for problem in problems:
        violations.add(path, problem)
    if problems:
        return
    size = len(json.dumps(attributes, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_ATTRIBUTES_BYTES:
        violations.add(path, f"is {size} bytes as JSON; at most {MAX_ATTRIBUTES_BYTES} allowed")


def _validated(
    data: ItemInput, fields: Sequence[str], *, default_status: bool, prefix: str = "item"
) -> dict[str, Any]:
    """The stored values of `fields` from `data`; INVALID_ARGUMENT naming every bad field."""
    violations = Violations()
    values: dict[str, Any] = {}
    if "title" in fields:
        if not data.title.strip():
            violations.add(f"{prefix}.title", "is required")
        elif len(data.title) > MAX_TITLE_CHARS:
            violations.add(f"{prefix}.title", f"must be at most {MAX_TITLE_CHARS} characters")
        values["title"] = data.title
    if "content" in fields:
        if len(data.content) > MAX_CONTENT_BYTES // 4 and len(data.content.encode()) > MAX_CONTENT_BYTES:
            violations.add(f"{prefix}.content", f"must be at most {MAX_CONTENT_BYTES} bytes (1 MiB) as UTF-8")
        values["content"] = data.content
    if "status" in fields:
        status = data.status or (DEFAULT_STATUS if default_status else "")
        if status not in STATUSES:
            violations.add(f"{prefix}.status", "must be DRAFT, PUBLISHED or ARCHIVED")
        values["status"] = status
    if "attributes" in fields:
        _check_attributes(data.attributes, violations, f"{prefix}.attributes")
        values["attributes"] = data.attributes
    violations.raise_if_any("the item has invalid fields")
    return values


def parse_item_id(raw: str, *, field_name: str = "id") -> str:
    if not raw:
        raise InvalidArgument(f"{field_name} is required", [(field_name, "is required")])
    if not _ID.fullmatch(raw):
        raise InvalidArgument(
            f"{field_name} is not an item id", [(field_name, "must be 24 hexadecimal characters")]
        )
    return raw.lower()


def parse_etag(etag: str) -> int:
    """The version an etag names; -1 (never matches) for anything this API did not issue."""
    match = _ETAG.fullmatch(etag.strip())
    return int(match.group(1)) if match else -1


def parse_update_mask(paths: Sequence[str]) -> tuple[str, ...]:
    """The fields an update changes: every mutable field when the mask is empty or "*"."""
    if not paths or list(paths) == ["*"]:
        return MUTABLE_FIELDS
    unknown = [p for p in paths if p not in MUTABLE_FIELDS]
    if unknown:
        raise InvalidArgument(
            f"update_mask names fields that cannot be updated: {', '.join(map(repr, unknown))}",
            [
                ("update_mask", f"unknown or read-only field {p!r}; use title, content, status, attributes")
                for p in unknown
            ],
        )
    return tuple(dict.fromkeys(paths))


def parse_order(order_by: str) -> Order:
    normalized = " ".join(order_by.lower().split())
    order = _ORDERS.get(normalized)
    if order is None:
        raise InvalidArgument(
            f"order_by {order_by!r} is not supported",
            [("order_by", 'use "created_at desc" (the default), "updated_at desc" or "title"')],
        )
    return order


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


def _cursor_from(position: Mapping[str, Any], order: Order) -> Cursor:
    """The cursor in a decoded page token. Tokens are opaque but not signed, so anything a client
    could put in one is INVALID_ARGUMENT here, never an internal error."""
    key, item_id = position.get("k"), position.get("i")
    malformed = malformed_page_token()
    if not isinstance(item_id, str) or not _ID.fullmatch(item_id):
        raise malformed
    if order is Order.TITLE_ASC:
        if not isinstance(key, str):
            raise malformed
        return Cursor(key, item_id)
    if not isinstance(key, int) or isinstance(key, bool):
        raise malformed
    try:
        return Cursor(_EPOCH + key * _MS, item_id)
    except OverflowError:  # a time outside what datetime (and BSON) can hold
        raise malformed from None


def _position_of(item: Item, order: Order) -> dict[str, Any]:
    key: str | int
    if order is Order.TITLE_ASC:
        key = item.title
    elif order is Order.UPDATED_DESC:
        key = _ms(item.updated_at)
    else:
        key = _ms(item.created_at)
    return {"k": key, "i": item.id}


def _approximate_bytes(item: Item) -> int:
    size = 200 + len(item.title) * 4 + len(item.content)
    if not item.content.isascii():
        size += len(item.content.encode()) - len(item.content)
    if item.attributes:
        size += len(json.dumps(item.attributes, separators=(",", ":"), ensure_ascii=False))
    return size


# ---- the service --------------------------------------------------------------------------


class DataDomain:
    """Every data-item use case, for one verified caller at a time."""

    def __init__(
        self,
        store: ItemStore,
        *,
        clock: Callable[[], datetime] = utc_now_ms,
        new_id: Callable[[], str] = new_object_id,
    ) -> None:
        self._store = store
        self._clock = clock
        self._new_id = new_id

    @staticmethod
    def _owner(principal: Principal) -> str | None:
        return None if principal.is_admin else principal.user_id

    async def create(self, principal: Principal, data: ItemInput) -> Item:
        values = _validated(data, MUTABLE_FIELDS, default_status=True)
        now = self._clock()
        item = Item(
            id=self._new_id(),
            user_id=principal.user_id,
            created_at=now,
            updated_at=now,
            version=1,
            **values,
        )
        await self._store.insert(item)
        # Access tokens outlive their account by up to their lifetime, so a deleted user can still
        # call CreateItem after PurgeUserData ran. The purge marks the user before deleting, and
        # this check comes after the insert: either the purge's delete removes the item, or the
        # mark is seen here and the item goes now. No orphan either way.
        if await self._store.is_purged(item.user_id):
            await self._store.delete(item.id, owner=item.user_id, expected_version=None)
            raise Unauthenticated(
                "the account behind this access token was deleted", reason="ACCOUNT_DELETED"
            )
        return item

    async def get(self, principal: Principal, item_id: str) -> Item:
        item = await self._store.get(parse_item_id(item_id), owner=self._owner(principal))
        if item is None:
            raise _not_found(item_id)
        return item

    async def update(
        self, principal: Principal, item_id: str, data: ItemInput, *, mask: Sequence[str], etag: str
    ) -> Item:
        """PUT (empty mask) replaces every mutable field; PATCH changes exactly the mask's fields.

        Optimistic concurrency: read the item, then write it back only if its version is
        unchanged (one atomic conditional replace). With an etag, a different version is
        ABORTED; without one, a concurrent change makes us re-read and re-apply the change, so
        neither write is lost.
        """
        item_id = parse_item_id(item_id, field_name="item.id")
        fields = parse_update_mask(mask)
        changes = _validated(data, fields, default_status=not mask or list(mask) == ["*"])
        expected = parse_etag(etag) if etag else None
        owner = self._owner(principal)
        for _ in range(MAX_UPDATE_ATTEMPTS):
            current = await self._store.get(item_id, owner=owner)
            if current is None:
                raise _not_found(item_id)
            if expected is not None and current.version != expected:
                raise _stale(current)
            updated = replace(
                current,
                **changes,
                updated_at=max(self._clock(), current.updated_at),
                version=current.version + 1,
            )
            if await self._store.replace(updated, expected_version=current.version):
                return updated
        raise EtagMismatch(
            "the item is being changed by others too often; try again", reason="CONCURRENT_UPDATE"
        )

    async def delete(self, principal: Principal, item_id: str, *, etag: str) -> None:
        item_id = parse_item_id(item_id)
        owner = self._owner(principal)
        expected = parse_etag(etag) if etag else None
        if not await self._store.delete(item_id, owner=owner, expected_version=expected):
            await self._raise_missing_or_stale(item_id, owner)

    async def _raise_missing_or_stale(self, item_id: str, owner: str | None) -> None:
        current = await self._store.get(item_id, owner=owner)
        if current is None:
            raise _not_found(item_id)
        raise _stale(current)

    async def list(
        self,
        principal: Principal,
        *,
        requested_page_size: int,
        page_token: str,
        filter_text: str,
        query: str,
        order_by: str,
    ) -> Page:
        order = parse_order(order_by)
        node = parse_filter(filter_text, allow_user_id=principal.is_admin)
        text = " ".join(query.split())
        if len(text) > MAX_QUERY_CHARS:
            raise InvalidArgument(
                "query is too long", [("query", f"must be at most {MAX_QUERY_CHARS} characters")]
            )
        owner = self._owner(principal)
        # Tokens are bound to who asks, the normalized filter, the search text and the order.
        scope = json.dumps([owner or "*", canonical(node), text, order.name])
        position = decode_page_token(page_token, scope=scope)
        after = _cursor_from(position, order) if position is not None else None
        size = page_size(requested_page_size)
        found = await self._store.list(
            ListQuery(owner=owner, filter=node, text=text, order=order, after=after, limit=size + 1)
        )
        items: list[Item] = []
        budget = PAGE_BYTE_BUDGET
        for item in found[:size]:
            cost = _approximate_bytes(item)
            if items and cost > budget:
                break
            items.append(item)
            budget -= cost
        more = len(found) > len(items)
        token = encode_page_token(_position_of(items[-1], order), scope=scope) if more else ""
        return Page(items=items, next_page_token=token)

    async def purge_user(self, user_id: str) -> int:
        """Delete every item `user_id` owns, and refuse any they try to create afterwards (with an
        access token that outlived the account); idempotent."""
        if not user_id.strip():
            raise InvalidArgument("user_id is required", [("user_id", "is required")])
        return await self._store.purge(user_id, at=self._clock())


def _stale(current: Item) -> EtagMismatch:
    return EtagMismatch(
        "the item changed since you read it; read it again and retry",
        metadata={"current_etag": current.etag},
    )


def _not_found(item_id: str) -> NotFound:
    return NotFound(f"item {item_id!r} not found", reason="ITEM_NOT_FOUND")
