"""The kit's audit module: what a record may hold, the merge of several sources' keyset pages, and
retention, on the in-memory log and on the SQL one (SQLite and PostgreSQL, migrated with users'
migrations)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.kit import audit
from services.kit.errors import InvalidArgument
from services.users.schema import audit_events
from services.users.server import MIGRATIONS, VERSION_TABLE
from tests.conftest import migrated_engine


def event(
    at_ms: int, kind: str = audit.LOGIN_FAILED, subject: str = "s1", service: str = "auth"
) -> audit.AuditEvent:
    made = audit.new_event(service, kind, subject_id=subject, now=at_ms / 1000)
    assert made.occurred_at == at_ms
    return made


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[audit.AuditStore]:
    if request.param == "memory":
        yield audit.MemoryAuditLog()
        return
    async with migrated_engine(
        request.param, request, tmp_path, migrations=MIGRATIONS, version_table=VERSION_TABLE
    ) as engine:
        yield audit.AuditLog(engine, audit_events)


def test_a_record_takes_only_known_types_outcomes_and_detail_keys() -> None:
    with pytest.raises(ValueError, match="type"):
        audit.new_event("auth", "PASSWORD_SHOWN", subject_id="s")
    with pytest.raises(ValueError, match="outcome"):
        audit.new_event("auth", audit.LOGIN_FAILED, subject_id="s", outcome="MAYBE")
    for key in ("password", "token", "refresh_token", "hash", "username"):
        with pytest.raises(ValueError, match="not allowed"):
            audit.new_event("auth", audit.LOGIN_FAILED, subject_id="s", detail={key: "x"})
    with pytest.raises(ValueError, match="string or an integer"):
        audit.new_event("auth", audit.LOGIN_FAILED, subject_id="s", detail={"reason": {"nested": "x"}})  # type: ignore[dict-item]
    long = audit.new_event("auth", audit.LOGIN_FAILED, subject_id="s", detail={"reason": "x" * 1000})
    assert len(str(long.detail["reason"])) == 200
    # Outside a request: no actor, no request id, no address.
    assert (long.actor_id, long.request_id, long.client_address) == ("", "", "")


def test_second_factor_changes_have_event_types() -> None:
    for kind in (
        audit.SECOND_FACTOR_ENABLED,
        audit.SECOND_FACTOR_DISABLED,
        audit.SECOND_FACTOR_RECOVERY_CODES_REGENERATED,
    ):
        assert audit.new_event("auth", kind, subject_id="s", detail={"method": "totp"}).type == kind


async def test_record_logs_one_line_each(log: audit.AuditStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pinexa.audit")
    await log.record(event(1_000), event(2_000, audit.LOGIN_SUCCEEDED))
    lines = [r for r in caplog.records if r.name == "pinexa.audit"]
    assert [r.audit_type for r in lines] == [audit.LOGIN_FAILED, audit.LOGIN_SUCCEEDED]  # type: ignore[attr-defined]


async def test_pages_of_two_sources_merge_without_gaps_or_repeats(tmp_path: Path) -> None:
    """Two sources with interleaved and equal times: every page size walks the same total order."""
    first, second = audit.MemoryAuditLog(), audit.MemoryAuditLog()
    times = [1000, 1000, 1000, 2000, 3000, 3000, 5000, 8000]
    for at, target in zip(times, itertools.cycle([first, second, second]), strict=False):
        await target.record(event(at, service="auth" if target is first else "users"))
    expected = sorted(first.events + second.events, key=audit.AuditEvent.sort_key, reverse=True)
    for size in (1, 2, 3, 7, 8, 50):
        walked: list[audit.AuditEvent] = []
        token = ""
        while True:
            page = await audit.list_page(
                [first, second], filter_text="", subject_id="", size=size, token=token
            )
            assert len(page.events) <= size
            walked.extend(page.events)
            token = page.next_page_token
            if not token:
                break
        assert [e.id for e in walked] == [e.id for e in expected], size


async def test_filters_and_tokens_on_every_store(log: audit.AuditStore) -> None:
    await log.record(
        event(1_000, audit.LOGIN_FAILED, "a"),
        event(2_000, audit.LOGIN_SUCCEEDED, "a"),
        event(3_000, audit.LOGIN_FAILED, "b"),
        event(4_000, audit.PASSWORD_CHANGED, "a", "users"),
    )

    async def kinds(text: str, subject: str = "") -> list[str]:
        page = await audit.list_page([log], filter_text=text, subject_id=subject, size=100, token="")
        return [f"{e.type}:{e.subject_id}" for e in page.events]

    assert await kinds("") == ["PASSWORD_CHANGED:a", "LOGIN_FAILED:b", "LOGIN_SUCCEEDED:a", "LOGIN_FAILED:a"]
    assert await kinds("type = LOGIN_FAILED") == ["LOGIN_FAILED:b", "LOGIN_FAILED:a"]
    assert await kinds('subject_id = "a" AND NOT type = "LOGIN_FAILED"') == [
        "PASSWORD_CHANGED:a",
        "LOGIN_SUCCEEDED:a",
    ]
    assert await kinds('occurred_at >= "1970-01-01T00:00:02Z" AND occurred_at < "1970-01-01T00:00:04Z"') == [
        "LOGIN_FAILED:b",
        "LOGIN_SUCCEEDED:a",
    ]
    assert await kinds("outcome = SUCCESS OR type = LOGIN_FAILED", subject="b") == ["LOGIN_FAILED:b"]
    for bad in ("password = 1", "type = NOPE", "subject_id > 'a'", "type ="):
        with pytest.raises(InvalidArgument) as raised:
            await kinds(bad)
        assert raised.value.reason == "INVALID_FILTER"
    page = await audit.list_page([log], filter_text="", subject_id="", size=1, token="")
    with pytest.raises(InvalidArgument, match="different query"):
        await audit.list_page(
            [log], filter_text="type = LOGIN_FAILED", subject_id="", size=1, token=page.next_page_token
        )
    with pytest.raises(InvalidArgument, match="different query"):
        await audit.list_page([log], filter_text="", subject_id="a", size=1, token=page.next_page_token)


async def test_retention_purges_only_older_records(log: audit.AuditStore) -> None:
    await log.record(event(1_000), event(5_000), event(9_000))
    assert await log.purge(before=5.0) == 1
    left = await log.list(audit.AuditQuery(None, "", None, 10))
    assert [e.occurred_at for e in left] == [9_000, 5_000]
    assert await log.purge(before=5.0) == 0
