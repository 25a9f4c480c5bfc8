"""The security audit trail (issue 14): append-only records of security events.

Each record is kept by the service that owns its event, in that service's SQL database
(`users_audit_events`, `auth_audit_events`, each created by its service's own migration; distinct
names because the two services may share one database):
- auth: logins (succeeded, failed, throttled), refresh-token reuse, session revocations (logout,
  logout everywhere, a deleted session, an admin's sign-out, the ends a password change or a
  disable cause) and the admin's sign-out itself;
- users: sign-ups, password changes, e-mail verification and changes (asked for, cancelled, and
  EMAIL_CHANGED once the new address is confirmed), role changes, account disable/enable/delete
  and any other change an admin makes to someone else's account.
Where the event is a change to the database, its record is written in the same transaction
(`AuditLog.insert` on the store's connection); events that change nothing (a failed login, a
wrong current password) are written on their own. Every record is also emitted as one structured
log line (logger `pinexa.audit`, message "audit"), after its transaction committed.

A record holds who acted (`actor_id`, '' when nobody signed in), whom it concerns (`subject_id`),
the `type`, when (`occurred_at`, milliseconds since the epoch), the client address, the request id,
the `outcome` and a small `detail` map. Never a secret: `detail` takes only the keys in
`DETAIL_KEYS`, each a short scalar, so a password, a token or a hash has no field to land in; a
login's typed name is not recorded either (only the account it reached).

Listing (`list_page`) uses the AIP-160 filter language of ListItems (services/kit/filters.py) over
`actor_id`, `subject_id`, `type`, `outcome` and `occurred_at`, and keyset pages in
(occurred_at desc, id desc) order. Every source orders by that same total key, so users merges its
own records with auth's (services/kit/audit_grpc.py) into one correct page: see `merge_pages`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa

from services.kit import filters, pagination
from services.kit.context import current_actor_id, current_client_address, current_request_id
from services.kit.db import Connection, Database

log = logging.getLogger("pinexa.audit")

# -- event types ------------------------------------------------------------------------------
LOGIN_SUCCEEDED = "LOGIN_SUCCEEDED"
LOGIN_FAILED = "LOGIN_FAILED"
LOGIN_THROTTLED = "LOGIN_THROTTLED"
REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"  # noqa: S105 (an event type)
SESSION_REVOKED = "SESSION_REVOKED"
PASSWORD_CHANGED = "PASSWORD_CHANGED"  # noqa: S105 (an event type)
PASSWORD_RESET = "PASSWORD_RESET"  # noqa: S105 (an event type)
PASSWORD_RESET_REQUESTED = "PASSWORD_RESET_REQUESTED"  # noqa: S105 (an event type)
ACCOUNT_CREATED = "ACCOUNT_CREATED"
EMAIL_VERIFIED = "EMAIL_VERIFIED"
EMAIL_CHANGE_REQUESTED = "EMAIL_CHANGE_REQUESTED"
EMAIL_CHANGE_CANCELLED = "EMAIL_CHANGE_CANCELLED"
EMAIL_CHANGED = "EMAIL_CHANGED"
ROLE_CHANGED = "ROLE_CHANGED"
ACCOUNT_DISABLED = "ACCOUNT_DISABLED"
ACCOUNT_ENABLED = "ACCOUNT_ENABLED"
ACCOUNT_DELETED = "ACCOUNT_DELETED"
ACCOUNT_UPDATED_BY_ADMIN = "ACCOUNT_UPDATED_BY_ADMIN"
SIGNED_OUT_BY_ADMIN = "SIGNED_OUT_BY_ADMIN"
SECOND_FACTOR_ENABLED = "SECOND_FACTOR_ENABLED"
SECOND_FACTOR_DISABLED = "SECOND_FACTOR_DISABLED"
SECOND_FACTOR_RECOVERY_CODES_REGENERATED = "SECOND_FACTOR_RECOVERY_CODES_REGENERATED"
SECOND_FACTOR_REMOVED_BY_ADMIN = "SECOND_FACTOR_REMOVED_BY_ADMIN"
RECOVERY_CODE_USED = "RECOVERY_CODE_USED"
LOGIN_MFA_REQUIRED = "LOGIN_MFA_REQUIRED"
REAUTHENTICATED = "REAUTHENTICATED"

EVENT_TYPES = frozenset(
    {
        LOGIN_SUCCEEDED,
        LOGIN_FAILED,
        LOGIN_THROTTLED,
        REFRESH_TOKEN_REUSED,
        SESSION_REVOKED,
        PASSWORD_CHANGED,
        PASSWORD_RESET,
        PASSWORD_RESET_REQUESTED,
        ACCOUNT_CREATED,
        EMAIL_VERIFIED,
        EMAIL_CHANGE_REQUESTED,
        EMAIL_CHANGE_CANCELLED,
        EMAIL_CHANGED,
        ROLE_CHANGED,
        ACCOUNT_DISABLED,
        ACCOUNT_ENABLED,
        ACCOUNT_DELETED,
        ACCOUNT_UPDATED_BY_ADMIN,
        SIGNED_OUT_BY_ADMIN,
        SECOND_FACTOR_ENABLED,
        SECOND_FACTOR_DISABLED,
        SECOND_FACTOR_RECOVERY_CODES_REGENERATED,
        SECOND_FACTOR_REMOVED_BY_ADMIN,
        RECOVERY_CODE_USED,
        LOGIN_MFA_REQUIRED,
        REAUTHENTICATED,
    }
)

# detail.reason of a password reset asked for an address no account has: never an error reason
# (the answer is the same for any address), only in the record.
UNKNOWN_ADDRESS = "UNKNOWN_ADDRESS"

SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REFUSED = "REFUSED"
OUTCOMES = frozenset({SUCCESS, FAILURE, REFUSED})

# The only keys `detail` may hold, each a short scalar: nothing secret fits in any of them.
DETAIL_KEYS = frozenset(
    {
        "reason",  # an ErrorInfo reason or a revocation reason, e.g. INVALID_CREDENTIALS, token_reuse
        "role",  # the new role of a ROLE_CHANGED
        "previous_role",
        "fields",  # the fields an admin changed, comma-separated names
        "sessions",  # how many sessions a revocation ended
        "session_id",
        "method",  # the second factor's kind, e.g. totp
        "device_token",  # "used" / "none": whether a device token was presented, never the token
    }
)
_MAX_DETAIL_VALUE = 200
# The widths of the text columns a client can fill (a request id is the client's own x-request-id
# when it sends one): longer values are cut to fit, never a failed write.
MAX_REQUEST_ID = 128
MAX_ID = 64


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One security event. `occurred_at` is milliseconds since the epoch (UTC)."""

    id: str
    occurred_at: int
    service: str
    type: str
    outcome: str
    actor_id: str
    subject_id: str
    client_address: str
    request_id: str
    detail: Mapping[str, str | int] = field(default_factory=dict)

    @property
    def occurred(self) -> datetime:
        return datetime.fromtimestamp(self.occurred_at / 1000, UTC)

    def sort_key(self) -> tuple[int, str]:
        return (self.occurred_at, self.id)


