"""The `UserStore` contract, one set of tests that every implementation runs (as ory/kratos's
identity/test/pool.go does for its pools): the in-memory store, the SQL store on SQLite (a temp
file) and on PostgreSQL (a throwaway database), both migrated with the service's migrations.

Each test is about the Protocol: inserts and their conflicts, reads, credentials lookups, the
page order, versioned updates, the password rehash, and the purge outbox's claim, lease and
retry schedule. A test that fails on one implementation is a bug in that implementation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from services.kit import audit, single_use, sql
from services.kit.audit import AuditEvent, AuditQuery
from services.kit.mail import OutgoingMail
from services.kit.single_use import TokenRefused
from services.users.crypto import PiiCipher
from services.users.memory import MemoryUserStore
from services.users.model import (
    PASSWORD_RESET,
    VERIFY_EMAIL,
    Conflict,
    PendingPurge,
    TotpFactor,
    UserRecord,
    UserStore,
)
from services.users.schema import mail_outbox
from services.users.server import MIGRATIONS, VERSION_TABLE
from services.users.store import SqlUserStore
from tests.conftest import migrated_engine

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
CIPHER = PiiCipher([bytes(range(32))])


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UserStore]:
    if request.param == "memory":
        yield MemoryUserStore()
        return
    async with migrated_engine(
        request.param, request, tmp_path, migrations=MIGRATIONS, version_table=VERSION_TABLE
    ) as engine:
        yield SqlUserStore(engine, CIPHER)


def account(username: str, /, *, at: datetime = T0, **overrides: Any) -> dict[str, Any]:
    """The values the domain inserts for one account."""
    return {
        "id": str(uuid.uuid4()),
        "username": username,
        "email": f"{username}@Example.com",
        "display_name": f"{username.title()} L.",
        "role": "user",
        "version": 1,
        "created_at": at,
        "updated_at": at,
        "password_hash": f"$argon2id$hash-of-{username}",
        **overrides,
    }


def record(values: dict[str, Any]) -> UserRecord:
    # The verification fields have defaults (unverified, nothing pending) that a row may leave out.
    return UserRecord(**{f.name: values[f.name] for f in dataclasses.fields(UserRecord) if f.name in values})


# ---- accounts ---------------------------------------------------------------------------------


async def test_an_insert_reads_back_as_written(store: UserStore) -> None:
    ada = account("ada")
    await store.insert(ada)
    got = await store.get(ada["id"])
    assert got == record(ada)
    assert got is not None and got.created_at.tzinfo is not None
    assert await store.get(str(uuid.uuid4())) is None


async def test_concurrent_reads_each_get_their_own_account(store: UserStore) -> None:
    """Reads at once (the SQL store makes them one statement) answer each caller as alone: its
    account, None for an unknown id, the same account twice when asked twice."""
    accounts = [account(f"user{n}") for n in range(5)]
    for values in accounts:
        await store.insert(values)
    asked = [a["id"] for a in accounts] + [str(uuid.uuid4()), accounts[2]["id"]]
    got = await asyncio.gather(*(store.get(i) for i in reversed(asked)))
    assert got == list(reversed([*(record(a) for a in accounts), None, record(accounts[2])]))


@pytest.mark.parametrize(
    ("overrides", "column"),
    [
        ({"username": "ada", "email": "other@example.com"}, "username"),
        ({"username": "other", "email": "ada@example.com"}, "email"),  # e-mail matches in any case
        ({"username": "other", "email": " ADA@EXAMPLE.COM"}, "email"),
        ({"username": "other", "email": "other@example.com", "id": "same"}, "id"),
    ],
    ids=["username", "e-mail", "e-mail in another case", "id"],
)
async def test_a_taken_unique_value_is_a_conflict_naming_it(
    store: UserStore, overrides: dict[str, Any], column: str
) -> None:
    await store.insert(account("ada", id="same"))
    with pytest.raises(Conflict) as raised:
        await store.insert(account("x", **overrides))
    assert raised.value.column == column
    assert await store.credentials_by_username("other") is None  # nothing was written


async def test_of_concurrent_inserts_of_one_name_exactly_one_wins(store: UserStore) -> None:
    results = await asyncio.gather(
        *(store.insert(account("ada", email=f"ada{i}@example.com")) for i in range(5)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, Conflict) and r.column == "username" for r in results if r is not None)


async def test_credentials_by_username_and_by_email(store: UserStore) -> None:
    ada = account("ada", role="admin")
    await store.insert(ada)
    await store.insert(account("grace"))
    for found in (
        await store.credentials_by_username("ada"),
        await store.credentials_by_email("ada@example.com"),
        await store.credentials_by_email("ADA@Example.COM"),
    ):
        assert found is not None
        assert (found.id, found.username, found.role, found.password_hash) == (
            ada["id"],
            "ada",
            "admin",
            ada["password_hash"],
        )
    assert await store.credentials_by_username("nobody") is None
    assert await store.credentials_by_email("nobody@example.com") is None


async def test_pages_are_in_created_at_then_id_order_strictly_after_the_cursor(store: UserStore) -> None:
    # Inserted out of order; three share an instant, so the id orders them.
    rows = [account(f"user{i}", at=T0 + timedelta(seconds=(i * 7) % 5)) for i in range(8)]
    for row in rows:
        await store.insert(row)
    expected = sorted((record(r) for r in rows), key=lambda r: (r.created_at, r.id))
    assert await store.list_page(after=None, limit=100) == expected
    assert await store.list_page(after=None, limit=3) == expected[:3]
    walked: list[UserRecord] = []
    after: tuple[datetime, str] | None = None
    while page := await store.list_page(after=after, limit=3):
        walked += page
        after = (page[-1].created_at, page[-1].id)
    assert walked == expected
    assert await store.list_page(after=(T0 + timedelta(days=1), ""), limit=3) == []


async def test_an_update_applies_values_and_bumps_the_version(store: UserStore) -> None:
    ada = account("ada")
    await store.insert(ada)
    later = T0 + timedelta(minutes=5)
    updated = await store.update(
        ada["id"],
        {"email": "new@example.com", "display_name": "New", "role": "admin"},
        expected_version=None,
        now=later,
    )
    assert updated is not None
    assert (updated.email, updated.display_name, updated.role, updated.version) == (
        "new@example.com",
        "New",
        "admin",
        2,
    )
    assert (updated.created_at, updated.updated_at) == (T0, later)
    assert await store.get(ada["id"]) == updated
    assert await store.credentials_by_email("NEW@example.com") is not None
    assert await store.credentials_by_email("ada@example.com") is None  # the old address is free


async def test_an_update_with_a_stale_version_or_no_row_matches_nothing(store: UserStore) -> None:
    ada = account("ada")
    await store.insert(ada)
    assert await store.update(ada["id"], {"display_name": "x"}, expected_version=2, now=T0) is None
    assert await store.update(str(uuid.uuid4()), {"display_name": "x"}, expected_version=None, now=T0) is None
    assert await store.get(ada["id"]) == record(ada)
    updated = await store.update(ada["id"], {"display_name": "x"}, expected_version=1, now=T0)
    assert updated is not None and updated.version == 2


async def test_of_concurrent_updates_of_one_version_exactly_one_wins(store: UserStore) -> None:
    ada = account("ada")
    await store.insert(ada)
    results = await asyncio.gather(
        *(store.update(ada["id"], {"display_name": str(i)}, expected_version=1, now=T0) for i in range(5))
    )
    assert sum(r is not None for r in results) == 1


async def test_an_update_to_a_taken_email_is_a_conflict_and_changes_nothing(store: UserStore) -> None:
    ada, grace = account("ada"), account("grace")
    await store.insert(ada)
    await store.insert(grace)
    with pytest.raises(Conflict) as raised:
        await store.update(ada["id"], {"email": "GRACE@example.com"}, expected_version=None, now=T0)
    assert raised.value.column == "email"
    assert await store.get(ada["id"]) == record(ada)
    # Its own address, in another case, is not taken.
    assert (
        await store.update(ada["id"], {"email": "ADA@example.com"}, expected_version=None, now=T0) is not None
    )


async def test_a_password_hash_is_replaced_only_if_unchanged_and_without_a_new_version(
    store: UserStore,
) -> None:
    ada = account("ada")
    await store.insert(ada)
    await store.replace_password_hash(ada["id"], "not the current hash", "lost")
    assert (await store.credentials_by_username("ada")).password_hash == ada["password_hash"]  # type: ignore[union-attr]
    await store.replace_password_hash(ada["id"], ada["password_hash"], "rehashed")
    assert (await store.credentials_by_username("ada")).password_hash == "rehashed"  # type: ignore[union-attr]
    assert await store.get(ada["id"]) == record(ada)


# ---- the audit trail: each record is written with its change, and only when the change is -----


_AUDIT_MS = itertools.count()


def audit_event(kind: str, subject: str) -> AuditEvent:
    """A record a millisecond after the previous one (records list newest first)."""
    return audit.new_event("users", kind, subject_id=subject, now=T0.timestamp() + next(_AUDIT_MS) / 1000)


async def recorded(store: UserStore, subject: str) -> list[str]:
    """The types of `subject`'s audit records, oldest first."""
    events = await store.audit.list(AuditQuery(None, subject, None, 100))
    return [event.type for event in reversed(events)]


