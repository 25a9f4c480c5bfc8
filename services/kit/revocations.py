"""Instant revocation: the set of revoked session ids each service's token verifier consults,
and the watcher that keeps it current from auth's `AuthInternalService.WatchRevocations` stream.

Auth logs every session it revokes (in the revoking transaction) with a cursor. The watcher
keeps one server stream open; it starts from cursor 0 (everything still relevant) and, after a
disconnect, resumes after the last cursor it received, so nothing revoked meanwhile is missed.
While the stream is down the service keeps serving with what it knows, and logs the outage
once; it reconnects within a second of auth coming back. A revoked id is kept until the longest
access token of its session would have expired (auth sends that time), then forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from pinexa.auth.v1 import auth_internal_pb2, auth_internal_pb2_grpc
from services.kit.outage import OutageLog

log = logging.getLogger(__name__)

RECONNECT_DELAY_SECONDS = (0.1, 1.0)  # first retry, then at most this far apart


@dataclass(frozen=True, slots=True)
class Batch:
    """Revocations as a source delivers them: (session id, forget-after) pairs and the cursor."""

    revoked: tuple[tuple[str, float], ...]
    cursor: int
    reset: bool = False


class RevocationSource(Protocol):
    """A stream of batches after `after`: auth's WatchRevocations, or auth's own log in-process."""

    def watch(self, after: int) -> AsyncGenerator[Batch, None]: ...


class RevokedSessions:
    """Session ids whose tokens are refused, each until the time its tokens expire anyway."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._until: dict[str, float] = {}
        self._clock = clock
        self._next_sweep = 0.0

    def add(self, session_id: str, until: float) -> None:
        self._until[session_id] = max(until, self._until.get(session_id, 0.0))

    def __contains__(self, session_id: object) -> bool:
        if not isinstance(session_id, str) or not session_id:
            return False
        until = self._until.get(session_id)
        return until is not None and until > self._clock()

    def __len__(self) -> int:
        return len(self._until)

    def sweep(self) -> None:
        """Forget ids whose tokens have all expired (at most once a minute)."""
        now = self._clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60.0
        for session_id in [s for s, until in self._until.items() if until <= now]:
            del self._until[session_id]


class RevocationWatcher:
    """Keeps `revoked` current from `source`, reconnecting and resuming until stopped."""

    def __init__(
        self, source: RevocationSource, revoked: RevokedSessions, *, component: str = "token verifier"
    ):
        self._source = source
        self.revoked = revoked
        self.cursor = 0
        self._outage = OutageLog(log, component=component, dependency="auth's revocation stream")
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # set once the first batch of a connection has arrived

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="revocation-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = RECONNECT_DELAY_SECONDS[0]
        while True:
            try:
                # Closed explicitly (also when cancelled): the gRPC call inside must end on this
                # loop, not whenever the garbage collector finalizes the generator.
                async with contextlib.aclosing(self._source.watch(self.cursor)) as batches:
                    async for batch in batches:
                        self._apply(batch)
                        delay = RECONNECT_DELAY_SECONDS[0]
                reason = "the stream ended"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a transport failure: auth restarting or unreachable
                reason = f"{type(exc).__name__}: {_describe(exc)}"
            self.connected.clear()
            self._outage.down(
                f"{reason}; refusing the {len(self.revoked)} sessions known, resuming after {self.cursor}"
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_DELAY_SECONDS[1])

    def _apply(self, batch: Batch) -> None:
        if batch.reset:
            log.info("auth's revocation log started again; resuming from its start")
        for session_id, until in batch.revoked:
            self.revoked.add(session_id, until)
        self.cursor = batch.cursor
        self.revoked.sweep()
        self._outage.up()
        self.connected.set()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return str(exc.code().name)
    return str(exc) or "-"


class GrpcRevocationSource:
    """auth's WatchRevocations over an internal channel (the internal token travels with it)."""

    def __init__(self, channel: Any) -> None:
        self._stub = auth_internal_pb2_grpc.AuthInternalServiceStub(channel)

    async def watch(self, after: int) -> AsyncGenerator[Batch, None]:
        call = self._stub.WatchRevocations(auth_internal_pb2.WatchRevocationsRequest(after=after))
        try:
            async for message in call:
                yield Batch(
                    revoked=tuple((r.session_id, float(r.expires_at)) for r in message.revocations),
                    cursor=message.cursor,
                    reset=message.reset,
                )
        finally:
            call.cancel()
