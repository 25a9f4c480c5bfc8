"""The kit's periodic purge: it runs at start, skips a run while the service's start-up work is not
done (one warning, no traceback), and a bug's traceback does not stop the next run."""

from __future__ import annotations

import logging

import pytest

from services.kit.errors import DependencyUnavailable
from services.kit.periodic import PeriodicPurge
from tests.support import wait_until


async def test_a_run_waits_for_readiness_and_a_failure_does_not_stop_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    ready, runs = [False], [0]

    async def is_ready() -> None:
        if not ready[0]:
            raise DependencyUnavailable("start-up migrations are running", reason="DATABASE_UNAVAILABLE")

    async def work() -> int:
        runs[0] += 1
        if runs[0] == 1:
            raise RuntimeError("a bug")
        return 3

    purge = PeriodicPurge(work, interval=0.05, what="test rows", ready=is_ready)
    await purge.start()
    try:

        async def warned() -> bool:
            return any("purging test rows failed" in r.getMessage() for r in caplog.records)

        await wait_until(warned, timeout=10, what="the not-ready warning")
        assert runs[0] == 0
        not_ready = [r for r in caplog.records if "purging test rows failed" in r.getMessage()]
        assert all(r.levelno == logging.WARNING and r.exc_info is None for r in not_ready)
        ready[0] = True

        async def purged() -> bool:
            return any(r.getMessage() == "purged test rows" for r in caplog.records)

        await wait_until(purged, timeout=10, what="a run after the failing one")
        assert runs[0] >= 2
        assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)  # the bug, once
    finally:
        await purge.stop()
