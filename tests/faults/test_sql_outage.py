"""A SQL store outage is a 503, never a 500: users and auth on a PostgreSQL cluster that the tests
stop, starve and cut off, and on SQLite files that are locked or cannot be opened.

Every failure is UNAVAILABLE with ErrorInfo reason DATABASE_UNAVAILABLE (domain pinexa.<svc>),
health goes NOT_SERVING while the database is down, one line is logged when it goes and one when
it comes back, and the running services recover by themselves (no restart) once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from pinexa.users.v1 import users_pb2
from services.auth.users_client import GrpcUsersClient
from tests.faults.conftest import Stack, StartStack
from tests.pgcluster import PgCluster
from tests.support import bearer, error_info, health_status, rpc_error, wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
REASON = "DATABASE_UNAVAILABLE"
PYTHON_TEXT = ("Traceback", "psycopg", "sqlalchemy", "sqlite3", "OperationalError", "Error:")


async def assert_db_unavailable(call: Awaitable[Any], domain: str) -> None:
    error = await rpc_error(call, grpc.StatusCode.UNAVAILABLE)
    info = error_info(error)
    assert info is not None and (info.reason, info.domain) == (REASON, domain), info
    message = error.details() or ""
    assert not any(fragment in message for fragment in PYTHON_TEXT), message


async def wait_health(stack: Stack, status: int, timeout: float = 10.0) -> None:
    async def reached() -> bool:
        return all(
            [
                await health_status(stack.users_address) == status,
                await health_status(stack.auth_address) == status,
            ]
        )

    await wait_until(reached, timeout=timeout, what=f"users and auth health {status}")


def get_user(stack: Stack, user_id: str, token: str) -> Awaitable[users_pb2.User]:
    return stack.users.GetUser(users_pb2.GetUserRequest(id=user_id), metadata=bearer(token))  # type: ignore[no-any-return]


async def test_postgresql_stopped_is_503_with_not_serving_and_recovers_without_restart(
    start_stack: StartStack, pg: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stack = await start_stack()
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    await wait_health(stack, SERVING)
    caplog.clear()

    pg.stop("immediate")
    probes: dict[str, tuple[Callable[[], Awaitable[Any]], str]] = {
        "login": (lambda: stack.login(user.username), "pinexa.auth"),
        "sign-up": (lambda: stack.sign_up(), "pinexa.users"),
        "GetUser": (lambda: get_user(stack, user.id, pair.access_token), "pinexa.users"),
        "refresh": (lambda: stack.refresh(pair.refresh_token), "pinexa.auth"),
    }
    for _ in range(3):  # several requests each, for the "one log line per outage"
        for call, domain in probes.values():
            started = time.monotonic()
            await assert_db_unavailable(call(), domain)
            assert time.monotonic() - started < 6.0, "fails within the connect timeout"
    await wait_health(stack, NOT_SERVING, timeout=5)
    await asyncio.sleep(1.0)  # a few health checks and outbox passes while it stays down

    pg.start()
    back = time.monotonic()

    async def all_succeed() -> bool:
        for call, _ in probes.values():
            await call()
        return True

    await wait_until(all_succeed, timeout=15, interval=0.1, what="every probe to succeed")
    recovered_in = time.monotonic() - back
    assert recovered_in < 5.0, recovered_in
    await wait_health(stack, SERVING, timeout=5)

    # users and auth, each one line down and one up (users' outbox reports to the same record).
    database_events = sorted(
        (r.component, r.outage)  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "dependency", None) == "database"
    )
    assert database_events == [("auth", "down"), ("auth", "up"), ("users", "down"), ("users", "up")]
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == []


async def test_a_failed_request_rechecks_health_at_once(start_stack: StartStack, pg: PgCluster) -> None:
    """Health is re-checked as soon as a request meets the outage, not at the next interval."""
    stack = await start_stack(health_check_interval_seconds=60)
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    pg.stop("immediate")
    await assert_db_unavailable(get_user(stack, user.id, pair.access_token), "pinexa.users")
    await assert_db_unavailable(stack.refresh(pair.refresh_token), "pinexa.auth")
    await wait_health(stack, NOT_SERVING, timeout=3)


async def test_statement_timeout_and_pool_exhaustion_are_503(start_stack: StartStack, pg: PgCluster) -> None:
    """A lock held by another connection: the statements wait DB_STATEMENT_TIMEOUT_MS and are
    cancelled (SQLSTATE 57014); the requests behind them find no free pooled connection within
    DB_POOL_TIMEOUT_SECONDS. Both are 503; once the lock goes, everything works."""
    stack = await start_stack(db_statement_timeout_ms=1500, db_pool_size=1, db_pool_timeout_seconds=0.3)
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    users_url = stack.settings.sql_url("users").replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(users_url) as locker:
        locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        await assert_db_unavailable(get_user(stack, user.id, pair.access_token), "pinexa.users")
        assert 1.0 < time.monotonic() - started < 5.0  # the statement timeout, not a hang
        # Two reads hold the two pooled connections (DB_POOL_SIZE=1 plus as many overflow) on the
        # lock; the other reads wait for them in users' GetUser coalescer and then run as one
        # statement that times out too. Every one of them is a 503.
        await asyncio.gather(
            *(
                assert_db_unavailable(get_user(stack, user.id, pair.access_token), "pinexa.users")
                for _ in range(6)
            )
        )
        locker.rollback()
    assert (await get_user(stack, user.id, pair.access_token)).id == user.id


async def _backend_waiting(pg: PgCluster, database: str, wait_event: str) -> int:
    """The pid of the server process of `database` that waits on `wait_event`."""
    found: list[int] = []

    async def waiting() -> bool:
        with psycopg.connect(pg.url, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event = %s",
                (database, wait_event),
            ).fetchall()
        found[:] = [row[0] for row in rows]
        return bool(found)

    await wait_until(waiting, timeout=10, what=f"a backend waiting on {wait_event}")
    return found[0]


def _terminate(pg: PgCluster, pid: int) -> None:
    with psycopg.connect(pg.url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_a_connection_dropped_mid_query_is_503_and_writes_nothing(
    start_stack: StartStack, pg: PgCluster
) -> None:
    stack = await start_stack(db_statement_timeout_ms=20_000)
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    database = stack.settings.sql_url("users").rsplit("/", 1)[1]
    users_url = pg.database_url(database)
    with psycopg.connect(users_url) as locker:
        locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        read = asyncio.ensure_future(get_user(stack, user.id, pair.access_token))
        _terminate(pg, await _backend_waiting(pg, database, "relation"))
        await assert_db_unavailable(read, "pinexa.users")

        write = asyncio.ensure_future(stack.sign_up("cut_off_mid_insert"))
        _terminate(pg, await _backend_waiting(pg, database, "relation"))
        await assert_db_unavailable(write, "pinexa.users")
        locker.rollback()
    # Nothing was half-written: the name is still free, and the service works without a restart.
    assert (await stack.sign_up("cut_off_mid_insert")).username == "cut_off_mid_insert"


async def test_a_write_whose_commit_is_cut_off_is_unavailable_never_success(
    start_stack: StartStack, pg: PgCluster
) -> None:
    """The connection drops during COMMIT (a deferred trigger keeps the commit running while the
    test terminates the backend): the outcome is unknown to the service, so the answer is
    UNAVAILABLE, not success and not a 500."""
    stack = await start_stack(db_statement_timeout_ms=20_000)
    database = stack.settings.sql_url("users").rsplit("/", 1)[1]
    with psycopg.connect(pg.database_url(database), autocommit=True) as admin:
        admin.execute(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$"
        )
        admin.execute(
            "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON users "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"
        )
    write = asyncio.ensure_future(stack.sign_up("cut_off_at_commit"))
    _terminate(pg, await _backend_waiting(pg, database, "PgSleep"))
    await assert_db_unavailable(write, "pinexa.users")
    with psycopg.connect(pg.database_url(database), autocommit=True) as admin:
        admin.execute("DROP TRIGGER slow_commit ON users")
    # The service still works; this commit never finished, so the name is free.
    assert (await stack.sign_up("cut_off_at_commit")).username == "cut_off_at_commit"


async def test_auth_answers_users_unavailable_when_users_is_down(
    start_stack: StartStack, caplog: pytest.LogCaptureFixture
) -> None:
    stack = await start_stack()
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    caplog.set_level(logging.INFO)
    await stack.users_host.stop(grace=0, drain=0)
    for _ in range(3):
        await rpc_error(stack.login(user.username), grpc.StatusCode.UNAVAILABLE, "USERS_UNAVAILABLE")
        await rpc_error(stack.refresh(pair.refresh_token), grpc.StatusCode.UNAVAILABLE, "USERS_UNAVAILABLE")
    down = [r for r in caplog.records if getattr(r, "outage", None) == "down" and r.dependency == "users"]  # type: ignore[attr-defined]
    assert len(down) == 1
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


# ---- SQLite ------------------------------------------------------------------------------------


async def test_a_locked_sqlite_file_is_503_for_writes(start_stack: StartStack, tmp_path: Path) -> None:
    """Another process holds the write lock longer than DB_STATEMENT_TIMEOUT_MS (SQLite's busy
    timeout): writes are 503 "database is locked"; reads go on (WAL); it passes with the lock."""
    path = tmp_path / "locked.db"
    stack = await start_stack(database_url=f"sqlite+aiosqlite:///{path}", db_statement_timeout_ms=300)
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        await assert_db_unavailable(stack.sign_up(), "pinexa.users")
        await assert_db_unavailable(stack.login(user.username), "pinexa.auth")
        assert (await get_user(stack, user.id, pair.access_token)).id == user.id
        locker.execute("ROLLBACK")
    finally:
        locker.close()
    assert await stack.sign_up()
    assert await stack.login(user.username)


async def test_a_sqlite_file_that_cannot_be_opened_is_503_until_it_can(
    start_stack: StartStack, tmp_path: Path
) -> None:
    """The services start although their database cannot be opened (NOT_SERVING, 503), and
    migrate and serve by themselves once it can."""
    path = tmp_path / "unreachable.db"
    path.mkdir()  # a directory where the database file should be: "unable to open database file"
    stack = await start_stack(database_url=f"sqlite+aiosqlite:///{path}")
    assert await health_status(stack.users_address) == NOT_SERVING
    assert await health_status(stack.auth_address) == NOT_SERVING
    await assert_db_unavailable(stack.sign_up(), "pinexa.users")
    await assert_db_unavailable(stack.login("nobody"), "pinexa.auth")

    path.rmdir()
    await wait_health(stack, SERVING)
    user = await stack.sign_up()
    assert (await stack.login(user.username)).access_token


async def test_services_started_while_postgresql_is_down_serve_once_it_is_back(
    start_stack: StartStack, pg: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A pod (re)started during an outage does not crash-loop: it starts NOT_SERVING, answers
    503, and migrates and serves once PostgreSQL is back, without a restart."""
    caplog.set_level(logging.INFO)
    pg.stop("immediate")
    stack = await start_stack()  # the database is empty: no migration has run yet
    assert await health_status(stack.users_address) == NOT_SERVING
    assert await health_status(stack.auth_address) == NOT_SERVING
    await assert_db_unavailable(stack.sign_up(), "pinexa.users")
    await assert_db_unavailable(stack.login("nobody"), "pinexa.auth")

    pg.start()
    await wait_health(stack, SERVING)
    user = await stack.sign_up()
    assert (await stack.login(user.username)).access_token
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


