"""The SQL executor users and auth share: SQLAlchemy Core statements, compiled once per dialect,
run through the driver's own async pool.

SQLAlchemy stays for what it is good at (the tables in each service's schema.py, building
statements, Alembic); what it costs per request stays out (the greenlet bridge, the engine's
connection and result wrappers, a pre-ping round trip per checkout, AUTOCOMMIT set and reset).
The stores keep SQLAlchemy's shape:

    async with db.begin() as c:            # one transaction (COMMIT at the end, ROLLBACK on error)
        row = (await c.execute(statement, {"id": user_id})).first()
    async with db.connect() as c:          # statements in autocommit (reads)
        value = await c.scalar(statement)

and a row reads as before (`row.id`, `row[0]`). Errors are SQLAlchemy's DBAPIError subclasses
(`IntegrityError` with `.orig`), so `except IntegrityError` and `sql.is_outage` keep working.

- **Compiled once.** A statement's SQL, bind order, bind and result processors are compiled
  once per dialect and cached: by the statement object itself (module-level constants with
  `bindparam`s, the hot path: no cache key to compute) and by SQLAlchemy's cache key (statements
  built per call: same shape, other literal values, one compilation).
- **PostgreSQL**: psycopg 3 connections in `psycopg_pool.AsyncConnectionPool`, in autocommit
  (a read is one round trip; `begin()` sends BEGIN and COMMIT). No pre-ping: a connection the
  server closed while it sat in the pool (a restart, a terminated backend) is noticed at
  checkout without a round trip (its socket is readable: the server's goodbye or EOF) and
  replaced; a connection that breaks under a statement fails that request (503) and has the pool
  check the rest. While connections are failing, a request that finds no pooled connection
  connects on its own instead of queueing: it fails at once while the server is down (503), and
  it is what notices the server back, so recovery does not wait for the pool's reconnect
  back-off.
- **SQLite** (aiosqlite, WAL): one writer connection, taken by `begin()` one transaction at a
  time (BEGIN IMMEDIATE, so the write lock is taken first; another process holding it is waited
  for up to the busy timeout), and `pool_size` reader connections for `connect()`. Each
  statement is one hop to the connection's thread (execute, fetch and row count together).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import select
import sqlite3
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import aiosqlite
import psycopg
import psycopg_pool
from psycopg import pq
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

log = logging.getLogger(__name__)

Params = Mapping[str, Any] | None


class PoolTimeout(sa_exc.TimeoutError):
    """No pooled connection (SQLite: the writer) within the pool timeout: an outage (503)."""


# ---- results ------------------------------------------------------------------------------------


class Result:
    """What `execute` returns: the rows, already fetched, and the row count of a DML statement."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def all(self) -> list[Any]:
        return self._rows

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise (
                sa_exc.NoResultFound("expected one row")
                if not self._rows
                else sa_exc.MultipleResultsFound("expected one row")
            )
        return self._rows[0]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def mappings(self) -> Result:
        """The same rows as dicts (column name to value)."""
        return Result([row._asdict() for row in self._rows], self.rowcount)


# ---- compiling ----------------------------------------------------------------------------------


