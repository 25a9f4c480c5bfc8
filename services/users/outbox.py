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
The loop (wake-up, polling, back-off, outage logging) is the kit's `OutboxWorker`, which the mail
outbox shares.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import grpc

from pinexa.data.v1 import data_internal_pb2, data_internal_pb2_grpc
from services.kit import metrics
from services.kit.outage import OutageLog
from services.kit.outbox import OutboxWorker
from services.users.domain import utc_now
from services.users.model import PendingPurge, UserStore

log = logging.getLogger(__name__)

# PurgeUserData failures that mean "the data service is not there now" (logged once per outage).
_UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class PurgeOutbox(OutboxWorker[PendingPurge, datetime]):
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
        super().__init__(
            name="users purge outbox",
            log=log,
            clock=clock,
            poll_interval=poll_interval,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            batch_size=batch_size,
            database_outage=database_outage,
        )
        self._store = store
        self._stub = data_internal_pb2_grpc.DataInternalServiceStub(channel)
        self._call_timeout = call_timeout
        self._data = OutageLog(log, component="users purge outbox", dependency="data service")

    async def due(self, now: datetime, limit: int) -> list[PendingPurge]:
        return await self._store.due_purges(now, limit)

    async def report_backlog(self) -> None:
        """pinexa_outbox_depth and pinexa_outbox_oldest_age_seconds{service="users",outbox="purge"}."""
        depth, oldest = await self._store.purge_backlog()
        age = 0.0 if oldest is None else (self._clock() - oldest).total_seconds()
        metrics.outbox("users", "purge", depth=depth, oldest_age_seconds=age)

    async def seconds_until_next(self) -> float | None:
        due = await self._store.next_purge_due()
        return None if due is None else (due - self._clock()).total_seconds()

    async def deliver(self, purge: PendingPurge) -> bool:
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