async def test_a_login_refund_during_an_outage_logs_no_traceback(
    start_stack: StartStack, pg: PgCluster, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database goes down while users checks the password: auth has counted the attempt and
    must refund it, which fails too. The answer is 503 USERS_UNAVAILABLE (users could not answer),
    and the failed refund is one line, not a traceback."""
    stack = await start_stack(db_statement_timeout_ms=20_000)
    user = await stack.sign_up()
    database = stack.settings.sql_url("users").rsplit("/", 1)[1]
    caplog.set_level(logging.INFO)
    locker = psycopg.connect(pg.database_url(database))
    # Auth first asks users which account the name reaches (ResolveLogin, which reads the same
    # table), then counts the attempt, then has the password checked. The table is locked once
    # the name is resolved, so that VerifyCredentials, not ResolveLogin, is the call that waits.
    resolve_login = GrpcUsersClient.resolve_login

    async def resolve_then_lock(client: GrpcUsersClient, login: str) -> str:
        user_id = await resolve_login(client, login)
        locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")  # nobody holds it: instant
        return user_id

    monkeypatch.setattr(GrpcUsersClient, "resolve_login", resolve_then_lock)
    try:
        login = asyncio.ensure_future(stack.login(user.username))
        await _backend_waiting(pg, database, "relation")
        pg.stop("immediate")
        await rpc_error(login, grpc.StatusCode.UNAVAILABLE, "USERS_UNAVAILABLE")
    finally:
        with contextlib.suppress(psycopg.Error):
            locker.close()
    refunds = [r for r in caplog.records if r.name == "services.auth.domain" and "refund" in r.getMessage()]
    assert len(refunds) == 1 and not refunds[0].exc_info, refunds
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
