"""The request coalescer (services/kit/coalesce.py) with a stand-in `load_many` the test paces."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.kit.coalesce import Coalescer


class Loads:
    """A `load_many` that records its batches and answers each when the test releases it."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.fail: BaseException | None = None
        self.short = False

    async def __call__(self, keys: list[str]) -> Sequence[str | Exception]:
        self.batches.append(keys)
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        values: list[str | Exception] = [KeyError(k) if k.startswith("missing") else k.upper() for k in keys]
        return values[:-1] if self.short else values


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_read_alone_runs_at_once_as_a_batch_of_one() -> None:
    loads = Loads()
    loads.release.set()
    sizes: list[int] = []
    reads = Coalescer(loads, max_in_flight=2, on_batch=sizes.append)
    assert await reads.load("a") == "A"
    assert await reads.load("b") == "B"
    assert loads.batches == [["a"], ["b"]]
    assert sizes == [1, 1]


async def test_reads_that_arrive_while_the_limit_runs_wait_and_go_together() -> None:
    loads = Loads()
    sizes: list[int] = []
    reads = Coalescer(loads, max_batch=3, max_in_flight=2, on_batch=sizes.append)
    tasks = [asyncio.ensure_future(reads.load(k)) for k in "abcdefg"]
    await settle()
    assert loads.batches == [["a"], ["b"]]  # two at once; the rest wait
    loads.release.set()
    assert await asyncio.gather(*tasks) == list("ABCDEFG")
    assert loads.batches == [["a"], ["b"], ["c", "d", "e"], ["f", "g"]]
    assert sizes == [1, 1, 3, 2]


async def test_an_exception_value_goes_to_its_caller_only() -> None:
    loads = Loads()
    reads = Coalescer(loads, max_in_flight=1)
    tasks = [asyncio.ensure_future(reads.load(k)) for k in ("a", "b", "missing", "c")]
    await settle()
    loads.release.set()
    got = await asyncio.gather(*tasks, return_exceptions=True)
    assert got[:2] == ["A", "B"] and got[3] == "C"
    assert isinstance(got[2], KeyError)
    assert loads.batches == [["a"], ["b", "missing", "c"]]


@pytest.mark.parametrize("short", [False, True], ids=["raises", "answers too few values"])
async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_runs(short: bool) -> None:
    loads = Loads()
    reads = Coalescer(loads, max_in_flight=1)
    if short:
        loads.short = True
    else:
        loads.fail = ConnectionError("down")
    tasks = [asyncio.ensure_future(reads.load(k)) for k in "abc"]
    await settle()
    loads.release.set()
    got = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(e, ConnectionError | RuntimeError | ValueError) for e in got), got
    loads.fail, loads.short = None, False
    assert await reads.load("d") == "D"  # nothing is left counted as running


async def test_a_cancelled_waiter_leaves_the_others_batch_alone() -> None:
    loads = Loads()
    reads = Coalescer(loads, max_in_flight=1)
    tasks = [asyncio.ensure_future(reads.load(k)) for k in "abcd"]
    await settle()
    tasks[2].cancel()
    await settle()
    loads.release.set()
    got = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(got[2], asyncio.CancelledError)
    assert [got[0], got[1], got[3]] == ["A", "B", "D"]
    assert loads.batches == [["a"], ["b", "d"]]


async def test_a_cancelled_first_reader_frees_its_place() -> None:
    loads = Loads()
    reads = Coalescer(loads, max_in_flight=1)
    first = asyncio.ensure_future(reads.load("a"))
    await settle()
    second = asyncio.ensure_future(reads.load("b"))
    await settle()
    first.cancel()
    await settle()
    loads.release.set()
    assert await second == "B"
    assert loads.batches == [["a"], ["b"]]


def test_limits_below_one_are_refused() -> None:
    async def load_many(keys: list[str]) -> list[str]:
        return keys

    with pytest.raises(ValueError):
        Coalescer(load_many, max_batch=0)
    with pytest.raises(ValueError):
        Coalescer(load_many, max_in_flight=0)
