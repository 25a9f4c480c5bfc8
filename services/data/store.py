"""The data service's only database access: its MongoDB collections, through PyMongo's async API.

Documents:

    items:         {_id: ObjectId, user_id: str, title: str, content: str,
                    status: "DRAFT"|"PUBLISHED"|"ARCHIVED", attributes: {...},
                    created_at: date, updated_at: date, version: int}
    purged_users:  {_id: user_id, purged_at: date}   (users whose data PurgeUserData removed)

Every failure to reach MongoDB becomes `Unavailable` (UNAVAILABLE, REST 503) within the client's
short server-selection timeout; the driver reconnects by itself when the server is back.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pymongo
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError

from services.data.filters import And, Comparison, Node, Not, Or
from services.data.model import DuplicateItem, Item, ListQuery
from services.kit import metrics
from services.kit.errors import DependencyUnavailable, Unavailable

log = logging.getLogger(__name__)

Document = dict[str, Any]

# Defaults for the client; options given in MONGODB_URL win. Short timeouts make requests fail
# fast with UNAVAILABLE while MongoDB is unreachable instead of hanging for pymongo's 30 s.
CLIENT_DEFAULTS: dict[str, Any] = {
    "serverSelectionTimeoutMS": 2000,
    "connectTimeoutMS": 2000,
    "socketTimeoutMS": 10000,
    "heartbeatFrequencyMS": 2000,
    "appname": "pinexa-data",
}
PING_TIMEOUT_SECONDS = 1.0
_TEXT_INDEX_MISSING = 27  # IndexNotFound: "$text" before the text index exists
PURGED_USERS = "purged_users"

_OPS = {"!=": "$ne", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}


def connect(url: str) -> AsyncMongoClient[Document]:
    """The one client of the process. It connects lazily and reconnects by itself."""
    given = {key.lower() for key, _ in parse_qsl(urlsplit(url).query)}
    options = {k: v for k, v in CLIENT_DEFAULTS.items() if k.lower() not in given}
    return AsyncMongoClient(url, tz_aware=True, **options)


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except ConnectionFailure as exc:  # includes AutoReconnect and ServerSelectionTimeoutError
        metrics.MONGODB_ERRORS.labels("unavailable").inc()
        raise DependencyUnavailable(
            "the data store is unreachable; try again shortly", reason="DATA_STORE_UNAVAILABLE"
        ) from exc
    except PyMongoError as exc:
        if not isinstance(exc, DuplicateKeyError):  # a conflict the caller handles, not a failure
            metrics.MONGODB_ERRORS.labels("unavailable" if exc.timeout else "error").inc()
        if exc.timeout:
            raise DependencyUnavailable(
                "the data store did not answer in time; try again shortly", reason="DATA_STORE_UNAVAILABLE"
            ) from exc
        if isinstance(exc, OperationFailure) and exc.code == _TEXT_INDEX_MISSING:
            raise Unavailable(
                "full-text search is not ready yet; try again shortly", reason="SEARCH_INDEX_NOT_READY"
            ) from exc
        raise


def compile_filter(node: Node) -> Document:
    """The MongoDB query for a parsed filter: whitelisted paths and typed scalars only."""
    if isinstance(node, Comparison):
        if node.op == "=":
            return {node.field: node.value}
        return {node.field: {_OPS[node.op]: node.value}}
    if isinstance(node, And):
        return {"$and": [compile_filter(term) for term in node.terms]}
    if isinstance(node, Or):
        return {"$or": [compile_filter(term) for term in node.terms]}
    if isinstance(node, Not):
        # NOT is $nor: it also matches items that lack the field (nx-27017 lacks $not).
        return {"$nor": [compile_filter(node.term)]}
    raise TypeError(f"not a filter node: {node!r}")


def _from_document(doc: Mapping[str, Any]) -> Item:
    return Item(
        id=str(doc["_id"]),
        user_id=doc["user_id"],
        title=doc["title"],
        content=doc["content"],
        status=doc["status"],
        attributes=doc["attributes"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        version=doc["version"],
    )


def _to_document(item: Item, *, with_id: bool = True) -> Document:
    doc: Document = {"_id": ObjectId(item.id)} if with_id else {}
    doc.update(
        user_id=item.user_id,
        title=item.title,
        content=item.content,
        status=item.status,
        attributes=item.attributes,
        created_at=item.created_at,
        updated_at=item.updated_at,
        version=item.version,
    )
    return doc


def _key(item_id: str, owner: str | None) -> Document:
    key: Document = {"_id": ObjectId(item_id)}
    if owner is not None:
        key["user_id"] = owner
    return key


class MongoItemStore:
    """Items in one MongoDB collection."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._items = collection
        self._db = collection.database
        # {_id: user_id, purged_at: date} for every user whose data PurgeUserData removed.
        self._purged = self._db[PURGED_USERS]
        self.indexes_ready = False

    async def ping(self) -> None:
        with pymongo.timeout(PING_TIMEOUT_SECONDS):
            await self._db.command("ping")

    async def readiness(self) -> None:
        """Raises unless MongoDB answers a ping; creates the indexes once it first does."""
        await self.ping()
        if not self.indexes_ready:
            await self.ensure_indexes()

    async def _is_nx_27017(self) -> bool:
        info = await self._db.command("buildInfo")
        return bool(info.get("process") == "nx_27017")

    async def ensure_indexes(self) -> None:
        """Create the indexes if they do not exist (idempotent; run at start-up and until it works).

        Each listing order has an index that also serves its keyset condition: the owner's items
        by (created_at desc, _id desc), (updated_at desc, _id desc) and (title, _id); plus
        (created_at desc, _id desc) across owners for an admin, and a text index on title and
        content for `query`.
        """
        with _translate_errors():
            nx = await self._is_nx_27017()

            def keys(*spec: tuple[str, int]) -> list[tuple[str, int]]:
                # nx-27017 0.8.1 fails every later write with "JSON path error near '_id'" when
                # an index includes _id. There only, index without the _id tie-breaker; sorting
                # by it still works, it just isn't served by the index. (Known difference,
                # tests/data/test_service.py::test_indexes_exist checks both.)
                return [k for k in spec if not (nx and k[0] == "_id")]

            models = [
                IndexModel(
                    keys(("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)),
                    name="user_created",
                ),
                IndexModel(
                    keys(("user_id", ASCENDING), ("updated_at", DESCENDING), ("_id", DESCENDING)),
                    name="user_updated",
                ),
                IndexModel(
                    keys(("user_id", ASCENDING), ("title", ASCENDING), ("_id", ASCENDING)), name="user_title"
                ),
                IndexModel(keys(("created_at", DESCENDING), ("_id", DESCENDING)), name="created"),
            ]
            if nx:
                log.warning("nx-27017 detected: list indexes are created without the _id tie-breaker")
            await self._items.create_indexes(models)
            try:
                await self._items.create_index(
                    [("title", pymongo.TEXT), ("content", pymongo.TEXT)], name="title_content_text"
                )
            except OperationFailure:
                if not nx:
                    raise
                # nx-27017 0.8.1 answers "constraint failed" when a text index is created on a
                # collection that already holds documents, including when the index exists (every
                # restart); MongoDB treats an identical index as a no-op. The service creates it
                # while the collection is still empty, on its first start.
                log.warning("nx-27017 refused to (re)create the text index; assuming it exists")
        self.indexes_ready = True

    async def insert(self, item: Item) -> None:
        try:
            with _translate_errors():
                await self._items.insert_one(_to_document(item))
        except DuplicateKeyError as exc:  # the Protocol's error, not the driver's
            raise DuplicateItem(item.id) from exc

    async def get(self, item_id: str, *, owner: str | None) -> Item | None:
        with _translate_errors():
            doc = await self._items.find_one(_key(item_id, owner))
        return None if doc is None else _from_document(doc)

    async def replace(self, item: Item, *, expected_version: int) -> bool:
        """Write `item` over the stored one only if that is still at `expected_version` (one
        atomic conditional replace); False when it changed or went away meanwhile.

        Updates replace the whole document rather than $set fields: nx-27017 0.8.1 stores a
        datetime given in $set as a plain string (and $currentDate in another encoding than
        inserts), which breaks ordering and filters on updated_at there. A replace is
        MongoDB's documented behaviour as well (test_items.py::test_updated_at_stays_a_date).
        """
        condition = {"_id": ObjectId(item.id), "user_id": item.user_id, "version": expected_version}
        with _translate_errors():
            result = await self._items.replace_one(condition, _to_document(item, with_id=False))
        return result.matched_count == 1

    async def delete(self, item_id: str, *, owner: str | None, expected_version: int | None) -> bool:
        condition = _key(item_id, owner)
        if expected_version is not None:
            condition["version"] = expected_version
        with _translate_errors():
            result = await self._items.delete_one(condition)
        return result.deleted_count == 1

    async def list(self, query: ListQuery) -> list[Item]:
        clauses: list[Document] = []
        if query.owner is not None:
            clauses.append({"user_id": query.owner})
        if query.filter is not None:
            clauses.append(compile_filter(query.filter))
        order = query.order
        if query.after is not None:
            beyond = "$gt" if order.direction == ASCENDING else "$lt"
            after_id = ObjectId(query.after.id)
            clauses.append(
                {
                    "$or": [
                        {order.field: {beyond: query.after.key}},
                        {order.field: query.after.key, "_id": {beyond: after_id}},
                    ]
                }
            )
        condition: Document = {"$and": clauses} if len(clauses) > 1 else (clauses[0] if clauses else {})
        if query.text:
            # $text must sit at the top level of the query, next to the other conditions.
            condition = {**condition, "$text": {"$search": query.text}}
        sort = [(order.field, order.direction), ("_id", order.direction)]
        with _translate_errors():
            docs = await self._items.find(condition).sort(sort).limit(query.limit).to_list()
        return [_from_document(doc) for doc in docs]

    async def purge(self, user_id: str, *, at: datetime) -> int:
        """Mark `user_id` purged, then delete their items; idempotent. The mark comes first, so an
        insert that `is_purged` does not see as purged happened before the delete (see
        DataDomain.create)."""
        # The replacement names _id as well: MongoDB would take it from the filter, but nx-27017
        # 0.8.1 gives such an upsert a new ObjectId (a known difference; see
        # tests/data/test_service.py::test_a_deleted_users_token_creates_nothing_after_the_purge).
        mark = {"_id": user_id, "purged_at": at}
        with _translate_errors():
            await self._purged.replace_one({"_id": user_id}, mark, upsert=True)
            result = await self._items.delete_many({"user_id": user_id})
        return int(result.deleted_count)

    async def is_purged(self, user_id: str) -> bool:
        with _translate_errors():
            return await self._purged.find_one({"_id": user_id}, projection={"_id": 1}) is not None