async def test_audit_records_are_written_with_their_change_and_only_then(store: UserStore) -> None:
    ada, grace = account("ada"), account("grace")
    await store.insert(ada, audit_events=[audit_event(audit.ACCOUNT_CREATED, ada["id"])])
    await store.insert(grace)
    # A refused insert (the name is taken) writes no record either.
    with pytest.raises(Conflict):
        await store.insert(account("ada"), audit_events=[audit_event(audit.ACCOUNT_CREATED, "someone")])
    assert await recorded(store, "someone") == []

    role = audit_event(audit.ROLE_CHANGED, ada["id"])
    stale = audit_event(audit.ACCOUNT_UPDATED_BY_ADMIN, ada["id"])
    assert await store.update(ada["id"], {"role": "admin"}, expected_version=1, now=T0, audit_events=[role])
    assert not await store.update(
        ada["id"], {"role": "user"}, expected_version=1, now=T0, audit_events=[stale]
    )
    with pytest.raises(Conflict):  # a taken address: no change, no record
        await store.update(
            ada["id"], {"email": "grace@example.com"}, expected_version=None, now=T0, audit_events=[stale]
        )

    changed = audit_event(audit.PASSWORD_CHANGED, ada["id"])
    assert not await store.change_password_hash(
        ada["id"], "not the current hash", "new", T0, audit_events=[stale]
    )
    assert await store.change_password_hash(
        ada["id"], ada["password_hash"], "new", T0, audit_events=[changed]
    )
    disabled = audit_event(audit.ACCOUNT_DISABLED, ada["id"])
    assert await store.set_disabled(ada["id"], True, T0, audit_events=[disabled])
    assert not await store.set_disabled(str(uuid.uuid4()), True, T0, audit_events=[stale])
    gone = audit_event(audit.ACCOUNT_DELETED, ada["id"])
    assert await store.delete_with_purge(ada["id"], T0, audit_events=[gone])
    assert not await store.delete_with_purge(ada["id"], T0, audit_events=[stale])

    assert await recorded(store, ada["id"]) == [
        "ACCOUNT_CREATED",
        "ROLE_CHANGED",
        "PASSWORD_CHANGED",
        "ACCOUNT_DISABLED",
        "ACCOUNT_DELETED",
    ]
    assert await recorded(store, grace["id"]) == []


