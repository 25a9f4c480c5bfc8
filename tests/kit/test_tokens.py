"""The token verifier's key refresh on the hot path (forged and broken tokens, rotation and an
unreliable key source are covered in tests/auth/test_token_verification.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.kit.tokens import Jwk, TokenVerifier
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
