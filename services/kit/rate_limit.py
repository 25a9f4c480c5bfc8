"""Fixed-window counters in a service's SQL database: "at most N mails per address per hour".

A key is hashed (SHA-256) before it is stored, so the table holds no address or IP. `take`
checks every key first and counts only when all allow, inside the caller's transaction: a
refused request costs no budget. Under a race two requests may both pass the last slot; that
is one mail too many, never a lost one. Times are UNIX seconds.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa

from services.kit.db import Connection

TABLE = "rate_limits"


def _columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("window_start", sa.Float, nullable=False),
        sa.Column("hits", sa.Integer, nullable=False),
    ]


def table_in(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(TABLE, metadata, *_columns())


def create_table(op: Any) -> None:
    op.create_table(TABLE, *_columns())


def drop_table(op: Any) -> None:
    op.drop_table(TABLE)


limits = table_in(sa.MetaData())


def key(scope: str, value: str) -> str:
    """The stored form of one counter's key, e.g. key("verify_email:address", blind_index)."""
    return hashlib.sha256(f"{scope}\0{value}".encode()).hexdigest()


async def take(connection: Connection, keys: list[tuple[str, int]], *, window: float, now: float) -> float:
    """Count one hit on each (key, limit), unless one is spent: then count nothing and return
    the seconds until it has room again. 0.0 means allowed (and counted)."""
    rows = {
        row.key: row
        for row in (
            await connection.execute(
                sa.select(limits.c.key, limits.c.window_start, limits.c.hits).where(
                    limits.c.key.in_([k for k, _ in keys])
                )
            )
        ).all()
    }
    wait = 0.0
    for counter, limit in keys:
        row = rows.get(counter)
        if row is not None and row.window_start + window > now and row.hits >= limit:
            wait = max(wait, row.window_start + window - now)
    if wait > 0:
        return wait
    for counter, _ in keys:
        row = rows.get(counter)
        if row is None:
            await connection.execute(sa.insert(limits).values(key=counter, window_start=now, hits=1))
        elif row.window_start + window <= now:
            await connection.execute(
                sa.update(limits).where(limits.c.key == counter).values(window_start=now, hits=1)
            )
        else:
            await connection.execute(
                sa.update(limits).where(limits.c.key == counter).values(hits=limits.c.hits + 1)
            )
    return 0.0
