"""The `AuthStore` contract, one set of tests that every implementation runs (as ory/kratos's
identity/test/pool.go does for its pools): the in-memory store, the SQL store on SQLite (a temp
file) and on PostgreSQL (a throwaway database), both migrated with the service's migrations.

Each test is about the Protocol: sessions and the atomic spend of a refresh token, the grace
spend, revocation, the failed-login counters (also under concurrency), device tokens and
purging. A test that fails on one implementation is a bug in that implementation. What only the
SQL store has (its migrations, its locking) is in test_store.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.auth.domain import AuthPolicy
from services.auth.memory import MemoryAuthStore
from services.auth.model import AuthStore, MfaChallenge, ThrottleKey
from services.auth.server import MIGRATIONS, VERSION_TABLE
from services.auth.store import SqlAuthStore
from tests.conftest import migrated_engine


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AuthStore]:
    if request.param == "memory":
        yield MemoryAuthStore()
        return
    async with migrated_engine(
        request.param, request, tmp_path, migrations=MIGRATIONS, version_table=VERSION_TABLE
    ) as engine:
        yield SqlAuthStore(engine)


async def new_session(store: AuthStore, now: float, ttl: float = 3600) -> tuple[str, str]:
    session_id, token_hash = str(uuid.uuid4()), uuid.uuid4().hex * 2
    await store.create_session(
        session_id=session_id, user_id="u1", token_hash=token_hash, now=now, expires_at=now + ttl
    )
    return session_id, token_hash


async def rotate(
    store: AuthStore, session_id: str, token_hash: str, new_hash: str, *, now: float, grace: float = 10
) -> int | None:
    return await store.rotate(
        token_hash=token_hash,
        session_id=session_id,
        new_hash=new_hash,
        now=now,
        grace_since=now - grace,
        expires_at=now + 60,
    )


@pytest.mark.parametrize("repeats", [False, True], ids=["no-window", "window"])
async def test_exactly_one_of_many_simultaneous_spends_is_the_first(store: AuthStore, repeats: bool) -> None:
    now = time.time()
    session_id, token_hash = await new_session(store, now)
    # grace=-1 puts the window's start after the first spend: no repeat can be honoured.
    grace = 10.0 if repeats else -1.0
    results = await asyncio.gather(
        *(rotate(store, session_id, token_hash, f"{i:064d}", now=now, grace=grace) for i in range(10))
    )
    if repeats:
        # One first spend; the others are repeats, serialized on the row: 1, 2, ... 9.
        assert sorted(r for r in results if r is not None) == list(range(10))
    else:
        assert results.count(0) == 1 and results.count(None) == 9
    record = await store.find_token(token_hash)
    assert record is not None and record.spent_at == pytest.approx(now)


async def test_a_repeat_spend_only_within_the_window(store: AuthStore) -> None:
    now = time.time()
    session_id, token_hash = await new_session(store, now)
    assert await rotate(store, session_id, token_hash, "b" * 64, now=now) == 0  # the first spend
    assert await rotate(store, session_id, token_hash, "c" * 64, now=now + 5) == 1
    assert await rotate(store, session_id, token_hash, "d" * 64, now=now + 11) is None
    record = await store.find_token(token_hash)
    assert record is not None and record.spent_at == pytest.approx(now)  # repeats don't move it
    for child in ("b" * 64, "c" * 64):
        record = await store.find_token(child)
        assert record is not None and record.session_id == session_id and record.spent_at is None
    assert await store.find_token("d" * 64) is None


async def test_a_revoked_or_expired_family_cannot_be_spent(store: AuthStore) -> None:
    now = time.time()
    session_id, token_hash = await new_session(store, now)
    assert await store.revoke_session(session_id, now=now, reason="logout", keep_until=now + 960) == 1
    assert await store.revoke_session(session_id, now=now, reason="logout", keep_until=now + 960) == 0
    assert await store.session_revoked_reason(session_id) == "logout"
    assert await rotate(store, session_id, token_hash, "e" * 64, now=now) is None
    session_id, token_hash = await new_session(store, now, ttl=10)
    assert await rotate(store, session_id, token_hash, "f" * 64, now=now + 11) is None


async def test_a_revoked_family_is_not_revived_within_the_grace_window(store: AuthStore) -> None:
    """Reuse detected (or logout) right after a spend: a repeat of that token, still inside the
    grace window, must not add a live branch to the revoked family."""
    now = time.time()
    session_id, token_hash = await new_session(store, now)
    assert await rotate(store, session_id, token_hash, "g" * 64, now=now) == 0
    await store.revoke_session(session_id, now=now + 1, reason="token_reuse", keep_until=now + 960)
    assert await rotate(store, session_id, token_hash, "h" * 64, now=now + 2) is None
    assert await rotate(store, session_id, "g" * 64, "i" * 64, now=now + 2) is None
    assert await store.find_token("h" * 64) is None and await store.find_token("i" * 64) is None


async def test_revoke_every_session_of_a_user(store: AuthStore) -> None:
    now = time.time()
    for _ in range(3):
        await new_session(store, now)
    assert await store.revoke_user_sessions("u1", now=now, reason="logout_all", keep_until=now + 960) == 3
    assert await store.revoke_user_sessions("u1", now=now, reason="logout_all", keep_until=now + 960) == 0


POLICY = AuthPolicy(max_failures=5, backoff_base=1.0, backoff_max=900.0)


async def test_simultaneous_attempts_are_charged_before_they_are_checked(store: AuthStore) -> None:
    now = time.time()
    keys = [ThrottleKey("k" * 64, 5)]
    claims = await asyncio.gather(
        *(
            store.claim_attempt(keys, now=now, forget_before=now - 3600, backoff=POLICY.backoff)
            for _ in range(25)
        )
    )
    allowed = [c for c in claims if not c.retry_after]
    # The 5th charge sets a back-off, so no more than 5 attempts ever reach a password check.
    assert len(allowed) == 5
    assert sorted(c.charges[0].failures for c in allowed) == [1, 2, 3, 4, 5]
    assert all(0 < c.retry_after <= 1.0 for c in claims if c.retry_after)
    assert await store.throttle_state("k" * 64) == (5, pytest.approx(now + 1.0))


async def test_a_refund_restores_the_counter_and_the_back_off(store: AuthStore) -> None:
    now = time.time()
    keys = [ThrottleKey("a" * 64, 2), ThrottleKey("b" * 64, 100)]
    first = await store.claim_attempt(keys, now=now, forget_before=now - 3600, backoff=POLICY.backoff)
    second = await store.claim_attempt(keys, now=now, forget_before=now - 3600, backoff=POLICY.backoff)
    assert await store.throttle_state("a" * 64) == (2, pytest.approx(now + 1.0))
    # The second attempt turned out not to be a wrong guess (e.g. users was down): undo it.
    await store.settle(second)
    assert await store.throttle_state("a" * 64) == (1, 0.0)
    assert await store.throttle_state("b" * 64) == (1, 0.0)
    # A success resets its account's counter and refunds the IP's charge.
    await store.settle(first, reset=["a" * 64])
    assert await store.throttle_state("a" * 64) == (0, 0.0)
    assert await store.throttle_state("b" * 64) == (0, 0.0)


async def test_a_blocked_key_charges_nothing(store: AuthStore) -> None:
    now = time.time()
    account, ip = ThrottleKey("a" * 64, 1), ThrottleKey("b" * 64, 100)
    await store.claim_attempt([account], now=now, forget_before=now - 3600, backoff=POLICY.backoff)
    claim = await store.claim_attempt(
        [account, ip], now=now, forget_before=now - 3600, backoff=POLICY.backoff
    )
    assert claim.retry_after == pytest.approx(1.0) and not claim.charges
    assert await store.throttle_state("b" * 64) is None  # the whole claim was rolled back


async def test_a_claim_racing_a_back_off_still_charges_nothing(store: AuthStore) -> None:
    """The read is only a shortcut: an attempt that read 'not blocked' and then finds the key
    blocked by a concurrent attempt is still refused by the conditional upsert. 30 attempts at a
    key one failure from its threshold, all started together: exactly one is charged."""
    now = time.time()
    key = [ThrottleKey("c" * 64, 5)]
    for _ in range(4):
        await store.claim_attempt(key, now=now, forget_before=now - 3600, backoff=POLICY.backoff)
    claims = await asyncio.gather(
        *(
            store.claim_attempt(key, now=now, forget_before=now - 3600, backoff=POLICY.backoff)
            for _ in range(30)
        )
    )
    assert len([c for c in claims if c.charges]) == 1
    assert await store.throttle_state("c" * 64) == (5, pytest.approx(now + 1.0))


async def test_old_failures_are_forgotten(store: AuthStore) -> None:
    now = time.time()
    key = [ThrottleKey("a" * 64, 5)]
    for _ in range(4):
        await store.claim_attempt(key, now=now, forget_before=now - 3600, backoff=POLICY.backoff)
    later = now + 7200
    claim = await store.claim_attempt(key, now=later, forget_before=later - 3600, backoff=POLICY.backoff)
    assert claim.charges[0].failures == 1


async def test_purge_removes_only_what_is_long_gone(store: AuthStore) -> None:
    now = time.time()
    old_session, old_token = await new_session(store, now - 100 * 86400, ttl=86400)
    live_session, live_token = await new_session(store, now)
    stale, fresh = ThrottleKey("a" * 64, 5), ThrottleKey("b" * 64, 5)
    await store.claim_attempt([stale], now=now - 2 * 86400, forget_before=0, backoff=POLICY.backoff)
    await store.claim_attempt([fresh], now=now, forget_before=0, backoff=POLICY.backoff)
    removed = await store.purge(now=now, tokens_expired_before=now - 7 * 86400, failures_before=now - 86400)
    assert removed == 3  # the old token, its now-empty session, the stale counter
    assert await store.find_token(old_token) is None
    assert await store.find_token(live_token) is not None
    assert await store.throttle_state("a" * 64) is None
    assert await store.throttle_state("b" * 64) is not None
    del old_session, live_session


async def new_device(store: AuthStore, now: float, *, user_id: str = "u1", ttl: float = 3600) -> str:
    token_hash = uuid.uuid4().hex * 2
    await store.create_device(
        token_hash=token_hash, user_id=user_id, login_key="n" * 64, now=now, expires_at=now + ttl
    )
    return token_hash


async def test_of_many_simultaneous_device_claims_at_most_max_failures_are_charged(store: AuthStore) -> None:
    now = time.time()
    device = await new_device(store, now)
    claims = await asyncio.gather(
        *(store.claim_device(device, login_key="n" * 64, now=now, max_failures=5) for _ in range(25))
    )
    charged = [c for c in claims if c is not None]
    assert sorted(c.failures for c in charged) == [1, 2, 3, 4, 5]
    assert all(c.user_id == "u1" for c in charged)
    # A refund gives one back; a renewal (a success) clears them all.
    await store.refund_device(device)
    assert (await store.device_state(device)).failures == 4  # type: ignore[union-attr]
    assert await store.renew_device(device, now=now, expires_at=now + 7200)
    state = await store.device_state(device)
    assert state is not None and state.failures == 0 and state.expires_at == pytest.approx(now + 7200)


async def test_a_device_token_is_claimed_only_for_its_name_unexpired_and_unlocked(store: AuthStore) -> None:
    now = time.time()
    device = await new_device(store, now, ttl=60)
    assert await store.claim_device(device, login_key="o" * 64, now=now, max_failures=5) is None
    assert await store.claim_device(device, login_key="n" * 64, now=now + 61, max_failures=5) is None
    assert await store.claim_device("f" * 64, login_key="n" * 64, now=now, max_failures=5) is None
    await store.lock_device(device, now=now)
    assert await store.claim_device(device, login_key="n" * 64, now=now, max_failures=5) is None
    assert not await store.renew_device(device, now=now, expires_at=now + 60)  # locked stays locked


async def test_device_tokens_of_a_user_are_deleted_and_expired_ones_purged(store: AuthStore) -> None:
    now = time.time()
    mine = [await new_device(store, now) for _ in range(2)]
    other = await new_device(store, now, user_id="u2")
    expired = await new_device(store, now - 100, user_id="u3", ttl=10)
    assert await store.delete_user_devices("u1") == 2
    assert [await store.device_state(d) for d in mine] == [None, None]
    assert await store.purge(now=now, tokens_expired_before=now - 7 * 86400, failures_before=now - 86400) == 1
    assert await store.device_state(expired) is None
    assert await store.device_state(other) is not None


async def test_a_token_reads_back_with_its_session(store: AuthStore) -> None:
    now = time.time()
    session_id, token_hash = await new_session(store, now, ttl=60)
    record = await store.find_token(token_hash)
    assert record is not None
    assert (record.token_hash, record.session_id, record.user_id) == (token_hash, session_id, "u1")
    assert record.expires_at == pytest.approx(now + 60)
    assert record.spent_at is None and record.session_revoked_at is None
    assert await store.find_token("0" * 64) is None
    assert await store.session_revoked_reason(session_id) is None
    assert await store.session_revoked_reason(str(uuid.uuid4())) is None


async def test_a_revoked_session_keeps_its_first_time_and_reason(store: AuthStore) -> None:
    now = time.time()
    session_id, token_hash = await new_session(store, now)
    assert await store.revoke_session(session_id, now=now, reason="token_reuse", keep_until=now + 960) == 1
    assert await store.revoke_user_sessions("u1", now=now + 5, reason="logout_all", keep_until=now + 960) == 0
    assert await store.session_revoked_reason(session_id) == "token_reuse"
    record = await store.find_token(token_hash)
    assert record is not None and record.session_revoked_at == pytest.approx(now)
    assert await store.revoke_session(str(uuid.uuid4()), now=now, reason="logout", keep_until=now + 960) == 0


async def test_blocked_until_is_the_latest_back_off_among_the_keys(store: AuthStore) -> None:
    now = time.time()
    short, long, none = ThrottleKey("a" * 64, 1), ThrottleKey("b" * 64, 1), ThrottleKey("c" * 64, 1)
    assert await store.blocked_until([short, long, none]) == 0.0
    await store.claim_attempt([short], now=now, forget_before=0, backoff=lambda f, t: 1.0)
    await store.claim_attempt([long], now=now, forget_before=0, backoff=lambda f, t: 30.0)
    assert await store.blocked_until([short, none]) == pytest.approx(now + 1)
    assert await store.blocked_until([short, long, none]) == pytest.approx(now + 30)


async def test_a_device_token_is_bound_to_its_account_and_can_be_deleted(store: AuthStore) -> None:
    now = time.time()
    device = await new_device(store, now, user_id="u7", ttl=60)
    state = await store.device_state(device)
    assert state is not None and (state.user_id, state.failures, state.locked_at) == ("u7", 0, None)
    assert state.expires_at == pytest.approx(now + 60)
    claim = await store.claim_device(device, login_key="n" * 64, now=now, max_failures=5)
    assert claim is not None and (claim.token_hash, claim.user_id, claim.failures) == (device, "u7", 1)
    await store.lock_device(device, now=now + 1)
    await store.lock_device(device, now=now + 2)  # locked once: the first time stays
    state = await store.device_state(device)
    assert state is not None and state.locked_at == pytest.approx(now + 1)
    await store.delete_device(device)
    assert await store.device_state(device) is None
    await store.delete_device(device)  # deleting twice is harmless
    assert await store.delete_user_devices("u7") == 0


async def test_revocations_are_logged_in_order_with_a_cursor_and_purged_once_irrelevant(
    store: AuthStore,
) -> None:
    now = time.time()
    assert await store.last_revocation_cursor() == 0
    sessions = [(await new_session(store, now))[0] for _ in range(3)]
    await store.revoke_session(sessions[0], now=now, reason="logout", keep_until=now + 100)
    kept = sessions[2]
    assert (
        await store.revoke_user_sessions(
            "u1", now=now, reason="logout_others", keep_until=now + 100, except_session=kept
        )
        == 1
    )
    log = await store.revocations_since(after=0, logged_since=now + 1, now=now)
    assert [r.session_id for r in log] == sessions[:2]
    assert log[0].cursor < log[1].cursor == await store.last_revocation_cursor()
    assert log[0].expires_at == now + 100
    # Resuming after the first: only the second, unless it is within the late-commit window.
    assert [
        r.session_id
        for r in await store.revocations_since(after=log[0].cursor, logged_since=now + 1, now=now)
    ] == [sessions[1]]
    assert len(await store.revocations_since(after=log[1].cursor, logged_since=now, now=now)) == 2
    assert await store.revocations_since(after=log[1].cursor, logged_since=now + 1, now=now) == []
    # Expired entries are not sent, and purged, except the newest (it holds the cursor).
    assert await store.revocations_since(after=0, logged_since=now + 1, now=now + 101) == []
    await store.purge(now=now + 101, tokens_expired_before=now - 7 * 86400, failures_before=now - 86400)
    assert await store.last_revocation_cursor() == log[1].cursor
    assert [s.session_id for s in await store.list_sessions("u1", now=now)] == [kept]
    assert await store.session_owner(kept) == "u1" and await store.session_owner(sessions[0]) is None


# ---- the second step of a login (issue 13) -----------------------------------------------------


def challenge(now: float, *, ttl: float = 300, user_id: str = "u1") -> MfaChallenge:
    return MfaChallenge(
        token_hash=uuid.uuid4().hex * 2,
        user_id=user_id,
        login_key="k" * 64,
        user_agent="curl/8",
        client_address="203.0.113.7",
        expires_at=now + ttl,
    )


async def test_an_mfa_challenge_reads_back_until_spent_or_expired(store: AuthStore) -> None:
    now = time.time()
    live, expired = challenge(now), challenge(now, ttl=-1)
    await store.create_mfa_challenge(live, now=now)
    await store.create_mfa_challenge(expired, now=now)
    assert await store.find_mfa_challenge(live.token_hash, now=now) == live
    assert await store.find_mfa_challenge(expired.token_hash, now=now) is None
    assert await store.find_mfa_challenge("f" * 64, now=now) is None
    assert not await store.spend_mfa_challenge(expired.token_hash, now=now)
    assert await store.find_mfa_challenge(live.token_hash, now=now + 301) is None  # past its ttl
    assert await store.spend_mfa_challenge(live.token_hash, now=now)
    assert await store.find_mfa_challenge(live.token_hash, now=now) is None
    assert not await store.spend_mfa_challenge(live.token_hash, now=now)


async def test_of_simultaneous_spends_of_one_mfa_challenge_exactly_one_wins(store: AuthStore) -> None:
    now = time.time()
    it = challenge(now)
    await store.create_mfa_challenge(it, now=now)
    spent = await asyncio.gather(*(store.spend_mfa_challenge(it.token_hash, now=now) for _ in range(8)))
    assert sorted(spent) == [False] * 7 + [True]


async def test_reauthentication_renews_only_a_live_session_of_its_user(store: AuthStore) -> None:
    now = time.time()
    session_id, token_hash = await new_session(store, now - 1000)
    before = await store.find_token(token_hash)
    assert before is not None and (before.amr, before.auth_time) == ("pwd", now - 1000)
    assert not await store.reauthenticate_session(session_id, "someone-else", now=now)
    assert not await store.reauthenticate_session(str(uuid.uuid4()), "u1", now=now)
    assert await store.reauthenticate_session(session_id, "u1", now=now)
    after = await store.find_token(token_hash)
    assert after is not None and (after.amr, after.auth_time) == ("pwd otp", now)
    assert await store.session_auth(session_id) == ("pwd otp", now)
    await store.revoke_user_sessions("u1", now=now, reason="logout_all", keep_until=now + 960)
    assert not await store.reauthenticate_session(session_id, "u1", now=now + 1)
    assert await store.session_auth(session_id) is None


async def test_purge_removes_expired_mfa_challenges(store: AuthStore) -> None:
    now = time.time()
    old, live = challenge(now - 1000), challenge(now)
    await store.create_mfa_challenge(old, now=now - 1000)
    await store.create_mfa_challenge(live, now=now)
    assert await store.purge(now=now, tokens_expired_before=now - 86400, failures_before=now - 86400) == 1
    assert await store.find_mfa_challenge(live.token_hash, now=now) == live
