"""Single-use tokens (services/kit/single_use.py) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.kit import single_use, sql
from services.kit.single_use import TokenRefused


@pytest.fixture
async def engine(sql_url: str) -> AsyncIterator[AsyncEngine]:
    engine = sql.create_engine(sql_url)
    metadata = sa.MetaData()
    single_use.table_in(metadata)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def _issue(
    engine: AsyncEngine, subject: str = "user-1", *, now: float = 1000.0, ttl: float = 60
) -> str:
    issued = single_use.prepare(purpose="verify_email", subject=subject, ttl_seconds=ttl, now=now, data="d")
    async with engine.begin() as connection:
        await single_use.issue(connection, issued, now=now)
    return issued.token


async def _consume(engine: AsyncEngine, token: str, *, now: float = 1001.0) -> single_use.Redeemed:
    async with engine.begin() as connection:
        return await single_use.consume(connection, purpose="verify_email", token=token, now=now)


async def _refusal(engine: AsyncEngine, token: str, *, now: float = 1001.0) -> str:
    with pytest.raises(TokenRefused) as refused:
        await _consume(engine, token, now=now)
    assert refused.value.violations[0][0] == "token"
    return refused.value.reason


def test_tokens_have_256_bits_and_only_their_hash_is_kept() -> None:
    token = single_use.new_token()
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) == 32
    assert single_use.new_token() != token
    assert single_use.matches(token, single_use.token_hash(token))
    assert not single_use.matches(token + "x", single_use.token_hash(token))


async def test_a_token_works_once(engine: AsyncEngine) -> None:
    token = await _issue(engine)
    redeemed = await _consume(engine, token)
    assert (redeemed.subject, redeemed.data) == ("user-1", "d")
    assert await _refusal(engine, token) == "TOKEN_USED"
    async with engine.connect() as connection:
        stored = (await connection.execute(sa.select(single_use.tokens))).all()
    assert token not in repr(stored) and stored[0].token_hash == single_use.token_hash(token)


async def test_expired_superseded_and_unknown_tokens_are_refused(engine: AsyncEngine) -> None:
    old = await _issue(engine, now=1000)
    new = await _issue(engine, now=1010)
    assert await _refusal(engine, old, now=1011) == "TOKEN_SUPERSEDED"
    assert await _refusal(engine, new, now=1010 + 61) == "TOKEN_EXPIRED"
    assert await _refusal(engine, "not-a-token") == "TOKEN_INVALID"
    assert await _refusal(engine, "") == "TOKEN_INVALID"
    assert await _refusal(engine, "x" * 5000) == "TOKEN_INVALID"
    other = await _issue(engine, "user-2", now=1010)  # another subject's tokens are untouched
    assert (await _consume(engine, other, now=1011)).subject == "user-2"
    wrong_purpose = single_use.prepare(purpose="password_reset", subject="user-3", ttl_seconds=60, now=1000)
    async with engine.begin() as connection:
        await single_use.issue(connection, wrong_purpose, now=1000)
    assert await _refusal(engine, wrong_purpose.token) == "TOKEN_INVALID"


async def test_revoke_kills_every_live_token_of_the_subject(engine: AsyncEngine) -> None:
    token = await _issue(engine)
    async with engine.begin() as connection:
        assert await single_use.revoke(connection, purpose="verify_email", subject="user-1", now=1001) == 1
    assert await _refusal(engine, token) == "TOKEN_SUPERSEDED"


async def test_of_concurrent_consumers_exactly_one_wins(engine: AsyncEngine) -> None:
    token = await _issue(engine)
    results = await asyncio.gather(*(_consume(engine, token) for _ in range(8)), return_exceptions=True)
    winners = [r for r in results if isinstance(r, single_use.Redeemed)]
    losers = [r for r in results if isinstance(r, TokenRefused)]
    assert len(winners) == 1 and len(losers) == 7, results
    assert {r.reason for r in losers} == {"TOKEN_USED"}