class _Plan:
    """One statement compiled for one dialect, with what running it needs."""

    __slots__ = ("_rows", "compiled", "escaped", "expanding", "positiontup", "processors", "sql")

    def __init__(self, compiled: SQLCompiler) -> None:
        self.compiled = compiled
        self.sql = compiled.string
        self.positiontup = (
            tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
        )
        self.processors: dict[str, Any] = dict(compiled._bind_processors)
        self.expanding = bool(compiled.literal_execute_params or compiled.post_compile_params)
        self.escaped = dict(compiled.escaped_bind_names) if compiled.escaped_bind_names else None
        self._rows: tuple[type, tuple[Any, ...] | None] | None = None

    def arguments(self, params: Params, extracted: Sequence[Any] | None) -> tuple[str, Any]:
        """The SQL string and the driver's parameters (a tuple or a dict) for one execution."""
        compiled = self.compiled
        values: Any = compiled.construct_params(params, extracted_parameters=extracted, escape_names=False)
        sql, positiontup, processors = self.sql, self.positiontup, self.processors
        if self.expanding:
            expanded = compiled._process_parameters_for_postcompile(values)
            sql = expanded.statement
            positiontup = tuple(expanded.positiontup) if expanded.positiontup is not None else None
            processors = {**processors, **expanded.processors}
            values = expanded.parameters
        if positiontup is not None:
            return sql, tuple(
                processors[key](values[key]) if key in processors else values[key] for key in positiontup
            )
        for key, process in processors.items():
            if key in values:
                values[key] = process(values[key])
        if self.escaped:
            values = {self.escaped.get(key, key): value for key, value in values.items()}
        return sql, values

    def rows(self, raw: list[Any], description: Any, dialect: Dialect) -> list[Any]:
        """The driver's tuples as rows with attribute access, through the result processors."""
        if self._rows is None:
            self._rows = self._row_type(description, dialect)
        row_type, processors = self._rows
        make = row_type._make  # type: ignore[attr-defined]
        if processors is None:
            return [make(r) for r in raw]
        return [make([v if p is None else p(v) for p, v in zip(processors, r, strict=False)]) for r in raw]

    def _row_type(self, description: Any, dialect: Dialect) -> tuple[type, tuple[Any, ...] | None]:
        columns = self.compiled._result_columns
        type_codes = [
            getattr(d, "type_code", None) if not isinstance(d, tuple) else d[1] for d in description
        ]
        if columns and len(columns) == len(description):
            names = [c[0] for c in columns]
            found = [
                c[3]._cached_result_processor(dialect, code)
                for c, code in zip(columns, type_codes, strict=True)
            ]
            processors = tuple(found) if any(p is not None for p in found) else None
        else:  # textual SQL: the driver's names, no processing
            names = [d[0] if isinstance(d, tuple) else d.name for d in description]
            processors = None
        base = collections.namedtuple("Row", names, rename=True)  # type: ignore[misc]
        row_type = type("Row", (base,), {"__slots__": (), "_mapping": property(base._asdict)})
        return row_type, processors