async def test_a_verified_address_is_recorded_with_whether_it_changed(store: UserStore) -> None:
    ada = account("ada")
    now = T0.timestamp()
    first = single_use.prepare(
        purpose=VERIFY_EMAIL, subject=ada["id"], ttl_seconds=60, now=now, data=ada["email"]
    )
    await store.insert(ada, token=first)
    asked: list[tuple[str, bool]] = []

    def events(user_id: str, changed: bool) -> list[AuditEvent]:
        asked.append((user_id, changed))
        kind = audit.EMAIL_CHANGED if changed else audit.EMAIL_VERIFIED
        return [audit_event(kind, user_id)]

    with pytest.raises(TokenRefused):  # a bad token: nothing recorded
        await store.verify_email("no such token", T0, audit_events=events)
    await store.verify_email(first.token, T0, audit_events=events)
    new = "new@example.com"
    change = single_use.prepare(purpose=VERIFY_EMAIL, subject=ada["id"], ttl_seconds=60, now=now, data=new)
    await store.update(ada["id"], {"pending_email": new}, expected_version=None, now=T0, token=change)
    verified = await store.verify_email(change.token, T0, audit_events=events)
    assert verified.email == new and verified.pending_email is None
    assert asked == [(ada["id"], False), (ada["id"], True)]
    assert await recorded(store, ada["id"]) == ["EMAIL_VERIFIED", "EMAIL_CHANGED"]


