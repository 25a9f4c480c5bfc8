"""Peer 1: FastAPI + PyJWT + SQLAlchemy's async ORM, a primary-key read with `session.get`.

    PEER_DATABASE_URL=postgresql+psycopg://... PEER_JWKS_URL=http://.../.well-known/jwks.json \
        uvicorn benchmarks.peers.orm_app:app --workers 1
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Header, HTTPException
from sqlalchemy import DateTime, String, Text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from benchmarks.peers.common import Counters, PeerSettings, Verifier, add_counters, user_json


class Base(DeclarativeBase):
    pass


class User(Base):
    """The users service's table (services/users/schema.py), the columns GetUser returns."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(32))
    email: Mapped[str] = mapped_column(Text)
    display_name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


settings = PeerSettings.from_env()
engine = create_async_engine(settings.database_url, pool_size=10, max_overflow=0)
sessions = async_sessionmaker(engine, expire_on_commit=False)
counters = Counters()
verifier: Verifier | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global verifier
    verifier = Verifier(settings)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)
add_counters(app, counters)


@app.get("/api/v1/users/{user_id}")
async def get_user(user_id: str, authorization: str | None = Header(default=None)) -> dict[str, Any]:
    assert verifier is not None
    verifier.verify(authorization)
    async with sessions() as session:
        user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="no such user")
    return user_json(user)
