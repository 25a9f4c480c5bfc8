"""Fixtures shared by every suite.

PostgreSQL: the suites that take `sql_url` run once on SQLite and once on PostgreSQL. The
PostgreSQL run creates a throwaway database from TEST_DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/postgres) and drops it at the end. A missing PostgreSQL
is a failure, never a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from services.kit import sql
from services.kit.db import Database
from tests.support import TestKeys

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

# Suites whose files share something on disk and must run on one pytest-xdist worker, one file
# after the other: the console's tests all build console/dist (devstack/console.py).
SHARED_SCOPES = ("tests/console/",)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test` runs on pytest-xdist workers (Makefile TEST_WORKERS). Each file goes to one
    worker whole, so its module-scoped servers start once; the files of a SHARED_SCOPES folder go
    to the same worker. xdist's scheduler is used as it is and only told what a scope is."""
    from xdist.scheduler import LoadFileScheduling

    class FileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            shared = next((scope for scope in SHARED_SCOPES if nodeid.startswith(scope)), None)
            return shared or super()._split_scope(nodeid)

    return FileScheduling(config, log)


@pytest.fixture(scope="session")
def test_keys() -> TestKeys:
    return TestKeys()


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    try:
        with psycopg.connect(url, connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required for the tests and is not reachable at {url}: {exc}")
    return url


@pytest.fixture(scope="session")
def postgres_database_factory(postgres_server_url: str) -> Iterator[object]:
    """Creates throwaway databases on the test server; drops them all at the end of the run."""
    created: list[str] = []
    admin_url = make_url(postgres_server_url)
    conninfo = admin_url.set(drivername="postgresql").render_as_string(hide_password=False)

    def create(prefix: str = "pinexa_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return admin_url.set(database=name).render_as_string(hide_password=False)

    yield create

    # Each DROP DATABASE waits for a checkpoint (~0.3 s); dropped concurrently, they share
    # checkpoints, so dozens go in about a second instead of one each.
    def drop(name: str) -> None:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(drop, created))


def database_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL of `kind`: a SQLite file, or ("postgres") a throwaway
    PostgreSQL database. For fixtures parametrized over more than the two (the store
    conformance suites add an in-memory store)."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    factory = request.getfixturevalue("postgres_database_factory")
    return factory()  # type: ignore[operator, no-any-return]


@asynccontextmanager
async def migrated_engine(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, *, migrations: Path, version_table: str
) -> AsyncIterator[Database]:
    """An engine on a fresh database of `kind` (see `database_url`), migrated with a service's
    migrations; disposed of on the way out."""
    url = database_url(kind, request, tmp_path)
    await sql.upgrade(url=url, script_location=migrations, version_table=version_table)
    engine = sql.create_engine(url, pool_size=10)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: a SQLite file, then a throwaway PostgreSQL database."""
    return database_url(request.param, request, tmp_path)