# ---- delete and the purge outbox --------------------------------------------------------------


async def test_a_delete_removes_the_account_and_queues_its_purge(store: UserStore) -> None:
    ada = account("ada")
    await store.insert(ada)
    assert await store.next_purge_due() is None
    assert await store.delete_with_purge(ada["id"], T0)
    assert await store.get(ada["id"]) is None
    assert await store.credentials_by_username("ada") is None
    assert await store.due_purges(T0, 10) == [PendingPurge(ada["id"], 0, T0)]
    assert await store.next_purge_due() == T0
    assert not await store.delete_with_purge(ada["id"], T0)  # gone: nothing more is queued
    assert not await store.delete_with_purge(str(uuid.uuid4()), T0)
    assert len(await store.due_purges(T0 + timedelta(days=1), 10)) == 1
    await store.insert(account("ada"))  # the name is free again


async def deleted(store: UserStore, count: int) -> list[str]:
    """`count` deleted accounts, their purges due at T0, T0 + 1 s, ..."""
    ids = []
    for i in range(count):
        row = account(f"user{i}")
        await store.insert(row)
        await store.delete_with_purge(row["id"], T0 + timedelta(seconds=i))
        ids.append(row["id"])
    return ids


async def test_due_purges_are_those_due_now_oldest_first_up_to_the_limit(store: UserStore) -> None:
    ids = await deleted(store, 4)
    assert [p.user_id for p in await store.due_purges(T0 + timedelta(seconds=2), 10)] == ids[:3]
    assert [p.user_id for p in await store.due_purges(T0 + timedelta(seconds=9), 2)] == ids[:2]
    assert await store.due_purges(T0 - timedelta(seconds=1), 10) == []
    assert await store.next_purge_due() == T0


async def test_the_purge_backlog_is_the_rows_waiting_and_the_oldest_ones_age(store: UserStore) -> None:
    assert await store.purge_backlog() == (0, None)
    ids = await deleted(store, 3)
    assert await store.purge_backlog() == (3, T0)  # what pinexa_outbox_depth / _oldest_age report
    await store.finish_purge(ids[0])
    assert await store.purge_backlog() == (2, T0 + timedelta(seconds=1))


async def test_a_claim_leases_the_row_and_only_one_of_racing_claims_wins(store: UserStore) -> None:
    (user_id,) = await deleted(store, 1)
    (due,) = await store.due_purges(T0, 10)
    lease = T0 + timedelta(seconds=15)
    results = await asyncio.gather(*(store.claim_purge(due, lease) for _ in range(5)))
    assert results.count(True) == 1
    assert await store.due_purges(T0 + timedelta(seconds=14), 10) == []
    assert await store.next_purge_due() == lease
    # The lease ran out (a replica died mid-call): due again, with the attempt counted.
    assert await store.due_purges(lease, 10) == [PendingPurge(user_id, 1, lease)]
    assert not await store.claim_purge(due, lease)  # the stale read cannot claim it again


async def test_a_reschedule_holds_only_for_the_claim_that_made_it(store: UserStore) -> None:
    (user_id,) = await deleted(store, 1)
    (due,) = await store.due_purges(T0, 10)
    assert await store.claim_purge(due, T0 + timedelta(seconds=15))
    retry_at = T0 + timedelta(seconds=2)
    await store.reschedule_purge(user_id, 1, retry_at, "UNAVAILABLE: " + "x" * 1000)
    assert await store.due_purges(retry_at, 10) == [PendingPurge(user_id, 1, retry_at)]
    await store.reschedule_purge(user_id, 0, T0, "a replica that lost its claim")  # stale: ignored
    assert await store.next_purge_due() == retry_at
    await store.finish_purge(user_id)
    assert await store.due_purges(T0 + timedelta(days=1), 10) == []
    assert await store.next_purge_due() is None
    await store.finish_purge(user_id)  # finishing twice is harmless


