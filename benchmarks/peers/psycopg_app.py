"""Peer 2: FastAPI + PyJWT + a raw psycopg `AsyncConnectionPool` (PostgreSQL only).

    PEER_DATABASE_URL=postgresql://... PEER_JWKS_URL=http://.../.well-known/jwks.json \
        uvicorn benchmarks.peers.psycopg_app:app --workers 1
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Header, HTTPException
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool

from benchmarks.peers.common import Counters, PeerSettings, Verifier, add_counters, user_json

QUERY = "SELECT id, username, email, display_name, role, created_at, updated_at FROM users WHERE id = %s"

settings = PeerSettings.from_env()
pool = AsyncConnectionPool(
    settings.database_url, min_size=10, max_size=10, open=False, kwargs={"autocommit": True}
)
counters = Counters()
verifier: Verifier | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global verifier
    verifier = Verifier(settings)
    await pool.open(wait=True)
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)
add_counters(app, counters)


@app.get("/api/v1/users/{user_id}")
async def get_user(user_id: str, authorization: str | None = Header(default=None)) -> dict[str, Any]:
    assert verifier is not None
    verifier.verify(authorization)
    async with pool.connection() as conn:
        cursor = conn.cursor(row_factory=namedtuple_row)
        await cursor.execute(QUERY, (user_id,))
        row = await cursor.fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail="no such user")
    return user_json(row)
