"""A housekeeping job that runs at start and then every `interval` seconds until stopped: auth's
purge of expired rows and both SQL services' audit-trail retention (services/kit/audit.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from services.kit import sql
from services.kit.errors import DependencyUnavailable

log = logging.getLogger(__name__)


class PeriodicPurge:
    """Runs `work` (which returns how many rows it removed) every `interval` seconds. A database
    outage costs one warning (the health monitor logs the outage itself); a bug is logged with
    its traceback; either way the next run comes on time."""

    def __init__(
        self,
        work: Callable[[], Awaitable[int]],
        *,
        interval: float,
        what: str,
        ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        # `ready` (the service's start-up work's ensure) raises until the tables exist: a run
        # before then is skipped with a warning, not a traceback about a missing table.
        self._ready = ready
        self._work = work
        self._interval = interval
        self._what = what
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name=f"purge {self._what}")

    async def run_once(self) -> int:
        if self._ready is not None:
            await self._ready()
        removed = await self._work()
        if removed:
            log.info(f"purged {self._what}", extra={"rows": removed})
        return removed

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:
                if sql.is_outage(exc) or isinstance(exc, DependencyUnavailable):
                    log.warning(f"purging {self._what} failed: the database is unavailable")
                else:
                    log.exception(f"purging {self._what} failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._interval)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