# ---- password reset ---------------------------------------------------------------------------


def reset_token(user_id: str, email: str, *, ttl: float = 1800.0) -> single_use.Issued:
    return single_use.prepare(
        purpose=PASSWORD_RESET, subject=user_id, ttl_seconds=ttl, now=T0.timestamp(), data=email
    )


def reset_mail(email: str) -> OutgoingMail:
    return OutgoingMail(to=email, template="password_reset", context={"token": "t"})


async def test_an_account_is_found_by_its_address_in_any_case(store: UserStore) -> None:
    ada = account("ada")
    await store.insert(ada)
    for typed in ("ada@example.com", " ADA@Example.COM"):
        assert await store.get_by_email(typed) == record(ada)
    assert await store.get_by_email("nobody@example.com") is None


async def test_a_reset_is_queued_within_the_limits_and_a_decoy_queues_no_mail(store: UserStore) -> None:
    ada = account("ada")
    await store.insert(ada)
    limits = [("address-key", 1)]
    mail = OutgoingMail(to=ada["email"], template="password_reset", context={"token": "t"})
    token = reset_token(ada["id"], ada["email"])
    assert await store.queue_password_reset(mail, token, limits=limits, window=60, now=T0) == 0.0
    later = T0 + timedelta(seconds=15)
    wait = await store.queue_password_reset(
        mail, reset_token(ada["id"], ada["email"]), limits=limits, window=60, now=later
    )
    assert wait == pytest.approx(45)
    assert (await store.peek_password_reset(token.token, T0)).id == ada[
        "id"
    ]  # the refused one stored nothing
    # A decoy (no mail) takes its counters and keeps nothing: its token redeems nothing.
    decoy = reset_token("-", "nobody@example.com")
    assert await store.queue_password_reset(None, decoy, limits=[("other", 1)], window=60, now=T0) == 0.0
    assert await store.queue_password_reset(None, decoy, limits=[("other", 1)], window=60, now=T0) > 0
    with pytest.raises(TokenRefused) as refused:
        await store.peek_password_reset(decoy.token, T0)
    assert refused.value.reason == "MAIL_TOKEN_INVALID"


async def test_a_reset_spends_the_token_sets_the_hash_and_verifies_the_address(store: UserStore) -> None:
    ada = account("ada")
    await store.insert(ada)
    token = reset_token(ada["id"], ada["email"])
    await store.queue_password_reset(reset_mail(ada["email"]), token, limits=[], window=60, now=T0)
    later = T0 + timedelta(seconds=30)
    peeked = await store.peek_password_reset(token.token, later)
    assert peeked == record(ada)  # peeking spends nothing
    notice = OutgoingMail(to=ada["email"], template="password_changed")
    updated = await store.reset_password(token.token, "$argon2id$new", later, [notice])
    assert (updated.id, updated.email_verified, updated.email_verified_at, updated.version) == (
        ada["id"],
        True,
        later,
        2,
    )
    credentials = await store.credentials_by_id(ada["id"])
    assert credentials is not None and credentials.password_hash == "$argon2id$new"
    for call in (
        store.peek_password_reset(token.token, later),
        store.reset_password(token.token, "x", later),
    ):
        with pytest.raises(TokenRefused) as refused:
            await call
        assert refused.value.reason == "MAIL_TOKEN_USED"


async def test_a_reset_keeps_an_earlier_verification_time(store: UserStore) -> None:
    ada = account("ada", email_verified=True, email_verified_at=T0)
    await store.insert(ada)
    token = reset_token(ada["id"], ada["email"])
    await store.queue_password_reset(reset_mail(ada["email"]), token, limits=[], window=60, now=T0)
    updated = await store.reset_password(token.token, "$argon2id$new", T0 + timedelta(seconds=5))
    assert (updated.email_verified, updated.email_verified_at) == (True, T0)


