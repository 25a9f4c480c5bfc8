"""SQL access shared by users and auth: one pooled async engine per process, and Alembic.

PostgreSQL goes through psycopg 3 (`postgresql://...` is accepted and mapped to the psycopg
dialect); the embedded default is a SQLite file through aiosqlite. Migrations run with the
synchronous form of the same URL, in a worker thread, because Alembic's API is synchronous.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """A pooled engine; create one per process at start-up and share it."""
    target = async_url(url)
    if is_sqlite(target):
        database = target.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(target, pool_size=pool_size, max_overflow=0)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        target,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )


def read_engine(engine: AsyncEngine) -> AsyncEngine:
    """The same pool, for reads of one statement. On PostgreSQL its connections run in
    autocommit, which saves the BEGIN and the ROLLBACK a transaction would wrap around each read
    (two of a primary-key read's four round trips, with the pre-ping). A SQLite read starts no
    transaction anyway, and switching its isolation level would cost more than it saves."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


async def ping(engine: AsyncEngine) -> None:
    """Raises when the database is unreachable; used by the health check."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


def alembic_config(*, url: str, script_location: Path, version_table: str) -> Config:
    """Alembic settings for one service. Each service keeps its own version table, so users
    and auth can share one database in small deployments without clashing."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["sqlalchemy_url"] = sync_url(url)
    config.attributes["version_table"] = version_table
    return config


def upgrade_sync(*, url: str, script_location: Path, version_table: str) -> None:
    if is_sqlite(url):
        database = make_url(url).database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
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
