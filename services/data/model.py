"""The data service's records and the store Protocol: what domain, store and servicer share.

The domain declares what it needs from persistence here, and `store.MongoItemStore` implements
it, so domain and store never import each other (the kratos `identity.Pool` shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from services.data.filters import Node


@dataclass(frozen=True, slots=True)
class Item:
    """A stored item."""

    id: str
    user_id: str
    title: str
    content: str
    status: str
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    version: int

    @property
    def etag(self) -> str:
        return f"v{self.version}"


class Order(Enum):
    """The orders ListItems accepts: (stored field, direction). Ties are broken by id."""

    CREATED_DESC = ("created_at", -1)
    UPDATED_DESC = ("updated_at", -1)
    TITLE_ASC = ("title", 1)

    @property
    def field(self) -> str:
        return self.value[0]

    @property
    def direction(self) -> int:
        return self.value[1]


@dataclass(frozen=True, slots=True)
class Cursor:
    """The keyset position after which the next page starts."""

    key: str | datetime
    id: str


@dataclass(frozen=True, slots=True)
class ListQuery:
    owner: str | None
    """Only this user's items; None for an admin (everyone's)."""
    filter: Node | None
    text: str
    order: Order
    after: Cursor | None
    limit: int


class DuplicateItem(Exception):
    """An insert found an item with this id stored already (and changed nothing)."""

    def __init__(self, item_id: str) -> None:
        super().__init__(item_id)
        self.item_id = item_id


class ItemStore(Protocol):
    """What the domain needs from storage; `store.MongoItemStore` implements it, and
    `memory.MemoryItemStore` too (tests/data/test_store_conformance.py holds both to one contract)."""

    async def insert(self, item: Item) -> None:
        """Store a new item; `DuplicateItem` when its id is taken."""
        ...

    async def get(self, item_id: str, *, owner: str | None) -> Item | None: ...

    async def replace(self, item: Item, *, expected_version: int) -> bool:
        """Store `item` if the stored one is still at `expected_version`, atomically."""
        ...

    async def delete(self, item_id: str, *, owner: str | None, expected_version: int | None) -> bool: ...

    async def list(self, query: ListQuery) -> list[Item]: ...

    async def purge(self, user_id: str, *, at: datetime) -> int:
        """Mark the user purged, then delete their items."""
        ...

    async def is_purged(self, user_id: str) -> bool: ...