@pytest.mark.parametrize("case", ["superseded", "password changed", "expired", "address moved", "unknown"])
async def test_a_dead_reset_token_is_refused_saying_why_and_changes_nothing(
    store: UserStore, case: str
) -> None:
    ada = account("ada")
    await store.insert(ada)
    token = reset_token(ada["id"], ada["email"], ttl=60)
    await store.queue_password_reset(reset_mail(ada["email"]), token, limits=[], window=60, now=T0)
    now, reason = T0 + timedelta(seconds=1), "MAIL_TOKEN_SUPERSEDED"
    presented = token.token
    if case == "superseded":
        await store.queue_password_reset(
            None, reset_token(ada["id"], ada["email"]), limits=[], window=60, now=T0
        )
    elif case == "password changed":
        assert await store.change_password_hash(ada["id"], ada["password_hash"], "$argon2id$changed", now)
    elif case == "expired":
        now, reason = T0 + timedelta(seconds=60), "MAIL_TOKEN_EXPIRED"
    elif case == "address moved":
        await store.update(ada["id"], {"email": "ada.new@example.com"}, expected_version=None, now=now)
    else:
        presented, reason = "no-such-token", "MAIL_TOKEN_INVALID"
    before = await store.credentials_by_id(ada["id"])
    for call in (
        store.peek_password_reset(presented, now),
        store.reset_password(presented, "$argon2id$x", now),
    ):
        with pytest.raises(TokenRefused) as refused:
            await call
        assert refused.value.reason == reason
    assert await store.credentials_by_id(ada["id"]) == before


async def test_of_concurrent_resets_with_one_token_exactly_one_wins(store: UserStore) -> None:
    ada = account("ada")
    await store.insert(ada)
    token = reset_token(ada["id"], ada["email"])
    await store.queue_password_reset(reset_mail(ada["email"]), token, limits=[], window=60, now=T0)
    results = await asyncio.gather(
        *(store.reset_password(token.token, f"$argon2id$h{i}", T0) for i in range(5)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, UserRecord)]
    assert len(winners) == 1, results
    assert all(
        isinstance(r, TokenRefused) and r.reason == "MAIL_TOKEN_USED" for r in results if r not in winners
    )
    credentials = await store.credentials_by_id(ada["id"])
    assert credentials is not None and credentials.password_hash == f"$argon2id$h{results.index(winners[0])}"


# ---- the TOTP second factor (issue 13) ---------------------------------------------------------


async def queued(store: UserStore) -> list[str]:
    """The templates of the mail `store` queued, oldest first (the memory store's list, the SQL
    store's outbox rows)."""
    if isinstance(store, MemoryUserStore):
        return [m.template for m in store.mail]
    assert isinstance(store, SqlUserStore)
    async with sql.read_engine(store._engine).connect() as connection:
        rows = await connection.execute(sa.select(mail_outbox.c.template).order_by(mail_outbox.c.created_at))
        return [row.template for row in rows]


def notice(template: str) -> list[OutgoingMail]:
    return [OutgoingMail("ada@example.com", template, {"username": "ada"})]


async def with_factor(store: UserStore, *, codes: tuple[str, ...] = ("h1", "h2")) -> str:
    """An account with an active factor (step 100 used) and these recovery code hashes."""
    ada = account("ada")
    await store.insert(ada)
    assert await store.save_pending_totp(ada["id"], "SECRET", T0)
    assert await store.activate_totp(ada["id"], T0, 100, list(codes), T0 + timedelta(seconds=5))
    return str(ada["id"])


async def test_an_enrolment_is_pending_until_activated_and_replaced_while_pending(store: UserStore) -> None:
    ada = account("ada")
    await store.insert(ada)
    assert await store.totp_factor(ada["id"]) is None
    assert not await store.save_pending_totp(str(uuid.uuid4()), "S", T0)  # no such account
    assert await store.save_pending_totp(ada["id"], "FIRST", T0)
    later = T0 + timedelta(seconds=1)
    assert await store.save_pending_totp(ada["id"], "SECOND", later)
    assert await store.totp_factor(ada["id"]) == TotpFactor(ada["id"], "SECOND", False, 0, later)
    # The first enrolment's activation no longer matches: nothing changes, nothing is queued.
    assert not await store.activate_totp(ada["id"], T0, 7, ["h"], later, notice("totp_enabled"))
    assert await queued(store) == []
    assert await store.activate_totp(ada["id"], later, 7, ["h1", "h2"], later, notice("totp_enabled"))
    assert await queued(store) == ["totp_enabled"]
    assert await store.totp_factor(ada["id"]) == TotpFactor(ada["id"], "SECOND", True, 7, later)
    assert await store.recovery_codes_left(ada["id"]) == 2
    assert not await store.save_pending_totp(ada["id"], "THIRD", later)  # active: remove it first
    assert not await store.activate_totp(ada["id"], later, 8, [], later)


