"""The delivery loop every durable outbox shares (users' purge outbox, the mail outbox).

An outbox row is written in the same transaction as the change that causes it; a worker built on
`OutboxWorker` delivers it afterwards:

- it wakes at once when `wake()` is called (after the causing transaction committed), and
  otherwise polls every `poll_interval` seconds, or sooner when a retry falls due;
- a subclass claims each row with a lease before delivering it, so several replicas can run
  workers safely, and a worker that dies mid-delivery leaves the row to be tried again once the
  lease runs out (at most a repeat, never a loss);
- a failed delivery is retried with exponential back-off (capped, with jitter), for as long as
  it takes;
- a database outage is logged once when it starts and once when it ends (`OutageLog`).

A subclass implements `due(now, limit)`, `deliver(item) -> bool` and `next_due()`, and may
implement `report_backlog()` (pinexa_outbox_depth and pinexa_outbox_oldest_age_seconds).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from services.kit import sql
from services.kit.outage import OutageLog

T = TypeVar("T")
Now = TypeVar("Now")


def backoff_delay(attempts: int, *, base: float, cap: float) -> float:
    """Seconds to wait after the `attempts`-th failure: exponential, capped, jittered."""
    delay = min(cap, base * 2.0 ** max(0, attempts - 1))
    return delay * random.uniform(0.8, 1.0)  # noqa: S311 (jitter, not a secret)


class OutboxWorker(abc.ABC, Generic[T, Now]):
    """The background task of one outbox; `start` and `stop` are a service's on_start/on_stop
    hooks. `Now` is the clock's type (a datetime for users' tables, UNIX seconds for the kit's)."""

    def __init__(
        self,
        *,
        name: str,
        log: logging.Logger,
        clock: Callable[[], Now],
        poll_interval: float,
        backoff_base: float,
        backoff_max: float,
        batch_size: int,
        database_outage: OutageLog | None,
    ) -> None:
        self._name = name
        self._log = log
        self._clock = clock
        self._poll_interval = poll_interval
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # One line when the database goes away and one when it is back, rather than a line (or
        # a traceback) per pass and per row.
        self._database = database_outage or OutageLog(log, component=name, dependency="database")

    def wake(self) -> None:
        """Deliver now rather than at the next poll (called once the causing write committed)."""
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failure: exponential, capped, jittered."""
        return backoff_delay(attempts, base=self._backoff_base, cap=self._backoff_max)

    @abc.abstractmethod
    async def due(self, now: Now, limit: int) -> Sequence[T]:
        """Up to `limit` rows whose next attempt is due at `now`."""

    @abc.abstractmethod
    async def deliver(self, item: T) -> bool:
        """Claim and deliver one row; True when it was delivered (and removed)."""

    @abc.abstractmethod
    async def seconds_until_next(self) -> float | None:
        """Seconds until the earliest row falls due (0 when one is due now), None when empty."""

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.deliver_due()
                await self.report_backlog()
                wait = await self.seconds_until_next()
                timeout = self._poll_interval if wait is None else min(self._poll_interval, max(0.0, wait))
                self._database.up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if sql.is_outage(exc):  # the database is unreachable; try again later
                    self._database.down(exc)
                else:
                    self._log.warning("%s pass failed; will retry", self._name, exc_info=True)
                timeout = self._poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def report_backlog(self) -> None:
        """After each pass: report the outbox's depth and oldest age (metrics.outbox)."""

    async def deliver_due(self) -> int:
        """One pass: deliver every row that is due now. Returns how many were delivered."""
        delivered = 0
        while True:
            due = await self.due(self._clock(), self._batch_size)
            if not due:
                return delivered
            results = await asyncio.gather(*(self.deliver(item) for item in due))
            delivered += sum(results)
            if not any(results) or len(due) < self._batch_size:
                return delivered
