"""The SQL store's GetUser coalescer (services/kit/coalesce.py): reads that arrive while others
run are one statement, on SQLite and PostgreSQL, and coalescing never changes what a caller gets.

What every store must answer for concurrent reads is in test_store_conformance.py; this is what
only the SQL store does: how many statements run, and how a failed batch is shared out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from services.kit import sql
from services.kit.db import Database
from services.users.server import MIGRATIONS, VERSION_TABLE
from services.users.store import MAX_BATCH, MAX_IN_FLIGHT, SqlUserStore
from tests.conftest import migrated_engine
from tests.users.test_store_conformance import CIPHER, account, record


class Statements:
    """Counts the statements the store's engine runs, and can make them fail (the batched ones
    only, or every one)."""

    def __init__(self, engine: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ran: list[Any] = []
        self.fail_with: Exception | None = None
        self.batches_only = True
        backend = engine._backend
        real = backend.execute

        async def execute(conn: Any, statement: Any, params: Any) -> Any:
            self.ran.append(params)
            if self.fail_with is not None and (not self.batches_only or (params and "ids" in params)):
                await asyncio.sleep(0.01)  # a failure takes its round trip too
                raise self.fail_with
            return await real(conn, statement, params)

        monkeypatch.setattr(backend, "execute", execute)

    def batches(self) -> list[list[str]]:
        return [sorted(params["ids"]) for params in self.ran if params and "ids" in params]


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated_engine(
        request.param, request, tmp_path, migrations=MIGRATIONS, version_table=VERSION_TABLE
    ) as engine:
        yield engine


async def seeded(engine: Database, count: int) -> tuple[SqlUserStore, list[dict[str, Any]]]:
    store = SqlUserStore(engine, CIPHER)
    accounts = [account(f"user{n}") for n in range(count)]
    for values in accounts:
        await store.insert(values)
    return store, accounts


async def test_reads_that_arrive_while_others_run_are_one_statement(
    engine: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, accounts = await seeded(engine, 12)
    statements = Statements(engine, monkeypatch)
    missing = str(uuid.uuid4())
    asked = [a["id"] for a in accounts] + [missing, accounts[0]["id"]]  # one unknown, one twice
    got = await asyncio.gather(*(store.get(i) for i in asked))
    assert got == [*(record(a) for a in accounts), None, record(accounts[0])]
    # The first MAX_IN_FLIGHT run at once, alone; the others wait for one and go together. The
    # batch may reach the driver before the second lone read does (that one can still be waiting
    # for its connection when the first read ends), so the statements are compared, not their order.
    alone = sorted(params["id"] for params in statements.ran if params and "id" in params)
    assert alone == sorted(asked[:MAX_IN_FLIGHT])
    assert statements.batches() == [sorted(set(asked[MAX_IN_FLIGHT:]))]  # each id once
    assert len(statements.ran) == MAX_IN_FLIGHT + 1


async def test_one_read_alone_is_the_single_row_statement(
    engine: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, accounts = await seeded(engine, 2)
    statements = Statements(engine, monkeypatch)
    assert await store.get(accounts[0]["id"]) == record(accounts[0])
    assert await store.get(accounts[1]["id"]) == record(accounts[1])
    assert statements.ran == [{"id": accounts[0]["id"]}, {"id": accounts[1]["id"]}]


async def test_more_waiting_reads_than_a_batch_holds_are_split(
    engine: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, accounts = await seeded(engine, 3)
    statements = Statements(engine, monkeypatch)
    count = MAX_IN_FLIGHT + MAX_BATCH + 5
    got = await asyncio.gather(*(store.get(accounts[n % 3]["id"]) for n in range(count)))
    assert got == [record(accounts[n % 3]) for n in range(count)]
    assert len(statements.ran) == MAX_IN_FLIGHT + 2  # the first ones alone, then 100 and 5 reads


async def test_a_batch_that_fails_for_one_bad_id_answers_every_other_caller(
    engine: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure that is not an outage is retried one id at a time: the caller whose id cannot
    be read gets the error, every other caller its account."""
    store, accounts = await seeded(engine, MAX_IN_FLIGHT + 3)
    statements = Statements(engine, monkeypatch)
    statements.fail_with = ValueError("an id the database refuses")
    got = await asyncio.gather(*(store.get(a["id"]) for a in accounts))
    assert got == [record(a) for a in accounts]
    assert len(statements.batches()) == 1
    assert len(statements.ran) == MAX_IN_FLIGHT + 1 + 3  # then one statement per id of the batch


async def test_an_outage_under_a_batch_is_every_callers_outage(
    engine: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, accounts = await seeded(engine, MAX_IN_FLIGHT + 3)
    statements = Statements(engine, monkeypatch)
    statements.fail_with, statements.batches_only = psycopg.OperationalError("connection refused"), False
    got = await asyncio.gather(*(store.get(a["id"]) for a in accounts), return_exceptions=True)
    assert all(isinstance(e, Exception) and sql.is_outage(e) for e in got), got
    assert len(statements.batches()) == 1
    assert len(statements.ran) == MAX_IN_FLIGHT + 1  # no retry one by one while the database is down
    statements.fail_with = None
    assert await asyncio.gather(*(store.get(a["id"]) for a in accounts)) == [record(a) for a in accounts]


async def test_a_nul_byte_in_one_id_fails_only_that_callers_read(engine: Database) -> None:
    """PostgreSQL refuses text with a NUL byte, and in a batch that refuses the whole array
    (SQLite reads it as an id like any other). The services' request checks refuse control
    characters before any handler runs; the store does not rely on it."""
    store, accounts = await seeded(engine, 2)
    ada, bob = (record(a) for a in accounts)
    # The first MAX_IN_FLIGHT reads run alone; the bad id waits with two good ones in a batch.
    asked = [a["id"] for a in accounts] * MAX_IN_FLIGHT
    asked[MAX_IN_FLIGHT + 1 : MAX_IN_FLIGHT + 1] = ["bad\x00id"]
    got = await asyncio.gather(*(store.get(i) for i in asked), return_exceptions=True)
    bad = got.pop(MAX_IN_FLIGHT + 1)
    assert got == [ada, bob] * MAX_IN_FLIGHT
    assert bad is None or (isinstance(bad, Exception) and not sql.is_outage(bad))


async def test_a_cancelled_caller_does_not_disturb_the_others(engine: Database) -> None:
    store, accounts = await seeded(engine, 3)
    tasks = [asyncio.ensure_future(store.get(a["id"])) for a in accounts]
    await asyncio.sleep(0)  # all three asked in this tick
    tasks[1].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    assert [done[0], done[2]] == [record(accounts[0]), record(accounts[2])]
