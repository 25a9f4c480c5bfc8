"""Delivers the purge outbox: deleted users whose data the data service must remove.

Why an outbox: deleting an account and purging its items touch two services and two databases.
Calling the data service inside DeleteUser would either leave orphaned items (data down after the
account is gone) or block deletes on the data service. Instead the delete writes a `purge_outbox`
row in the same transaction as the account's removal, and this worker delivers it:

- it wakes at once after a delete, and otherwise polls every `poll_interval` seconds;
- it claims a row with a lease (the row's `next_attempt_at` moves past the call's deadline, and the
  `attempts` counter is the compare-and-set token), so several replicas can run workers safely;
- it calls `DataInternalService.PurgeUserData` and deletes the row only when that succeeded;
- on failure it retries with exponential back-off (capped, with jitter), for as long as it takes.

PurgeUserData is idempotent, so a duplicate delivery (a lease that ran out mid-call) is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta

import grpc

from pinexa.data.v1 import data_internal_pb2, data_internal_pb2_grpc
from services.kit import metrics, sql
from services.kit.outage import OutageLog
from services.users.domain import utc_now
from services.users.model import PendingPurge, UserStore

log = logging.getLogger(__name__)

# PurgeUserData failures that mean "the data service is not there now" (logged once per outage).
_UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class PurgeOutbox:
    """The background worker; `start` and `stop` are the service's on_start/on_stop hooks."""

    def __init__(
        self,
        *,
        store: UserStore,
        channel: grpc.aio.Channel,
        poll_interval: float = 5.0,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        call_timeout: float = 10.0,
        batch_size: int = 50,
        clock: Callable[[], datetime] = utc_now,
        database_outage: OutageLog | None = None,
    ) -> None:
        self._store = store
        self._stub = data_internal_pb2_grpc.DataInternalServiceStub(channel)
        self._poll_interval = poll_interval
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._call_timeout = call_timeout
        self._batch_size = batch_size
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # One line when the database or the data service goes away and one when it is back,
        # rather than a line (or a traceback) per pass and per row.
        self._database = database_outage or OutageLog(
            log, component="users purge outbox", dependency="database"
        )
        self._data = OutageLog(log, component="users purge outbox", dependency="data service")

    def wake(self) -> None:
        """Deliver now rather than at the next poll (called after each delete)."""
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="users-purge-outbox")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failure: exponential, capped, jittered."""
        delay = min(self._backoff_max, self._backoff_base * 2.0 ** max(0, attempts - 1))
        return delay * random.uniform(0.8, 1.0)  # noqa: S311 (jitter, not a secret)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.deliver_due()
                await self.report_backlog()
                timeout = await self._seconds_until_next()
                self._database.up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if sql.is_outage(exc):  # the database is unreachable; try again later
                    self._database.down(exc)
                else:
                    log.warning("purge outbox pass failed; will retry", exc_info=True)
                timeout = self._poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def report_backlog(self) -> None:
        """Update pinexa_outbox_depth and pinexa_outbox_oldest_age_seconds{outbox="purge"}."""
        depth, oldest = await self._store.purge_backlog()
        age = 0.0 if oldest is None else (self._clock() - oldest).total_seconds()
        metrics.outbox("users", "purge", depth=depth, oldest_age_seconds=age)

    async def _seconds_until_next(self) -> float:
        due = await self._store.next_purge_due()
        if due is None:
            return self._poll_interval
        wait = (due - self._clock()).total_seconds()
        return min(self._poll_interval, max(0.0, wait))

    async def deliver_due(self) -> int:
        """One pass: deliver every row that is due now. Returns how many purges succeeded."""
        delivered = 0
        while True:
            due = await self._store.due_purges(self._clock(), self._batch_size)
            if not due:
                return delivered
            results = await asyncio.gather(*(self._deliver(purge) for purge in due))
            delivered += sum(results)
            if not any(results) or len(due) < self._batch_size:
                return delivered

    async def _deliver(self, purge: PendingPurge) -> bool:
        lease_until = self._clock() + timedelta(seconds=self._call_timeout + 5)
        if not await self._store.claim_purge(purge, lease_until):
            return False  # another replica has it
        attempts = purge.attempts + 1
        try:
            response = await self._stub.PurgeUserData(
                data_internal_pb2.PurgeUserDataRequest(user_id=purge.user_id), timeout=self._call_timeout
            )
        except asyncio.CancelledError:
            # Shutting down mid-call: hand the row back now rather than leaving it leased until
            # lease_until, so a restarted or other replica delivers it at once.
            await asyncio.shield(
                self._store.reschedule_purge(purge.user_id, attempts, self._clock(), "stopped mid-call")
            )
            raise
        except grpc.aio.AioRpcError as error:
            delay = self.backoff(attempts)
            unreachable = error.code() in _UNREACHABLE
            if unreachable:
                self._data.down(error.code().name)
            log.log(
                logging.DEBUG if unreachable else logging.WARNING,
                "data purge failed; will retry",
                extra={
                    "deleted_user": purge.user_id,
                    "attempts": attempts,
                    "code": error.code().name,
                    "retry_in_s": round(delay, 2),
                },
            )
            await self._store.reschedule_purge(
                purge.user_id,
                attempts,
                self._clock() + timedelta(seconds=delay),
                f"{error.code().name}: {error.details() or ''}",
            )
            return False
        self._data.up()
        await self._store.finish_purge(purge.user_id)
        log.info(
            "data purged for a deleted account",
            extra={
                "deleted_user": purge.user_id,
                "deleted_items": response.deleted_count,
                "attempts": attempts,
            },
        )
        return True
