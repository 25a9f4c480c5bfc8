"""The kit's SQL helpers, on SQLite and on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.kit import sql


async def _transaction_status_after_a_read(engine: AsyncEngine) -> str:
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT 1"))).scalar() == 1
        driver = (await connection.get_raw_connection()).driver_connection
        return str(driver.info.transaction_status.name)  # type: ignore[union-attr]


async def test_reads_of_one_statement_open_no_transaction(sql_url: str) -> None:
    engine = sql.create_engine(sql_url, pool_size=1)
    try:
        reads = sql.read_engine(engine)
        if sql.is_sqlite(sql_url):
            # A SQLite read starts no transaction; switching its isolation level costs more than it saves.
            assert reads is engine
            return
        # On PostgreSQL no BEGIN went out before the read, and no ROLLBACK will follow it...
        assert await _transaction_status_after_a_read(reads) == "IDLE"
        # ...while the pool's connections stay as they were for everything else (writes).
        assert await _transaction_status_after_a_read(engine) == "INTRANS"
    finally:
        await engine.dispose()