async def test_each_step_is_accepted_once_and_only_forward(store: UserStore) -> None:
    user_id = await with_factor(store)
    assert not await store.use_totp_step(user_id, 100)  # the activation's step: a replay
    assert not await store.use_totp_step(user_id, 99)
    assert await store.use_totp_step(user_id, 101)
    assert not await store.use_totp_step(user_id, 101)
    assert not await store.use_totp_step(str(uuid.uuid4()), 500)
    results = await asyncio.gather(*(store.use_totp_step(user_id, 102) for _ in range(5)))
    assert sorted(results) == [False] * 4 + [True]
    factor = await store.totp_factor(user_id)
    assert factor is not None and factor.last_step == 102


async def test_a_recovery_code_is_spent_once_with_its_notice(store: UserStore) -> None:
    user_id = await with_factor(store)
    assert not await store.use_recovery_code(user_id, "nope", notice("recovery_code_used"))
    assert await queued(store) == []
    spent = await asyncio.gather(
        *(store.use_recovery_code(user_id, "h1", notice("recovery_code_used")) for _ in range(4))
    )
    assert sorted(spent) == [False] * 3 + [True]
    assert await queued(store) == ["recovery_code_used"]  # once, with the spend that won
    assert await store.recovery_codes_left(user_id) == 1
    assert await store.replace_recovery_codes(user_id, ["n1", "n2", "n3"])
    assert not await store.use_recovery_code(user_id, "h2")  # replaced
    assert await store.recovery_codes_left(user_id) == 3
    assert not await store.replace_recovery_codes(str(uuid.uuid4()), ["x"])


async def test_removing_a_factor_queues_its_notice_only_when_it_was_active(store: UserStore) -> None:
    user_id = await with_factor(store)
    assert await store.delete_totp(user_id, active_mail=notice("totp_disabled"))
    assert await store.totp_factor(user_id) is None
    assert await store.recovery_codes_left(user_id) == 0
    assert not await store.delete_totp(user_id, active_mail=notice("totp_disabled"))
    assert await store.save_pending_totp(user_id, "PENDING", T0)
    assert await store.delete_totp(user_id, active_mail=notice("totp_disabled"))  # pending: no news
    assert await queued(store) == ["totp_disabled"]
    assert not await store.replace_recovery_codes(user_id, ["x"])  # no active factor


async def test_deleting_the_account_removes_its_factor(store: UserStore) -> None:
    user_id = await with_factor(store)
    assert await store.delete_with_purge(user_id, T0)
    assert await store.totp_factor(user_id) is None
    assert await store.recovery_codes_left(user_id) == 0


async def test_a_reset_s_audit_records_come_with_its_token_and_with_its_use_only(store: UserStore) -> None:
    ada = account("ada")
    await store.insert(ada)
    limits = [("address-key", 1)]
    mail = OutgoingMail(to=ada["email"], template="password_reset", context={"token": "t"})
    token = reset_token(ada["id"], ada["email"])
    asked = audit_event(audit.PASSWORD_RESET_REQUESTED, ada["id"])
    assert (
        await store.queue_password_reset(mail, token, limits=limits, window=60, now=T0, audit_events=[asked])
        == 0
    )
    # Over the limit: nothing stored, no record either.
    refused = audit_event(audit.PASSWORD_RESET_REQUESTED, ada["id"])
    again = reset_token(ada["id"], ada["email"])
    assert (
        await store.queue_password_reset(
            None, again, limits=limits, window=60, now=T0, audit_events=[refused]
        )
        > 0
    )
    done = audit_event(audit.PASSWORD_RESET, ada["id"])
    await store.reset_password(token.token, "$argon2id$new", T0, audit_events=[done])
    with pytest.raises(TokenRefused):  # spent: no second record
        await store.reset_password(
            token.token, "x", T0, audit_events=[audit_event(audit.PASSWORD_RESET, ada["id"])]
        )
    assert await recorded(store, ada["id"]) == ["PASSWORD_RESET_REQUESTED", "PASSWORD_RESET"]
