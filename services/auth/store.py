"""Auth's only database access: sessions, refresh tokens and failed-login counters.

SQLAlchemy Core on one pooled async engine; the same statements run on SQLite and PostgreSQL.
Times are UNIX seconds (floats) from the domain's clock, so tests can move time.

- A *session* is one login: the family of refresh tokens that descend from it. Revoking a family
  is one row update (`revoked_at`), which every later refresh checks.
- A *refresh token* is stored only as the SHA-256 of its text. The tokens are 256 random bits, so a
  fast hash is enough (nothing to brute-force) and the lookup by hash is an index probe; the
  plaintext never touches the database, logs or errors.
- A *throttle* row counts failed logins for one key: an account (its user id), a login name no
  account has (normalized), or a client IP. The key is stored as its SHA-256, so the table shows
  neither usernames people mistyped (sometimes a password typed into the wrong field) nor client
  addresses in plain text. The hash is unkeyed: it keeps them out of sight, not out of reach of
  someone with the table and a guess (an IPv4 address is one of 2^32).
- A *device token* proves that a client logged in to an account before (OWASP's device cookie).
  Like a refresh token it is 256 random bits stored only as its SHA-256 and looked up by that
  hash, so no comparison ever touches the plaintext. Its row is bound to the account (user id)
  and to the login name it was issued for (hashed like a throttle key), and
  carries its own failure count: logins presenting it are throttled on that row, apart from the
  strangers' per-account counter. At `max_failures` consecutive failures it is locked for good.

Races are settled by the database with conditional updates (a refresh token's spend, upserts
with a `WHERE` on the conflict branch) and their row counts, never by read-then-write in Python
(a login claim reads first only to skip writing when it is refused anyway; see `claim_attempt`).
Each write transaction starts with its write, so SQLite takes its write lock at once (waiting up to
busy_timeout) instead of failing to upgrade a read snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from services.auth.model import (
    Charge,
    Claim,
    DeviceClaim,
    DeviceRecord,
    MfaChallenge,
    RevocationRecord,
    SessionRecord,
    ThrottleKey,
    TokenRecord,
)
from services.auth.schema import (
    device_tokens,
    login_throttle,
    mfa_challenges,
    refresh_tokens,
    revocations,
    sessions,
)
from services.kit import sql
from services.kit.db import Database

# The statements of every login and refresh, built once (with bind parameters) so each call only
# looks up its compiled form; the rest are built per call and found by SQLAlchemy's cache key.
_INSERT_TOKEN = sa.insert(refresh_tokens)
_FIND_TOKEN = (
    sa.select(
        refresh_tokens.c.token_hash,
        refresh_tokens.c.session_id,
        sessions.c.user_id,
        refresh_tokens.c.expires_at,
        refresh_tokens.c.spent_at,
        sessions.c.revoked_at,
        sessions.c.amr,
        sessions.c.auth_time,
        sessions.c.created_at,
    )
    .join(sessions, sessions.c.id == refresh_tokens.c.session_id)
    .where(refresh_tokens.c.token_hash == sa.bindparam("token_hash"))
)
_FIRST_SPEND = refresh_tokens.c.spent_at.is_(None)
_SPEND_TOKEN = (
    sa.update(refresh_tokens)
    .where(
        refresh_tokens.c.token_hash == sa.bindparam("b_token_hash"),
        refresh_tokens.c.expires_at > sa.bindparam("b_now"),
        sa.or_(_FIRST_SPEND, refresh_tokens.c.spent_at >= sa.bindparam("b_grace_since")),
        sa.exists().where(sessions.c.id == sa.bindparam("b_session_id"), sessions.c.revoked_at.is_(None)),
    )
    # SET expressions read the row as it was before this update.
    .values(
        spent_at=sa.func.coalesce(refresh_tokens.c.spent_at, sa.bindparam("b_now")),
        grace_uses=refresh_tokens.c.grace_uses + sa.case((_FIRST_SPEND, 0), else_=1),
    )
    .returning(refresh_tokens.c.grace_uses)
)


class _Blocked(Exception):
    """Internal: rolls back a claim transaction when one counter is in back-off."""


class SqlAuthStore:
    """Reads and writes auth's tables (schema.py): the `model.AuthStore` on SQL."""

    def __init__(self, engine: Database) -> None:
        self._engine = engine
        self._reads = sql.read_engine(engine)  # single-statement reads, no transaction around them
        self._dialect = engine.dialect.name

    async def close(self) -> None:
        await self._engine.dispose()

    # ---- sessions and refresh tokens ---------------------------------------------------------

    async def create_session(
        self,
        *,
        session_id: str,
        user_id: str,
        token_hash: str,
        now: float,
        expires_at: float,
        user_agent: str = "",
        client_address: str = "",
        amr: str = "pwd",
    ) -> None:
        """A new login: its session and the first refresh token of the family."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.insert(sessions).values(
                    id=session_id,
                    user_id=user_id,
                    created_at=now,
                    last_used_at=now,
                    user_agent=user_agent,
                    client_address=client_address,
                    amr=amr,
                    auth_time=now,
                )
            )
            await conn.execute(
                _INSERT_TOKEN,
                {
                    "token_hash": token_hash,
                    "session_id": session_id,
                    "created_at": now,
                    "expires_at": expires_at,
                },
            )

    async def find_token(self, token_hash: str) -> TokenRecord | None:
        async with self._reads.connect() as conn:
            row = (await conn.execute(_FIND_TOKEN, {"token_hash": token_hash})).first()
        if row is None:
            return None
        return TokenRecord(
            token_hash=row.token_hash,
            session_id=row.session_id,
            user_id=row.user_id,
            expires_at=row.expires_at,
            spent_at=row.spent_at,
            session_revoked_at=row.revoked_at,
            amr=row.amr,
            auth_time=row.created_at if row.auth_time is None else row.auth_time,
        )

    async def reauthenticate_session(self, session_id: str, user_id: str, *, now: float) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(sessions)
                .where(
                    sessions.c.id == session_id,
                    sessions.c.user_id == user_id,
                    sessions.c.revoked_at.is_(None),
                )
                .values(auth_time=now, amr="pwd otp")
            )
        return bool(result.rowcount)

    async def session_auth(self, session_id: str) -> tuple[str, float] | None:
        query = sa.select(sessions.c.amr, sessions.c.auth_time, sessions.c.created_at).where(
            sessions.c.id == session_id, sessions.c.revoked_at.is_(None)
        )
        async with self._reads.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return row.amr, row.created_at if row.auth_time is None else row.auth_time

    # ---- the second step of a login ----------------------------------------------------------

    async def create_mfa_challenge(self, challenge: MfaChallenge, *, now: float) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.insert(mfa_challenges).values(
                    token_hash=challenge.token_hash,
                    user_id=challenge.user_id,
                    login_key=challenge.login_key,
                    user_agent=challenge.user_agent,
                    client_address=challenge.client_address,
                    created_at=now,
                    expires_at=challenge.expires_at,
                )
            )

    async def find_mfa_challenge(self, token_hash: str, *, now: float) -> MfaChallenge | None:
        query = sa.select(mfa_challenges).where(
            mfa_challenges.c.token_hash == token_hash,
            mfa_challenges.c.used_at.is_(None),
            mfa_challenges.c.expires_at > now,
        )
        async with self._reads.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return MfaChallenge(
            token_hash=row.token_hash,
            user_id=row.user_id,
            login_key=row.login_key,
            user_agent=row.user_agent,
            client_address=row.client_address,
            expires_at=row.expires_at,
        )

    async def spend_mfa_challenge(self, token_hash: str, *, now: float) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(mfa_challenges)
                .where(
                    mfa_challenges.c.token_hash == token_hash,
                    mfa_challenges.c.used_at.is_(None),
                    mfa_challenges.c.expires_at > now,
                )
                .values(used_at=now)
            )
        return bool(result.rowcount)

    async def rotate(
        self,
        *,
        token_hash: str,
        session_id: str,
        new_hash: str,
        now: float,
        grace_since: float,
        expires_at: float,
        user_agent: str = "",
        client_address: str = "",
    ) -> int | None:
        """Spend a refresh token and store its successor, in one transaction; the session
        records this use (time, user agent, client address).

        The token may be spent if it is unexpired, its session is live, and it is either unspent
        or was first spent at or after `grace_since` (a repeat within the grace window, which
        gets a sibling of the first successor). One conditional UPDATE decides, so of many
        simultaneous calls exactly one makes the first spend and the others, serialized on the
        row, see it spent. Returns how many times the token had been spent before (0 for the
        first spend), or None when it may not be spent.
        """
        async with self._engine.begin() as conn:
            spend = {
                "b_token_hash": token_hash,
                "b_now": now,
                "b_grace_since": grace_since,
                "b_session_id": session_id,
            }
            row = (await conn.execute(_SPEND_TOKEN, spend)).first()
            if row is None:
                return None
            await conn.execute(
                _INSERT_TOKEN,
                {
                    "token_hash": new_hash,
                    "session_id": session_id,
                    "parent_hash": token_hash,
                    "created_at": now,
                    "expires_at": expires_at,
                },
            )
            await conn.execute(
                sa.update(sessions)
                .where(sessions.c.id == session_id)
                .values(last_used_at=now, user_agent=user_agent, client_address=client_address)
            )
        return int(row.grace_uses)

    async def revoke_session(self, session_id: str, *, now: float, reason: str, keep_until: float) -> int:
        """Revoke one family; 1 when it was live, 0 when it was already revoked."""
        return await self._revoke(sessions.c.id == session_id, now=now, reason=reason, keep_until=keep_until)

    async def revoke_user_sessions(
        self, user_id: str, *, now: float, reason: str, keep_until: float, except_session: str = ""
    ) -> int:
        """Revoke every live family of a user (but `except_session`); returns how many."""
        which = sessions.c.user_id == user_id
        if except_session:
            which = sa.and_(which, sessions.c.id != except_session)
        return await self._revoke(which, now=now, reason=reason, keep_until=keep_until)

    async def _revoke(
        self, which: sa.ColumnElement[bool], *, now: float, reason: str, keep_until: float
    ) -> int:
        """Revoke the live sessions matching `which`; a revoked one keeps its first reason. Each
        revocation is logged, in the same transaction, for WatchRevocations; the log row is kept
        until `keep_until`, when no access token of the session can be valid any more."""
        async with self._engine.begin() as conn:
            revoked = (
                await conn.execute(
                    sa.update(sessions)
                    .where(which, sessions.c.revoked_at.is_(None))
                    .values(revoked_at=now, revoked_reason=reason)
                    .returning(sessions.c.id)
                )
            ).all()
            if revoked:
                await conn.execute(
                    sa.insert(revocations),
                    [{"session_id": row.id, "logged_at": now, "expires_at": keep_until} for row in revoked],
                )
        return len(revoked)

    async def list_sessions(self, user_id: str, *, now: float) -> list[SessionRecord]:
        """The live sessions of a user (not revoked, with an unexpired refresh token), newest first."""
        live_token = sa.exists().where(
            refresh_tokens.c.session_id == sessions.c.id, refresh_tokens.c.expires_at > now
        )
        query = (
            sa.select(
                sessions.c.id,
                sessions.c.user_id,
                sessions.c.created_at,
                sessions.c.last_used_at,
                sessions.c.user_agent,
                sessions.c.client_address,
            )
            .where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None), live_token)
            .order_by(sessions.c.created_at.desc(), sessions.c.id)
        )
        async with self._reads.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            SessionRecord(
                session_id=row.id,
                user_id=row.user_id,
                created_at=row.created_at,
                last_used_at=row.last_used_at if row.last_used_at is not None else row.created_at,
                user_agent=row.user_agent,
                client_address=row.client_address,
            )
            for row in rows
        ]

    async def session_owner(self, session_id: str) -> str | None:
        """The user id of a session that is still live, or None."""
        async with self._reads.connect() as conn:
            owner = await conn.scalar(
                sa.select(sessions.c.user_id).where(
                    sessions.c.id == session_id, sessions.c.revoked_at.is_(None)
                )
            )
        return None if owner is None else str(owner)

    async def revocations_since(
        self, *, after: int, logged_since: float, now: float
    ) -> list[RevocationRecord]:
        """Revocations still relevant (`expires_at` > now) with a cursor above `after`, or logged
        at or after `logged_since` (a later-committed row may carry a lower cursor), in order."""
        query = (
            sa.select(revocations.c.seq, revocations.c.session_id, revocations.c.expires_at)
            .where(
                revocations.c.expires_at > now,
                sa.or_(revocations.c.seq > after, revocations.c.logged_at >= logged_since),
            )
            .order_by(revocations.c.seq)
        )
        async with self._reads.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [RevocationRecord(int(row.seq), str(row.session_id), float(row.expires_at)) for row in rows]

    async def last_revocation_cursor(self) -> int:
        async with self._reads.connect() as conn:
            return int(await conn.scalar(sa.select(sa.func.max(revocations.c.seq))) or 0)

    async def session_revoked_reason(self, session_id: str) -> str | None:
        async with self._reads.connect() as conn:
            reason = await conn.scalar(
                sa.select(sessions.c.revoked_reason).where(sessions.c.id == session_id)
            )
        return None if reason is None else str(reason)

    # ---- failed-login counters ---------------------------------------------------------------

    def _upsert(self) -> Any:
        return (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(login_throttle)

    async def claim_attempt(
        self,
        keys: Sequence[ThrottleKey],
        *,
        now: float,
        forget_before: float,
        backoff: Callable[[int, int], float],
    ) -> Claim:
        """Charge one failure to every key *before* the password is checked, unless a key is in
        back-off; then nothing is charged and `retry_after` says how long to wait.

        Charging first closes the race where many parallel guesses all pass a read-only check
        before any failure is recorded: the n-th concurrent attempt sees n-1 charges and the
        back-off they set. A success or an error refunds the charge (`settle`). Keys are claimed in
        sorted order so two transactions never wait on each other's rows in opposite orders.
        `backoff(failures, threshold)` gives the back-off in seconds after `failures` charges.

        During a back-off nothing needs to change, so the claim first *reads* the keys' back-off
        and writes only when none is in force: a flood of throttled attempts then takes no write
        lock (on SQLite one for the whole database), and the logins that must write (a device
        token's, the owner's) don't queue behind it. The read only saves work; the conditional
        upsert below still decides, so an attempt that read "not blocked" just before another
        set a back-off is refused by it, as before.
        """
        ordered = sorted(keys, key=lambda k: k.key)
        blocked_until = await self.blocked_until(ordered)
        if blocked_until > now:
            return Claim(retry_after=blocked_until - now)
        try:
            async with self._engine.begin() as conn:
                charges: list[Charge] = []
                for item in ordered:
                    insert = self._upsert().values(
                        key=item.key, failures=1, last_failure_at=now, blocked_until=0.0
                    )
                    # The update leaves blocked_until alone, so RETURNING gives its value before
                    # this attempt; a refund restores exactly that.
                    statement = insert.on_conflict_do_update(
                        index_elements=[login_throttle.c.key],
                        set_={
                            "failures": sa.case(
                                (login_throttle.c.last_failure_at < forget_before, 1),
                                else_=login_throttle.c.failures + 1,
                            ),
                            "last_failure_at": now,
                        },
                        where=login_throttle.c.blocked_until <= now,
                    ).returning(login_throttle.c.failures, login_throttle.c.blocked_until)
                    row = (await conn.execute(statement)).first()
                    if row is None:
                        raise _Blocked
                    failures, blocked_before = int(row.failures), float(row.blocked_until)
                    delay = backoff(failures, item.threshold)
                    blocked_until = blocked_before
                    if delay > 0:
                        blocked_until = max(blocked_before, now + delay)
                        await conn.execute(
                            sa.update(login_throttle)
                            .where(login_throttle.c.key == item.key)
                            .values(blocked_until=blocked_until)
                        )
                    charges.append(Charge(item.key, failures, blocked_before, blocked_until))
                return Claim(charges=tuple(charges))
        except _Blocked:
            pass
        return Claim(retry_after=max(await self.blocked_until(ordered) - now, 0.001))

    async def blocked_until(self, keys: Sequence[ThrottleKey]) -> float:
        """The latest back-off among `keys` (0 when none has a counter): one read, no lock."""
        async with self._reads.connect() as conn:
            until = await conn.scalar(
                sa.select(sa.func.max(login_throttle.c.blocked_until)).where(
                    login_throttle.c.key.in_([k.key for k in keys])
                )
            )
        return float(until or 0.0)

    async def settle(self, claim: Claim, *, reset: Sequence[str] = ()) -> None:
        """Undo a claim's charges (the attempt was not a failed guess). Keys in `reset` are
        cleared entirely instead: a successful login resets its account's counter.

        A refund restores the previous back-off only if nothing else moved it since.
        """
        async with self._engine.begin() as conn:
            for charge in sorted(claim.charges, key=lambda c: c.key):
                if charge.key in reset:
                    await conn.execute(
                        sa.update(login_throttle)
                        .where(login_throttle.c.key == charge.key)
                        .values(failures=0, blocked_until=0.0)
                    )
                    continue
                await conn.execute(
                    sa.update(login_throttle)
                    .where(login_throttle.c.key == charge.key, login_throttle.c.failures > 0)
                    .values(failures=login_throttle.c.failures - 1)
                )
                await conn.execute(
                    sa.update(login_throttle)
                    .where(
                        login_throttle.c.key == charge.key,
                        login_throttle.c.blocked_until == charge.blocked_until,
                    )
                    .values(blocked_until=charge.blocked_before)
                )

    async def throttle_state(self, key: str) -> tuple[int, float] | None:
        """(failures, blocked_until) of one key; for tests and operators."""
        async with self._reads.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(login_throttle.c.failures, login_throttle.c.blocked_until).where(
                        login_throttle.c.key == key
                    )
                )
            ).first()
        return None if row is None else (int(row.failures), float(row.blocked_until))

    # ---- device tokens -----------------------------------------------------------------------

    async def create_device(
        self, *, token_hash: str, user_id: str, login_key: str, now: float, expires_at: float
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.insert(device_tokens).values(
                    token_hash=token_hash,
                    user_id=user_id,
                    login_key=login_key,
                    created_at=now,
                    last_used_at=now,
                    expires_at=expires_at,
                    failures=0,
                )
            )

    async def claim_device(
        self, token_hash: str, *, login_key: str, now: float, max_failures: int
    ) -> DeviceClaim | None:
        """Charge one attempt to a device token *before* the password is checked, if it is one
        for this login name, unexpired, not locked and below `max_failures`; else None (the
        login is then a stranger's). One conditional UPDATE decides, so of many simultaneous
        attempts with one token at most `max_failures` are ever charged."""
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.update(device_tokens)
                    .where(
                        device_tokens.c.token_hash == token_hash,
                        device_tokens.c.login_key == login_key,
                        device_tokens.c.expires_at > now,
                        device_tokens.c.locked_at.is_(None),
                        device_tokens.c.failures < max_failures,
                    )
                    .values(failures=device_tokens.c.failures + 1)
                    .returning(device_tokens.c.user_id, device_tokens.c.failures)
                )
            ).first()
        return None if row is None else DeviceClaim(token_hash, str(row.user_id), int(row.failures))

    async def renew_device(self, token_hash: str, *, now: float, expires_at: float) -> bool:
        """After a successful login with it: failures back to zero and a new expiry. False when
        it was locked (or removed) meanwhile."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(device_tokens)
                .where(device_tokens.c.token_hash == token_hash, device_tokens.c.locked_at.is_(None))
                .values(failures=0, last_used_at=now, expires_at=expires_at)
            )
        return bool(result.rowcount)

    async def refund_device(self, token_hash: str) -> None:
        """Undo a claim (the attempt was not a wrong guess: users was unreachable)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(device_tokens)
                .where(device_tokens.c.token_hash == token_hash, device_tokens.c.failures > 0)
                .values(failures=device_tokens.c.failures - 1)
            )

    async def lock_device(self, token_hash: str, *, now: float) -> None:
        """Lock a device token for good (too many wrong passwords presented with it)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(device_tokens)
                .where(device_tokens.c.token_hash == token_hash, device_tokens.c.locked_at.is_(None))
                .values(locked_at=now)
            )

    async def delete_device(self, token_hash: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(device_tokens).where(device_tokens.c.token_hash == token_hash))

    async def delete_user_devices(self, user_id: str) -> int:
        """Forget every device token of an account; returns how many."""
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(device_tokens).where(device_tokens.c.user_id == user_id))
        return int(result.rowcount)

    async def device_state(self, token_hash: str) -> DeviceRecord | None:
        async with self._reads.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        device_tokens.c.user_id,
                        device_tokens.c.failures,
                        device_tokens.c.expires_at,
                        device_tokens.c.locked_at,
                    ).where(device_tokens.c.token_hash == token_hash)
                )
            ).first()
        if row is None:
            return None
        return DeviceRecord(
            user_id=row.user_id,
            failures=int(row.failures),
            expires_at=row.expires_at,
            locked_at=row.locked_at,
        )

    # ---- housekeeping ------------------------------------------------------------------------

    async def purge(self, *, now: float, tokens_expired_before: float, failures_before: float) -> int:
        """Delete refresh tokens long expired, sessions left without tokens, forgotten failure
        counters, expired device tokens and expired mfa_token challenges. Returns the number of
        rows removed."""
        removed = 0
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.delete(refresh_tokens).where(refresh_tokens.c.expires_at < tokens_expired_before)
            )
            removed += int(result.rowcount)
            has_tokens = sa.exists().where(refresh_tokens.c.session_id == sessions.c.id)
            result = await conn.execute(
                sa.delete(sessions).where(~has_tokens, sessions.c.created_at < tokens_expired_before)
            )
            removed += int(result.rowcount)
            result = await conn.execute(
                sa.delete(login_throttle).where(
                    login_throttle.c.last_failure_at < failures_before, login_throttle.c.blocked_until < now
                )
            )
            removed += int(result.rowcount)
            result = await conn.execute(sa.delete(device_tokens).where(device_tokens.c.expires_at < now))
            removed += int(result.rowcount)
            # Keep the newest row even when expired: it holds the cursor subscribers resume from.
            newest = sa.select(sa.func.max(revocations.c.seq)).scalar_subquery()
            result = await conn.execute(
                sa.delete(revocations).where(revocations.c.expires_at < now, revocations.c.seq != newest)
            )
            removed += int(result.rowcount)
            # A login's second step that expired (used or not) is no use to anyone.
            result = await conn.execute(sa.delete(mfa_challenges).where(mfa_challenges.c.expires_at < now))
            removed += int(result.rowcount)
        return removed
