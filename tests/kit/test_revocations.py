"""The verifier's side of instant revocation (services/kit/revocations.py), without the transport:
revoked ids are forgotten once their tokens have expired anyway, and the watcher resumes after
its last cursor when its source breaks. The gRPC stream itself is tested with real servers in
tests/auth/test_sessions.py and tests/e2e/test_sessions_rest.py."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from services.kit.revocations import Batch, RevocationWatcher, RevokedSessions
from tests.support import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_revoked_id_is_kept_only_until_its_tokens_expire() -> None:
    clock = Clock()
    revoked = RevokedSessions(clock)
    revoked.add("s1", 1100.0)
    revoked.add("s2", 2000.0)
    assert "s1" in revoked and "s2" in revoked and "s3" not in revoked and "" not in revoked
    clock.now = 1100.0
    assert "s1" not in revoked and "s2" in revoked  # refused no longer: its tokens are all expired
    revoked.sweep()
    assert len(revoked) == 1


class FlakySource:
    """Yields one batch per connection, then breaks (auth restarting); records each `after`."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches
        self.afters: list[int] = []

    async def watch(self, after: int) -> AsyncGenerator[Batch, None]:
        self.afters.append(after)
        if self.batches:
            yield self.batches.pop(0)
        raise ConnectionError("auth went away")


async def test_the_watcher_resumes_after_its_last_cursor() -> None:
    source = FlakySource(
        [
            Batch(revoked=(("s1", 9e9),), cursor=3),
            Batch(revoked=(("s2", 9e9),), cursor=7),
            Batch(revoked=(("s3", 9e9),), cursor=2, reset=True),  # auth's log started again
        ]
    )
    revoked = RevokedSessions()
    watcher = RevocationWatcher(source, revoked)

    async def reconnected_thrice() -> bool:
        return len(source.afters) >= 4

    watcher.start()
    try:
        await wait_until(reconnected_thrice, timeout=10, what="three reconnects")
    finally:
        await watcher.stop()
    assert source.afters[:4] == [0, 3, 7, 2]
    assert all(session in revoked for session in ("s1", "s2", "s3"))
