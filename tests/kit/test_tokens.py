"""The token verifier's key refresh on the hot path (forged and broken tokens, rotation and an
unreliable key source are covered in tests/auth/test_token_verification.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import grpc
import pytest

from services.kit.errors import Unauthenticated
from services.kit.settings import Settings
from services.kit.tokens import Jwk, StaticKeySource, TokenVerifier, verifier_from_settings
from tests.support import AUDIENCE, ISSUER, TestKeys


class SlowKeys:
    """A key source whose fetches hang until the test lets them through (auth slow or
    unreachable, a connection attempt waiting for its timeout)."""

    def __init__(self, jwk: Jwk) -> None:
        self.jwk = jwk
        self.open = asyncio.Event()
        self.open.set()
        self.waiting = asyncio.Event()
        self.fetches = 0

    async def fetch(self) -> Sequence[Jwk]:
        self.fetches += 1
        self.waiting.set()
        await self.open.wait()
        return [self.jwk]


async def test_a_slow_key_refresh_holds_up_only_the_call_that_started_it(test_keys: TestKeys) -> None:
    source = SlowKeys(test_keys.jwk)
    verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE, max_key_age=0, min_refresh_interval=0)
    cached = test_keys.mint("u1")
    await verifier.verify(cached)
    source.open.clear()
    source.waiting.clear()

    # Keys are stale (max_key_age=0): this call refetches them, and waits for the fetch...
    first = asyncio.ensure_future(verifier.verify(cached))
    await asyncio.wait_for(source.waiting.wait(), timeout=5)
    # ...while the calls that come meanwhile go on with the keys already known.
    assert (await asyncio.wait_for(verifier.verify(cached), timeout=1)).user_id == "u1"
    fresh = test_keys.mint("u2")
    assert (await asyncio.wait_for(verifier.verify(fresh), timeout=1)).user_id == "u2"
    assert source.fetches == 2  # they started no fetch of their own
    assert not first.done()

    source.open.set()
    assert (await asyncio.wait_for(first, timeout=5)).user_id == "u1"


async def test_a_token_that_lives_longer_than_access_tokens_do_is_refused(test_keys: TestKeys) -> None:
    """Defence in depth: a correctly signed token whose exp - iat exceeds the configured access
    token lifetime plus the leeway was not issued by auth's rules (a leaked key, a bug) and is
    refused, even while it has not expired."""
    verifier = TokenVerifier(
        StaticKeySource([test_keys.jwk]),
        issuer=ISSUER,
        audience=AUDIENCE,
        leeway_seconds=30,
        max_lifetime_seconds=60,
    )
    now = int(time.time())
    at_the_limit = test_keys.mint("u1", iat=now - 10, nbf=now - 10, ttl=80)  # exp - iat = 90
    assert (await verifier.verify(at_the_limit)).user_id == "u1"
    for token in (
        test_keys.mint("u1", iat=now - 10, nbf=now - 10, ttl=81),  # one second too long
        test_keys.mint("u1", iat=now - 86_400, nbf=now - 86_400, ttl=300),  # issued a day ago, not expired
        test_keys.mint("u1", ttl=30 * 24 * 3600),  # a month-long token, fresh
    ):
        with pytest.raises(Unauthenticated) as caught:
            await verifier.verify(token)
        assert caught.value.reason == "TOKEN_LIFETIME_TOO_LONG"
        assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED


async def test_the_services_verifier_takes_the_lifetime_from_the_settings(test_keys: TestKeys) -> None:
    settings = Settings(
        jwt_issuer=ISSUER, jwt_audience=AUDIENCE, access_token_ttl_seconds=120, jwt_leeway_seconds=5
    )
    verifier = verifier_from_settings(settings, StaticKeySource([test_keys.jwk]))
    now = int(time.time())
    assert await verifier.verify(test_keys.mint("u1", iat=now, nbf=now, ttl=125))
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(test_keys.mint("u1", iat=now, nbf=now, ttl=126))
    assert caught.value.reason == "TOKEN_LIFETIME_TOO_LONG"
