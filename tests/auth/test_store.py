"""What only auth's SQL store has, on SQLite and PostgreSQL: its migrations, and a throttled
login attempt that takes no write lock. The Protocol contract every store keeps is in
test_store_conformance.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from services.auth.domain import AuthPolicy
from services.auth.model import ThrottleKey
from services.auth.schema import login_throttle
from services.auth.server import MIGRATIONS, VERSION_TABLE
from services.auth.store import SqlAuthStore
from services.kit import sql

POLICY = AuthPolicy(max_failures=5, backoff_base=1.0, backoff_max=900.0)


@pytest.fixture
async def store(sql_url: str) -> AsyncIterator[SqlAuthStore]:
    await sql.upgrade(url=sql_url, script_location=MIGRATIONS, version_table=VERSION_TABLE)
    engine = sql.create_engine(sql_url, pool_size=10)
    yield SqlAuthStore(engine)
    await engine.dispose()


async def test_migrations_are_idempotent_and_use_their_own_version_table(sql_url: str) -> None:
    for _ in range(2):
        await sql.upgrade(url=sql_url, script_location=MIGRATIONS, version_table=VERSION_TABLE)
    inspected = sa.create_engine(sql.sync_url(sql_url))  # schema inspection: SQLAlchemy's own engine
    try:
        tables = set(sa.inspect(inspected).get_table_names())
    finally:
        inspected.dispose()
    engine = sql.create_engine(sql_url)
    try:
        async with engine.connect() as conn:
            version = await conn.scalar(
                sa.select(sa.column("version_num")).select_from(sa.table(VERSION_TABLE))
            )
    finally:
        await engine.dispose()
    assert {
        "auth_sessions",
        "auth_refresh_tokens",
        "auth_login_throttle",
        "auth_device_tokens",
        "auth_revocations",
        VERSION_TABLE,
    } <= tables
    assert "alembic_version" not in tables
    assert version == "0004_mfa"


async def test_a_throttled_attempt_takes_no_write_lock(store: SqlAuthStore) -> None:
    """During a back-off a claim only reads: while another transaction holds the write lock
    (SQLite: the database's; PostgreSQL: the counter row's), a throttled attempt is answered at
    once instead of queuing behind it (issue 9: the owner's device login queued behind a flood)."""
    now = time.time()
    account, ip = ThrottleKey("a" * 64, 1), ThrottleKey("b" * 64, 100)
    await store.claim_attempt([account], now=now, forget_before=now - 3600, backoff=POLICY.backoff)
    async with store._engine.begin() as holder:  # a writer in the middle of its transaction
        await holder.execute(
            sa.update(login_throttle)
            .where(login_throttle.c.key == account.key)
            .values(last_failure_at=login_throttle.c.last_failure_at)
        )
        started = time.monotonic()
        claim = await asyncio.wait_for(
            store.claim_attempt([account, ip], now=now, forget_before=now - 3600, backoff=POLICY.backoff),
            timeout=3,
        )
        elapsed = time.monotonic() - started
    assert claim.retry_after == pytest.approx(1.0) and not claim.charges
    assert elapsed < 0.5
    assert await store.throttle_state(ip.key) is None
