"""SQL access shared by users and auth: one pooled executor per process (db.py), and Alembic.

PostgreSQL goes through psycopg 3 (`postgresql://...` is accepted and mapped to the psycopg
dialect); the embedded default is a SQLite file through aiosqlite. Migrations run with the
synchronous form of the same URL, in a worker thread, because Alembic's API is synchronous.

Outages: `is_outage` tells a database that is down, cut off or overloaded from a bug, and
`translate_error` (the services' `ServiceSpec.translate_error`) turns the former into
`DependencyUnavailable` (UNAVAILABLE, REST 503, reason DATABASE_UNAVAILABLE). Every statement is
bounded by DB_STATEMENT_TIMEOUT_MS and every wait for a pooled connection by
DB_POOL_TIMEOUT_SECONDS, so an overloaded or locked database also ends in a 503, not a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from services.kit.db import Database
from services.kit.errors import DependencyUnavailable, PinexaError
from services.kit.settings import SqlSettings

log = logging.getLogger(__name__)


def async_url(url: str) -> URL:
    """Map the URLs users write to the async drivers we ship."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+asyncpg"):
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return parsed.set(drivername="sqlite+aiosqlite")
    return parsed


def sync_url(url: str) -> URL:
    """The same database through a synchronous driver, for Alembic."""
    parsed = async_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        return parsed.set(drivername="sqlite+pysqlite")
    return parsed  # psycopg 3 serves both sync and async under one dialect name


def is_sqlite(url: str | URL) -> bool:
    return make_url(str(url) if isinstance(url, URL) else url).get_backend_name() == "sqlite"


def create_engine(
    url: str, *, pool_size: int = 10, statement_timeout_ms: int = 5000, pool_timeout: float = 5.0
) -> Database:
    """The pooled executor of one database (services/kit/db.py); create one per process at
    start-up and share it. Statements are cancelled after `statement_timeout_ms` (SQLite: waits
    for a lock that long) and a request waits at most `pool_timeout` seconds for a pooled
    connection."""
    return Database(
        async_url(url),
        pool_size=pool_size,
        statement_timeout_ms=statement_timeout_ms,
        pool_timeout=pool_timeout,
    )


def engine_from_settings(settings: SqlSettings, name: str, *, pool_size: int | None = None) -> Database:
    """The executor of service `name` (users, auth) with the pool and timeouts of its SqlSettings."""
    return create_engine(
        settings.sql_url(name),
        pool_size=settings.db_pool_size if pool_size is None else pool_size,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        pool_timeout=settings.db_pool_timeout_seconds,
    )


