"""Auth's side of instant revocation: `WatchRevocations` reads the revocation log (written by
the store in the same transaction as each revocation) and streams it.

Every stream polls the log every `poll_interval` (other auth instances revoke too) and at once
when this instance revokes something (`notify`). Cursors are the log's sequence numbers; on
PostgreSQL a row can commit after one with a higher number, so each read also takes the rows
logged in the last `LATE_COMMIT_WINDOW` seconds (subscribers ignore repeats).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import grpc

from pinexa.auth.v1 import auth_internal_pb2, auth_internal_pb2_grpc
from services.auth.model import AuthStore
from services.kit import audit, audit_grpc
from services.kit.errors import PinexaError, Unavailable
from services.kit.outage import OutageLog
from services.kit.revocations import Batch

log = logging.getLogger(__name__)

LATE_COMMIT_WINDOW = 5.0


class RevocationLog:
    """The revocation log as a `services.kit.revocations.RevocationSource`."""

    def __init__(
        self, store: AuthStore, *, poll_interval: float = 0.5, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._poll_interval = poll_interval
        self._clock = clock
        self._changed = asyncio.Event()

    def notify(self) -> None:
        """Something was revoked here: wake every stream now rather than at its next poll."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def watch(self, after: int) -> AsyncGenerator[Batch, None]:
        reset = after > await self._store.last_revocation_cursor()
        cursor = 0 if reset else after
        sent: dict[int, float] = {}  # cursors already sent within the late-commit window
        first = True
        while True:
            changed = self._changed
            now = self._clock()
            rows = await self._store.revocations_since(
                after=cursor, logged_since=now - LATE_COMMIT_WINDOW, now=now
            )
            fresh = [row for row in rows if row.cursor not in sent]
            if fresh or first:
                for row in fresh:
                    sent[row.cursor] = now
                cursor = max([cursor, *(row.cursor for row in fresh)])
                yield Batch(
                    revoked=tuple((row.session_id, row.expires_at) for row in fresh),
                    cursor=cursor,
                    reset=reset and first,
                )
                first = False
            for seq in [seq for seq, at in sent.items() if at < now - 2 * LATE_COMMIT_WINDOW]:
                del sent[seq]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=self._poll_interval)


class AuthInternalServicer(auth_internal_pb2_grpc.AuthInternalServiceServicer):
    def __init__(
        self,
        log: RevocationLog,
        audit_store: audit.AuditSource,
        *,
        translate_error: Callable[[Exception], PinexaError | None],
    ) -> None:
        self._log = log
        self._audit = audit_store
        # The service's translate_error: a database outage, or any error before the start-up
        # migrations are done (the log's table may not exist yet), is a 503 with its reason.
        self._translate_error = translate_error
        self._outage = OutageLog(
            logging.getLogger(__name__), component="revocation stream", dependency="the revocation log"
        )

    async def ListAuditRecords(
        self, request: auth_internal_pb2.ListAuditRecordsRequest, context: grpc.aio.ServicerContext
    ) -> auth_internal_pb2.ListAuditRecordsResponse:
        events = await self._audit.list(audit_grpc.query_of(request))
        return auth_internal_pb2.ListAuditRecordsResponse(records=[audit_grpc.to_record(e) for e in events])

    async def WatchRevocations(
        self, request: auth_internal_pb2.WatchRevocationsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[auth_internal_pb2.RevocationBatch]:
        try:
            async for batch in self._log.watch(max(request.after, 0)):
                yield auth_internal_pb2.RevocationBatch(
                    revocations=[
                        auth_internal_pb2.Revocation(session_id=session_id, expires_at=int(until) + 1)
                        for session_id, until in batch.revoked
                    ],
                    cursor=batch.cursor,
                    reset=batch.reset,
                )
                self._outage.up()
        except Exception as exc:
            # The subscriber reconnects and resumes from its cursor; it gets a plain status, never
            # the exception's text.
            error = self._translate_error(exc)
            if error is not None:
                self._outage.down(exc)  # one line per outage, not one per subscriber's retry
            else:
                log.exception("the revocation stream failed")
                error = Unavailable("the revocation stream failed; resume shortly", reason="UNAVAILABLE")
            await context.abort_with_status(error.to_status("pinexa.auth"))