def new_event(
    service: str,
    type: str,
    *,
    subject_id: str,
    outcome: str = SUCCESS,
    actor_id: str | None = None,
    detail: Mapping[str, str | int] | None = None,
    now: float | None = None,
) -> AuditEvent:
    """An event of the current request: its request id, client address and (unless `actor_id`
    is given) the signed-in caller as actor. ValueError for an unknown type, outcome or detail key."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown audit event type {type!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    clean: dict[str, str | int] = {}
    for key, value in (detail or {}).items():
        if key not in DETAIL_KEYS:
            raise ValueError(f"audit detail key {key!r} is not allowed")
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ValueError(f"audit detail {key!r} must be a string or an integer")
        clean[key] = value[:_MAX_DETAIL_VALUE] if isinstance(value, str) else value
    if actor_id is None:
        actor_id = current_actor_id()
    request_id = current_request_id()
    return AuditEvent(
        id=uuid.uuid4().hex,
        occurred_at=int((time.time() if now is None else now) * 1000),
        service=service,
        type=type,
        outcome=outcome,
        actor_id=actor_id[:MAX_ID],
        subject_id=subject_id[:MAX_ID],
        client_address=current_client_address()[:MAX_ID],
        request_id="" if request_id == "-" else request_id[:MAX_REQUEST_ID],
        detail=clean,
    )


def emit_log(event: AuditEvent) -> None:
    """The event as one structured log line (JSON under the kit's logging)."""
    log.info(
        "audit",
        extra={
            "audit_id": event.id,
            "audit_type": event.type,
            "request_id": event.request_id or "-",
            "outcome": event.outcome,
            "actor": event.actor_id or "-",
            "subject": event.subject_id or "-",
            "client": event.client_address or "-",
            "detail": dict(event.detail),
        },
    )


# -- the table ------------------------------------------------------------------------------------


def audit_columns() -> list[sa.Column[Any]]:
    """The columns of `audit_events`, fresh for each use (a table or a migration)."""
    return [
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("occurred_at", sa.BigInteger, nullable=False),
        sa.Column("service", sa.String(16), nullable=False),
        sa.Column("type", sa.String(48), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(MAX_ID), nullable=False, server_default=""),
        sa.Column("subject_id", sa.String(MAX_ID), nullable=False, server_default=""),
        sa.Column("client_address", sa.String(MAX_ID), nullable=False, server_default=""),
        sa.Column("request_id", sa.String(MAX_REQUEST_ID), nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
    ]


_INDEXES = (
    ("occurred", ("occurred_at", "id")),
    ("subject", ("subject_id", "occurred_at", "id")),
    ("actor", ("actor_id", "occurred_at", "id")),
    ("type", ("type", "occurred_at", "id")),
)


def audit_table(metadata: sa.MetaData, name: str) -> sa.Table:
    """The audit table `name` in a service's metadata: `users_audit_events`, `auth_audit_events`
    (distinct names, because users and auth may share one database)."""
    table = sa.Table(name, metadata, *audit_columns())
    for suffix, columns in _INDEXES:
        sa.Index(f"ix_{name}_{suffix}", *(table.c[column] for column in columns))
    return table


def create_audit_table(op: Any, name: str) -> None:
    """For a service's Alembic migration: create the audit table `name` and its indexes."""
    op.create_table(name, *audit_columns())
    for suffix, columns in _INDEXES:
        op.create_index(f"ix_{name}_{suffix}", name, list(columns))


def _row(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "occurred_at": event.occurred_at,
        "service": event.service,
        "type": event.type,
        "outcome": event.outcome,
        "actor_id": event.actor_id,
        "subject_id": event.subject_id,
        "client_address": event.client_address,
        "request_id": event.request_id,
        "detail": json.dumps(dict(event.detail), separators=(",", ":"), sort_keys=True),
    }


def emitted(events: Iterable[AuditEvent]) -> None:
    for event in events:
        emit_log(event)


def _event(row: Any) -> AuditEvent:
    try:
        detail = json.loads(row.detail or "{}")
    except ValueError:
        detail = {}
    return AuditEvent(
        id=row.id,
        occurred_at=int(row.occurred_at),
        service=row.service,
        type=row.type,
        outcome=row.outcome,
        actor_id=row.actor_id,
        subject_id=row.subject_id,
        client_address=row.client_address,
        request_id=row.request_id,
        detail=detail if isinstance(detail, dict) else {},
    )


# -- filters ------------------------------------------------------------------------------------

FILTER_FIELDS = ("actor_id", "subject_id", "type", "outcome", "occurred_at")


def _typed(field_token: filters.Token, op: filters.Op, value: filters.Token) -> filters.Comparison:
    name = field_token.text
    where = f"at column {field_token.column}"
    if name in ("actor_id", "subject_id"):
        if op not in ("=", "!="):
            raise filters.fail(f"{name} supports only = and != ({where})")
        return filters.Comparison(name, op, filters.string_value(value, name))
    if name in ("type", "outcome"):
        if op not in ("=", "!="):
            raise filters.fail(f"{name} supports only = and != ({where})")
        raw = value.text if value.kind == "word" else filters.literal(value)
        allowed = EVENT_TYPES if name == "type" else OUTCOMES
        if raw not in allowed:
            raise filters.fail(f"unknown {name} {value.text} at column {value.column}")
        return filters.Comparison(name, op, str(raw))
    if name == "occurred_at":
        return filters.Comparison(name, op, filters.timestamp_value(value, name, op))
    raise filters.fail(f"unknown field {name!r} {where}; filterable: {', '.join(FILTER_FIELDS)}")


def parse_filter(text: str) -> filters.Node | None:
    """The audit filter's tree; INVALID_ARGUMENT (INVALID_FILTER) naming the problem."""
    return filters.parse(text, _typed)


_OPS = {
    "=": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
}


def _compile(node: filters.Node, table: sa.Table) -> Any:
    if isinstance(node, filters.And):
        return sa.and_(*(_compile(term, table) for term in node.terms))
    if isinstance(node, filters.Or):
        return sa.or_(*(_compile(term, table) for term in node.terms))
    if isinstance(node, filters.Not):
        return sa.not_(_compile(node.term, table))
    value: Any = node.value
    if isinstance(value, datetime):
        value = int(value.timestamp() * 1000)
    return _OPS[node.op](table.c[node.field], value)


# -- pages ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """What a list asks for: the parsed filter, the subject it is confined to ('' for all), the
    cursor (the last key of the previous page, exclusive) and how many records."""

    filter: filters.Node | None
    subject_id: str
    after: tuple[int, str] | None
    limit: int
    filter_text: str = ""  # the filter as the client wrote it, for a source in another service

    @property
    def scope(self) -> str:
        return f"audit|{self.subject_id}|{filters.canonical(self.filter)}"


def cursor_of(position: Mapping[str, Any] | None) -> tuple[int, str] | None:
    if position is None:
        return None
    at, event_id = position.get("t"), position.get("i")
    if not isinstance(at, int) or isinstance(at, bool) or not isinstance(event_id, str):
        raise pagination.malformed_page_token()
    return (at, event_id)


def merge_pages(pages: Iterable[Sequence[AuditEvent]], limit: int) -> tuple[list[AuditEvent], bool]:
    """Merge pages from several sources, each in (occurred_at desc, id desc) order and each asked
    for `limit + 1` records after the same cursor: the first `limit` of the merge, and whether more
    exist. Correct because every source orders by the same total key and ids are unique (UUIDs), so
    the next page, asked after the last key returned, skips and repeats nothing."""
    merged = list(heapq.merge(*pages, key=AuditEvent.sort_key, reverse=True))
    return merged[:limit], len(merged) > limit


class AuditSource(Protocol):
    """Something that lists audit records: a service's own store, or another service's over gRPC
    (services/kit/audit_grpc.py)."""

    async def list(self, query: AuditQuery) -> list[AuditEvent]: ...


class AuditStore(AuditSource, Protocol):
    """Where a service keeps its audit records (AuditLog on SQL, MemoryAuditLog in memory)."""

    async def record(self, *events: AuditEvent) -> None: ...

    async def purge(self, *, before: float) -> int: ...


class AuditLog:
    """A service's audit records in its SQL database, in `table` (see `audit_table`)."""

    def __init__(self, engine: Database, table: sa.Table, *, reads: Database | None = None) -> None:
        self._engine = engine
        self._table = table
        self._reads = reads or engine

    async def insert(self, connection: Connection, events: Sequence[AuditEvent]) -> None:
        """Write `events` on `connection`, inside the caller's transaction (the change they
        record). The caller emits their log lines (`emitted`) once that transaction committed."""
        if events:
            await connection.execute(sa.insert(self._table), [_row(event) for event in events])

    async def record(self, *events: AuditEvent) -> None:
        """Write events that belong to no other transaction (a failed login), then log them."""
        async with self._engine.begin() as connection:
            await self.insert(connection, events)
        emitted(events)

    async def list(self, query: AuditQuery) -> list[AuditEvent]:
        """Up to `query.limit` records, newest first, strictly after `query.after`."""
        table = self._table
        statement = (
            sa.select(table).order_by(table.c.occurred_at.desc(), table.c.id.desc()).limit(query.limit)
        )
        if query.subject_id:
            statement = statement.where(table.c.subject_id == query.subject_id)
        if query.filter is not None:
            statement = statement.where(_compile(query.filter, table))
        if query.after is not None:
            statement = statement.where(sa.tuple_(table.c.occurred_at, table.c.id) < sa.tuple_(*query.after))
        async with self._reads.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [_event(row) for row in rows]

    async def purge(self, *, before: float) -> int:
        """Delete records older than `before` (UNIX seconds); how many went."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                sa.delete(self._table).where(self._table.c.occurred_at < int(before * 1000))
            )
        return int(result.rowcount or 0)


class MemoryAuditLog:
    """The in-memory audit log of the memory stores (domain-rule tests)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def record(self, *events: AuditEvent) -> None:
        self.events.extend(events)
        emitted(events)

    async def list(self, query: AuditQuery) -> list[AuditEvent]:
        rows = sorted(self.events, key=AuditEvent.sort_key, reverse=True)
        if query.subject_id:
            rows = [row for row in rows if row.subject_id == query.subject_id]
        if query.after is not None:
            rows = [row for row in rows if row.sort_key() < query.after]
        if query.filter is not None:
            rows = [row for row in rows if _matches(query.filter, row)]
        return rows[: query.limit]

    async def purge(self, *, before: float) -> int:
        keep = [row for row in self.events if row.occurred_at >= int(before * 1000)]
        gone = len(self.events) - len(keep)
        self.events[:] = keep
        return gone


def _matches(node: filters.Node, event: AuditEvent) -> bool:
    if isinstance(node, filters.And):
        return all(_matches(term, event) for term in node.terms)
    if isinstance(node, filters.Or):
        return any(_matches(term, event) for term in node.terms)
    if isinstance(node, filters.Not):
        return not _matches(node.term, event)
    value: Any = node.value
    if isinstance(value, datetime):
        value = int(value.timestamp() * 1000)
    return bool(_OPS[node.op](getattr(event, node.field), value))


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[AuditEvent]
    next_page_token: str


async def list_page(
    sources: Sequence[AuditSource], *, filter_text: str, subject_id: str, size: int, token: str
) -> AuditPage:
    """One page of the records of every source, merged newest first (see `merge_pages`). The
    token is bound to the filter and the subject: reused with others it is INVALID_ARGUMENT."""
    limit = pagination.page_size(size)
    node = parse_filter(filter_text)
    scope = AuditQuery(node, subject_id, None, limit).scope
    after = cursor_of(pagination.decode_page_token(token, scope=scope))
    query = AuditQuery(node, subject_id, after, limit + 1, filter_text=filter_text)
    pages = await asyncio.gather(*(source.list(query) for source in sources))
    events, more = merge_pages(pages, limit)
    next_token = ""
    if more and events:
        last = events[-1]
        next_token = pagination.encode_page_token({"t": last.occurred_at, "i": last.id}, scope=scope)
    return AuditPage(events=events, next_page_token=next_token)


def per_session(template: AuditEvent | None, session_ids: Sequence[str]) -> list[AuditEvent]:
    """One record per ended session from a SESSION_REVOKED `template` (its own id each)."""
    if template is None:
        return []
    return [
        dataclasses.replace(
            template, id=uuid.uuid4().hex, detail={**template.detail, "session_id": session_id}
        )
        for session_id in session_ids
    ]
