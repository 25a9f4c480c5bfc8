"""Concurrent reads of one kind, by key, as few batched reads (a request coalescer).

    reads = Coalescer(load_many, max_batch=100, max_in_flight=2)
    row = await reads.load(user_id)        # load_many([... user_id ...]) answers it

A read that finds fewer than `max_in_flight` batches running runs at once, as a batch of one
(no wait for the next tick, no task). Reads that arrive while `max_in_flight` batches run wait,
and go together in one batch as soon as one finishes: the busier the service, the larger the
batches, and the fewer statements, round trips and event-loop wake-ups per read. With nothing
else running a read costs what it did without the coalescer.

DataLoader-style libraries (aiodataloader) batch only what is asked in one tick of the event loop
and start every batch at once; under grpc.aio calls reach the store one or two per tick, so that
batched almost nothing (measured: the same statements and CPU per request as without it). Hence
this small class.

`load_many(keys)` returns one value per key, in order (an Exception instance as a value is
raised to that key's caller only); if it raises, every caller of that batch gets the error.
A caller that is cancelled while it waits leaves the others' batch alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

LoadMany = Callable[[list[K]], Awaitable[Sequence[V | Exception]]]


class Coalescer(Generic[K, V]):
    """Batches concurrent `load(key)` calls into `load_many(keys)` calls (see the module doc)."""

    def __init__(
        self,
        load_many: LoadMany[K, V],
        *,
        max_batch: int = 100,
        max_in_flight: int = 2,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._on_batch = on_batch or (lambda size: None)
        self._load_many = load_many
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._waiting: list[tuple[K, asyncio.Future[V]]] = []

    async def load(self, key: K) -> V:
        if self._in_flight < self._max_in_flight and not self._waiting:
            self._in_flight += 1
            self._on_batch(1)
            try:
                (value,) = await self._load_many([key])
            finally:
                self._in_flight -= 1
                self._next()
            if isinstance(value, Exception):
                raise value
            return value
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        return await future

    def _next(self) -> None:
        """Start batches of the waiting reads while there is room."""
        while self._waiting and self._in_flight < self._max_in_flight:
            batch = [item for item in self._waiting[: self._max_batch] if not item[1].done()]
            del self._waiting[: self._max_batch]
            if batch:
                self._in_flight += 1
                self._on_batch(len(batch))
                asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[K, asyncio.Future[V]]]) -> None:
        try:
            values = list(await self._load_many([key for key, _ in batch]))
            if len(values) != len(batch):
                raise RuntimeError(f"load_many answered {len(values)} values for {len(batch)} keys")
        except BaseException as error:  # handed to every caller of the batch
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(error, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
        else:
            for (_, future), value in zip(batch, values, strict=True):
                if future.done():
                    continue
                if isinstance(value, Exception):
                    future.set_exception(value)
                else:
                    future.set_result(value)
        finally:
            self._in_flight -= 1
            self._next()