# SQLSTATEs that mean "the database cannot serve now", not "this statement is wrong":
# class 08 (connection exceptions) by prefix, and these.
_OUTAGE_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown: terminating connection due to administrator command
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: the database system is starting up / shutting down
        "53300",  # too_many_connections
        "57014",  # query_canceled: statement_timeout
        "55P03",  # lock_not_available (lock_timeout)
    }
)
# sqlite3.OperationalError messages of an unusable file (not of a wrong statement).
_SQLITE_OUTAGE_MESSAGES = (
    "database is locked",
    "database table is locked",
    "unable to open database file",
    "disk i/o error",
    "database or disk is full",
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, the DBAPI error SQLAlchemy wraps, and what it was raised from."""
    seen: set[int] = set()
    todo: deque[BaseException | None] = deque([exc])
    while todo:
        current = todo.popleft()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        todo.extend(
            [orig if isinstance(orig, BaseException) else None, current.__cause__, current.__context__]
        )


def is_outage(exc: BaseException) -> bool:
    """True when `exc` means the SQL database is unreachable, cut off, shutting down or
    overloaded (connection refused or dropped, SQLSTATE class 08, 57P01-57P03, 53300, a
    statement timeout, no pooled connection in time, SQLite busy or unopenable) rather than a
    bug or bad data (constraint violations, syntax errors, missing tables)."""
    for cause in _causes(exc):
        if isinstance(cause, sa_exc.TimeoutError):  # no pooled connection within pool_timeout
            return True
        if isinstance(cause, sa_exc.DBAPIError) and cause.connection_invalidated:
            return True
        if isinstance(cause, psycopg.Error):
            state = cause.sqlstate
            if state is None:  # raised by the client: connection refused, closed, lost
                return isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError)
            return state.startswith("08") or state in _OUTAGE_SQLSTATES
        if isinstance(cause, sqlite3.OperationalError):
            message = str(cause).lower()
            return any(fragment in message for fragment in _SQLITE_OUTAGE_MESSAGES)
    return False


def translate_error(exc: Exception) -> PinexaError | None:
    """The client-facing error for a database outage, or None for any other exception."""
    if is_outage(exc):
        return DependencyUnavailable(
            "the database is unavailable; try again shortly", reason="DATABASE_UNAVAILABLE"
        )
    return None


def read_engine(engine: Database) -> Database:
    """The executor for reads of one statement: the same one, whose `connect()` runs statements
    in autocommit (on PostgreSQL no BEGIN and ROLLBACK around a read). Kept so stores can name
    their reads apart from their writes."""
    return engine


_PING = text("SELECT 1")


async def ping(engine: Database) -> None:
    """Raises when the database is unreachable; used by the health check."""
    async with engine.connect() as connection:
        await connection.execute(_PING)


def alembic_config(*, url: str, script_location: Path, version_table: str) -> Config:
    """Alembic settings for one service. Each service keeps its own version table, so users
    and auth can share one database in small deployments without clashing."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["sqlalchemy_url"] = sync_url(url)
    config.attributes["version_table"] = version_table
    return config


# Alembic keeps the running migration in module globals (alembic.context), so two migrations in
# one process (users and auth in a test, both catching up after an outage) must take turns.
_ALEMBIC_LOCK = threading.Lock()


def upgrade_sync(*, url: str, script_location: Path, version_table: str) -> None:
    if is_sqlite(url):
        database = make_url(url).database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    with _ALEMBIC_LOCK:
        command.upgrade(
            alembic_config(url=url, script_location=script_location, version_table=version_table), "head"
        )


async def upgrade(*, url: str, script_location: Path, version_table: str) -> None:
    """Apply every pending migration (idempotent); safe to call at every start."""
    await asyncio.to_thread(
        upgrade_sync, url=url, script_location=script_location, version_table=version_table
    )


def run_alembic_env(target_metadata: Any) -> None:
    """The body of every service's migrations/env.py: online migrations with the URL and
    version table that `alembic_config` put on the config."""
    from alembic import context
    from sqlalchemy import create_engine as create_sync_engine
    from sqlalchemy import pool

    config = context.config
    url = config.attributes["sqlalchemy_url"]
    engine = create_sync_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                version_table=config.attributes["version_table"],
                render_as_batch=is_sqlite(url),
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    # Two instances migrating at once (e.g. Kubernetes initContainers of two
                    # replicas) run one after the other; the second then finds nothing to do.
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                        {"name": f"pinexa-migrations:{config.attributes['version_table']}"},
                    )
                context.run_migrations()
    finally:
        engine.dispose()


class StartupWork:
    """A service's start-up database work (migrations, bootstrap) that survives the database
    being down at start-up, so a pod (re)started during an outage serves once it is back
    instead of crash-looping.

    `run_or_defer()` at start-up runs the work; if the database is down it returns instead of
    raising (other errors still raise: a broken migration must stop the start). `ensure()`, in
    the readiness check, then retries the work in the background and raises until it is done;
    meanwhile `translate_error` makes every request a 503 (the tables may not exist yet).
    """

    def __init__(self, work: Callable[[], Coroutine[Any, Any, None]], *, service: str) -> None:
        self._work = work
        self._service = service
        self._task: asyncio.Task[None] | None = None
        self.done = False

    async def run_or_defer(self) -> None:
        try:
            await self._work()
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning(
                "%s: the database is unavailable at start-up; starting NOT_SERVING, "
                "migrations run when it is back",
                self._service,
            )
            return
        self.done = True

    async def ensure(self) -> None:
        if self.done:
            return
        if self._task is None:
            self._task = asyncio.create_task(self._work(), name=f"{self._service}-startup-work")
        if not self._task.done():
            raise DependencyUnavailable("start-up migrations are running", reason="DATABASE_UNAVAILABLE")
        task, self._task = self._task, None
        error = task.exception()
        if error is not None:
            raise error  # the health monitor logs it once; the next check tries again
        self.done = True
        log.info("%s: start-up migrations done", self._service)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def translate_error(self, exc: Exception) -> PinexaError | None:
        """`translate_error` for the service: an outage, or anything before the work is done."""
        translated = translate_error(exc)
        if translated is None and not self.done:
            return DependencyUnavailable(
                "the database is not ready yet; try again shortly", reason="DATABASE_UNAVAILABLE"
            )
        return translated
