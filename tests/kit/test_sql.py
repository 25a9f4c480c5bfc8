"""The kit's SQL helpers, on SQLite and on PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from services.kit import sql
from services.kit.errors import DependencyUnavailable
from tests.support import free_port


async def _transaction_status(connection: Any) -> str:
    return str(connection.driver_connection.info.transaction_status.name)


async def test_reads_open_no_transaction_and_begin_does(sql_url: str) -> None:
    engine = sql.create_engine(sql_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar() == 1
            if not sql.is_sqlite(sql_url):  # no BEGIN went out before the read, no ROLLBACK follows
                assert await _transaction_status(connection) == "IDLE"
            else:
                assert not connection.driver_connection.in_transaction
        async with engine.begin() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar() == 1
            if not sql.is_sqlite(sql_url):
                assert await _transaction_status(connection) == "INTRANS"
            else:
                assert connection.driver_connection.in_transaction
    finally:
        await engine.dispose()


# ---- telling an outage from a bug ---------------------------------------------------------------


async def test_a_database_that_refuses_our_login_is_an_outage(postgres_server_url: str) -> None:
    # A role or database that does not exist (a misconfigured DATABASE_URL, or one dropped at
    # run time) leaves the service unable to reach its store: 503 and NOT_SERVING, not a 500.
    server = psycopg.conninfo.conninfo_to_dict(postgres_server_url)
    base = f"postgresql://{{user}}@{server['host']}:{server.get('port', 5432)}/{{db}}"
    for url in (
        base.format(user="pinexa_no_such_role", db="postgres"),
        base.format(user=server["user"], db="pinexa_no_such_db"),
    ):
        engine = sql.create_engine(url, pool_size=1)
        try:
            with pytest.raises(Exception) as refused:
                await sql.ping(engine)
        finally:
            await engine.dispose()
        assert sql.is_outage(refused.value), url


def _wrapped(orig: Exception) -> sa_exc.DBAPIError:
    """How SQLAlchemy hands a driver error to its caller."""
    return sa_exc.DBAPIError.instance("SELECT 1", {}, orig, psycopg.Error)


async def test_real_connection_failures_are_outages(tmp_path: Path) -> None:
    # PostgreSQL: nothing listens on the port.
    engine = sql.create_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", pool_size=1)
    try:
        with pytest.raises(Exception) as refused:
            await sql.ping(engine)
    finally:
        await engine.dispose()
    assert sql.is_outage(refused.value)
    # SQLite: the database file cannot be opened (a directory stands where it should be).
    (tmp_path / "dir.db").mkdir()
    engine = sql.create_engine(f"sqlite:///{tmp_path / 'dir.db'}", pool_size=1)
    try:
        with pytest.raises(Exception) as unopenable:
            await sql.ping(engine)
    finally:
        await engine.dispose()
    assert "unable to open" in str(unopenable.value)
    assert sql.is_outage(unopenable.value)
    translated = sql.translate_error(unopenable.value)  # type: ignore[arg-type]
    assert isinstance(translated, DependencyUnavailable) and translated.reason == "DATABASE_UNAVAILABLE"


async def test_an_exhausted_pool_is_an_outage(tmp_path: Path) -> None:
    engine = sql.create_engine(f"sqlite:///{tmp_path / 'pool.db'}", pool_size=1, pool_timeout=0.1)
    try:
        async with engine.connect():
            with pytest.raises(sa_exc.TimeoutError) as caught:  # the kit's PoolTimeout is one
                async with engine.connect():
                    pass
    finally:
        await engine.dispose()
    assert sql.is_outage(caught.value)


@pytest.mark.parametrize(
    "orig",
    [
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CrashShutdown("terminating connection because of crash of another server process"),
        psycopg.errors.CannotConnectNow("the database system is shutting down"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.errors.TooManyConnections("sorry, too many clients already"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        psycopg.errors.ConnectionFailure("connection failure"),
        psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"),
        psycopg.InterfaceError("the connection is closed"),
        sqlite3.OperationalError("database is locked"),
        sqlite3.OperationalError("unable to open database file"),
    ],
    ids=lambda e: f"{type(e).__name__}:{e}",
)
def test_outage_errors(orig: Exception) -> None:
    assert sql.is_outage(_wrapped(orig))
    assert sql.is_outage(orig)


@pytest.mark.parametrize(
    "error",
    [
        _wrapped(psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")),
        _wrapped(psycopg.errors.UndefinedTable('relation "users" does not exist')),
        _wrapped(psycopg.errors.SyntaxError("syntax error at or near")),
        _wrapped(sqlite3.OperationalError("no such table: users")),
        _wrapped(sqlite3.IntegrityError("UNIQUE constraint failed: users.username")),
        ValueError("a bug"),
        KeyError("also a bug"),
    ],
    ids=repr,
)
def test_bugs_and_bad_data_are_not_outages(error: Exception) -> None:
    assert not sql.is_outage(error)
    assert sql.translate_error(error) is None