class _Compiler:
    """Compiled plans of one dialect, cached by statement object and by cache key."""

    _MAX_KEYS = 1000

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._by_object: weakref.WeakKeyDictionary[Any, tuple[tuple[str, ...], _Plan, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._by_key: dict[Any, _Plan] = {}

    def plan(self, statement: Any, params: Params) -> tuple[_Plan, Any]:
        """(plan, extracted parameters) for `statement` executed with `params`' keys."""
        keys = tuple(params) if params else ()
        try:
            cached = self._by_object.get(statement)
        except TypeError:  # not weak-referenceable
            cached = None
        if cached is not None and cached[0] == keys:
            return cached[1], cached[2]
        if isinstance(statement, str):
            raise TypeError("pass SQLAlchemy statements (sqlalchemy.text for textual SQL), not strings")
        cache_key = statement._generate_cache_key()
        extracted = None
        if cache_key is None:  # not cacheable: compile each time
            return self._compile(statement, keys, None), None
        extracted = cache_key[1]
        full_key = (cache_key.key, keys)
        plan = self._by_key.get(full_key)
        if plan is None:
            plan = self._compile(statement, keys, cache_key)
            if len(self._by_key) >= self._MAX_KEYS:
                self._by_key.clear()
            self._by_key[full_key] = plan
        with contextlib.suppress(TypeError):
            self._by_object[statement] = (keys, plan, extracted)
        return plan, extracted

    def _compile(self, statement: ClauseElement, keys: tuple[str, ...], cache_key: Any) -> _Plan:
        compiled = statement.compile(dialect=self.dialect, column_keys=list(keys), cache_key=cache_key)
        assert isinstance(compiled, SQLCompiler)
        return _Plan(compiled)


# ---- errors -------------------------------------------------------------------------------------


def _wrap(
    error: Exception, sql: str | None, base: type[Exception], *, invalidated: bool = False
) -> Exception:
    """A driver error as SQLAlchemy's DBAPIError subclass (IntegrityError, OperationalError, ...),
    with the driver's error as `.orig`; never with the parameters in its text."""
    if isinstance(error, base):
        return sa_exc.DBAPIError.instance(
            sql, None, error, base, hide_parameters=True, connection_invalidated=invalidated
        )
    return error


# ---- connections --------------------------------------------------------------------------------


class Connection:
    """One checked-out connection: `execute` and `scalar`, as on SQLAlchemy's connection."""

    __slots__ = ("_db", "_raw")

    def __init__(self, db: Database, raw: Any) -> None:
        self._db = db
        self._raw = raw

    async def execute(self, statement: Any, params: Params | Sequence[Mapping[str, Any]] = None) -> Result:
        """Run one statement; a list of parameter sets runs it once per set (executemany)."""
        if isinstance(params, list | tuple):
            rowcount = 0
            for one in params:
                rowcount += (await self._db._backend.execute(self._raw, statement, one)).rowcount
            return Result([], rowcount)
        return await self._db._backend.execute(self._raw, statement, params)  # type: ignore[arg-type]

    async def scalar(self, statement: Any, params: Params = None) -> Any:
        return (await self.execute(statement, params)).scalar()

    @property
    def driver_connection(self) -> Any:
        """The driver's connection (psycopg's AsyncConnection, aiosqlite's Connection); for tests."""
        return self._raw


class _Postgres:
    """psycopg connections in psycopg_pool's AsyncConnectionPool."""

    name = "postgresql"

    def __init__(self, url: URL, *, pool_size: int, statement_timeout_ms: int, pool_timeout: float) -> None:
        from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

        self.compiler = _Compiler(PGDialect_psycopg())  # type: ignore[no-untyped-call]
        # The pool logs a warning per connection that fails during an outage; the service logs
        # one line when the database goes and one when it is back (kit/outage.py).
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
        self._conninfo = psycopg.conninfo.make_conninfo(
            "",
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
            **{str(k): str(v) for k, v in url.query.items()},
        )
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": 5,
            "options": f"-c statement_timeout={int(statement_timeout_ms)}",
        }
        self._pool_timeout = pool_timeout
        self._pool = psycopg_pool.AsyncConnectionPool(
            self._conninfo,
            kwargs=self._kwargs,
            min_size=pool_size,
            max_size=pool_size * 2,  # as the engine's pool_size plus as many overflow
            timeout=pool_timeout,
            # Give up reconnecting soon: while the server is down, requests connect on their own
            # (see _checkout), and a pool that gave up grows again at the next request.
            reconnect_timeout=1.0,
            open=False,
            name="pinexa",
        )
        self._opened = False
        # True from start and after a connection failed: a request that finds no pooled
        # connection then connects itself (fails fast while down, notices the server back).
        self._suspect = True
        self._direct = asyncio.Semaphore(pool_size * 2)
        self._direct_open = 0  # connections made outside the pool (see _checkout), now in use
        self._checking: asyncio.Task[None] | None = None

    async def _checkout(self) -> tuple[psycopg.AsyncConnection[Any], bool]:
        """(connection, pooled)."""
        if not self._opened:
            self._opened = True
            await self._pool.open(wait=False)
        if not self._suspect:
            while True:
                conn = await self._pool.getconn()
                if _alive(conn):
                    return conn, True
                await self._discard(conn)
        try:
            conn = await self._pool.getconn(timeout=0.02)
        except psycopg_pool.PoolTimeout:
            pass
        else:
            if _alive(conn):
                return conn, True
            await self._discard(conn)
        async with self._direct:
            conn = await psycopg.AsyncConnection.connect(self._conninfo, **self._kwargs)
        self._direct_open += 1
        self._suspect = False
        self._check_pool()  # the pool may hold dead connections, or may have given up growing
        return conn, False

    async def _discard(self, conn: psycopg.AsyncConnection[Any]) -> None:
        with contextlib.suppress(Exception):
            await conn.close()
        await self._pool.putconn(conn)  # a closed connection: the pool replaces it
        self._check_pool()

    def _check_pool(self) -> None:
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._pool.check(), name="pinexa-sql-pool-check")

    async def _checkin(self, conn: psycopg.AsyncConnection[Any], pooled: bool) -> None:
        if conn.broken or conn.closed:
            self._suspect = True
            self._check_pool()
        if pooled:
            await self._pool.putconn(conn)
        else:
            self._direct_open -= 1
            await conn.close()

    def pool_stats(self) -> tuple[int, int]:
        """(connections in use, connections open), the pool's and the direct ones."""
        stats = self._pool.get_stats()
        size = stats.get("pool_size", 0)
        in_use = size - stats.get("pool_available", 0)
        return in_use + self._direct_open, size + self._direct_open

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        try:
            conn, pooled = await self._checkout()
        except (psycopg.Error, psycopg_pool.PoolTimeout) as error:
            self._suspect = self._suspect or not isinstance(error, psycopg_pool.PoolTimeout)
            raise _wrap(error, None, psycopg.Error) from error
        try:
            yield conn
        finally:
            await self._checkin(conn, pooled)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[Any]:
        async with self.connect() as conn:
            await self._run(conn, "BEGIN")
            try:
                yield conn
            except BaseException:
                if not conn.broken:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.execute("ROLLBACK"))
                raise
            await self._run(conn, "COMMIT")

    async def _run(self, conn: psycopg.AsyncConnection[Any], sql: str) -> None:
        try:
            await conn.execute(sql)
        except psycopg.Error as error:
            raise _wrap(error, sql, psycopg.Error, invalidated=conn.broken) from error

    async def execute(self, conn: psycopg.AsyncConnection[Any], statement: Any, params: Params) -> Result:
        plan, extracted = self.compiler.plan(statement, params)
        sql, args = plan.arguments(params, extracted)
        try:
            cursor = await conn.execute(sql, args)
            description = cursor.description
            rows = (
                plan.rows(await cursor.fetchall(), description, self.compiler.dialect) if description else []
            )
        except psycopg.Error as error:
            raise _wrap(error, sql, psycopg.Error, invalidated=conn.broken) from error
        return Result(rows, cursor.rowcount)

    async def close(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
            with contextlib.suppress(BaseException):
                await self._checking
        if self._opened:
            await self._pool.close()


def _alive(conn: psycopg.AsyncConnection[Any]) -> bool:
    """False for a pooled connection the server has closed, found without a round trip: an idle
    connection's socket is readable only when the server sent something (its goodbye, EOF)."""
    if conn.closed or conn.broken:
        return False
    pgconn = conn.pgconn
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
        if readable:
            pgconn.consume_input()
    except (OSError, psycopg.Error):
        return False
    return pgconn.status == pq.ConnStatus.OK


class _Sqlite:
    """aiosqlite: one writer connection for transactions, `pool_size` readers."""

    name = "sqlite"

    def __init__(self, url: URL, *, pool_size: int, statement_timeout_ms: int, pool_timeout: float) -> None:
        from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite

        self.compiler = _Compiler(SQLiteDialect_aiosqlite())
        database = url.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        self._database = database or ":memory:"
        self._busy_timeout_ms = int(statement_timeout_ms)
        self._pool_timeout = pool_timeout
        self._pool_size = pool_size
        self._writer: aiosqlite.Connection | None = None
        self._writer_lock = asyncio.Lock()
        self._idle: collections.deque[aiosqlite.Connection] = collections.deque()
        self._readers = asyncio.Semaphore(pool_size)
        self._all: list[aiosqlite.Connection] = []

    def pool_stats(self) -> tuple[int, int]:
        """(connections in use, connections open): the readers checked out and the writer in a
        transaction."""
        writer = 1 if self._writer is not None else 0
        in_use = len(self._all) - writer - len(self._idle)
        if writer and self._writer_lock.locked():
            in_use += 1
        return in_use, len(self._all)

    async def _open(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self._database, isolation_level=None)
        try:
            await _call(conn, _configure, conn._conn, self._busy_timeout_ms)
        except BaseException:
            await conn.close()
            raise
        self._all.append(conn)
        return conn

    async def _acquire(self, lock: asyncio.Lock | asyncio.Semaphore) -> None:
        if lock.locked():
            try:
                async with asyncio.timeout(self._pool_timeout):
                    await lock.acquire()
            except TimeoutError:
                raise PoolTimeout(f"no SQLite connection free within {self._pool_timeout} s") from None
        else:
            await lock.acquire()

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        await self._acquire(self._readers)
        conn = None
        try:
            try:
                conn = self._idle.pop() if self._idle else await self._open()
            except sqlite3.Error as error:
                raise _wrap(error, None, sqlite3.Error) from error
            yield conn
        finally:
            if conn is not None:
                if conn.in_transaction:  # a write through connect(): leave nothing open
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.rollback())
                self._idle.append(conn)
            self._readers.release()

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[Any]:
        await self._acquire(self._writer_lock)
        try:
            try:
                if self._writer is None:
                    self._writer = await self._open()
                conn = self._writer
                await _call(conn, conn._conn.execute, "BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise _wrap(error, "BEGIN IMMEDIATE", sqlite3.Error) from error
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(_call(conn, _rollback, conn._conn))
                raise
            try:
                await _call(conn, conn._conn.execute, "COMMIT")
            except sqlite3.Error as error:
                with contextlib.suppress(Exception):
                    await asyncio.shield(_call(conn, _rollback, conn._conn))
                raise _wrap(error, "COMMIT", sqlite3.Error) from error
        finally:
            self._writer_lock.release()

    async def execute(self, conn: aiosqlite.Connection, statement: Any, params: Params) -> Result:
        plan, extracted = self.compiler.plan(statement, params)
        sql, args = plan.arguments(params, extracted)
        try:
            raw, description, rowcount = await _call(conn, _run_sqlite, conn._conn, sql, args)
        except sqlite3.Error as error:
            raise _wrap(error, sql, sqlite3.Error) from error
        rows = plan.rows(raw, description, self.compiler.dialect) if description else []
        return Result(rows, rowcount)

    async def close(self) -> None:
        conns, self._all = self._all, []
        self._idle.clear()
        self._writer = None
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()


async def _call(conn: aiosqlite.Connection, fn: Any, *args: Any) -> Any:
    """Run `fn(*args)` in the connection's thread: one hop (aiosqlite's own primitive)."""
    return await conn._execute(fn, *args)  # type: ignore[no-untyped-call]


def _configure(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    # SQLite's statement timeout is how long it waits for another writer's lock.
    conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    conn.execute("PRAGMA synchronous=NORMAL")


def _run_sqlite(conn: sqlite3.Connection, sql: str, args: Any) -> tuple[list[Any], Any, int]:
    """In the connection's thread: execute, fetch and count in one hop. Through a cursor, not
    the connection's `execute` shortcut: the sqlite3 instrumentation traces cursors only."""
    cursor = conn.cursor()
    try:
        cursor.execute(sql, args)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return rows, description, cursor.rowcount
    finally:
        cursor.close()


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class _DialectInfo(NamedTuple):
    name: str


class Database:
    """The pool and compiled statements of one database; create one per process and share it."""

    def __init__(
        self,
        url: str | URL,
        *,
        pool_size: int = 10,
        statement_timeout_ms: int = 5000,
        pool_timeout: float = 5.0,
    ) -> None:
        parsed = make_url(str(url) if isinstance(url, URL) else url)
        backend = parsed.get_backend_name()
        self._backend: _Postgres | _Sqlite
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {backend!r}: use postgresql:// or sqlite://")
        self._backend = (_Sqlite if backend == "sqlite" else _Postgres)(
            parsed, pool_size=pool_size, statement_timeout_ms=statement_timeout_ms, pool_timeout=pool_timeout
        )
        self.dialect = _DialectInfo(self._backend.name)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        """A connection whose statements run in autocommit: for reads."""
        async with self._backend.connect() as raw:
            yield Connection(self, raw)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[Connection]:
        """A transaction: committed when the block ends, rolled back when it raises."""
        async with self._backend.begin() as raw:
            yield Connection(self, raw)

    def pool_stats(self) -> tuple[int, int]:
        """(connections in use, connections open), for the pinexa_sql_pool_* metrics."""
        return self._backend.pool_stats()

    async def dispose(self) -> None:
        """Close every connection (the service's stop)."""
        await self._backend.close()
