"""`MemoryUserStore`: the `model.UserStore` in a process's memory, for tests and experiments.

It keeps the SQL store's contract (tests/users/test_store_conformance.py runs the same tests on
both): usernames are compared as given (the domain lower-cases them), e-mail addresses by their
lower-cased form, a taken one raises `Conflict(column)`, pages are in (created_at, id) order, a
delete queues a purge in the same step, and a purge is claimed by compare-and-set on its attempt
counter. Nothing is encrypted (there is no table to read); every method runs without awaiting,
so each is atomic under asyncio, as one SQL statement or transaction is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from services.kit import single_use
from services.kit.audit import AuditEvent, MemoryAuditLog
from services.kit.context import Role
from services.kit.mail import OutgoingMail
from services.kit.single_use import Issued, TokenRefused
from services.users.model import (
    PASSWORD_RESET,
    VERIFY_EMAIL,
    Conflict,
    Credentials,
    PendingPurge,
    TotpFactor,
    UserRecord,
    UserStore,
    VerifiedEvents,
)
from services.users.validation import email_key


@dataclass(slots=True)
class _Purge:
    user_id: str
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    last_error: str | None = None


class MemoryUserStore:
    """Accounts and the purge outbox in two dicts."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}  # id -> the users table's columns, plaintext
        self.purges: dict[str, _Purge] = {}
        self.audit = MemoryAuditLog()
        self.mail: list[OutgoingMail] = []  # what the SQL store would put in its mail outbox
        self.tokens: dict[str, dict[str, Any]] = {}  # token hash -> the single_use row
        self.counters: dict[str, tuple[float, int]] = {}  # rate-limit key -> (window start, hits)
        self.factors: dict[str, TotpFactor] = {}
        self.recovery: dict[str, set[str]] = {}

    def _queue(self, mail: Sequence[OutgoingMail], token: Issued | None, now: datetime) -> None:
        if token is not None:
            at = now.timestamp()
            for row in self.tokens.values():
                if (row["purpose"], row["subject"]) == (token.purpose, token.subject) and row["live"]:
                    row["live"], row["why"] = False, "MAIL_TOKEN_SUPERSEDED"
            self.tokens[single_use.token_hash(token.token)] = {
                "purpose": token.purpose,
                "subject": token.subject,
                "data": email_key(token.data),
                "expires_at": token.expires_at,
                "live": True,
                "why": "",
                "created_at": at,
            }
        self.mail.extend(mail)

    def address_key(self, email: str) -> str:
        return email_key(email)

    # -- password reset ------------------------------------------------------------------------

    async def get_by_email(self, email: str) -> UserRecord | None:
        for row in self.rows.values():
            if email_key(row["email"]) == email_key(email):
                return self._record(row)
        return None

    async def queue_password_reset(
        self,
        mail: OutgoingMail | None,
        token: Issued,
        *,
        limits: Sequence[tuple[str, int]],
        window: float,
        now: datetime,
        audit_events: Sequence[AuditEvent] = (),
    ) -> float:
        wait = self._queue_limited([] if mail is None else [mail], token, limits, window, now)
        if mail is None:
            self.tokens.pop(single_use.token_hash(token.token), None)  # a decoy: nothing kept
        if wait == 0:
            await self.audit.record(*audit_events)
        return wait

    def _live_reset(self, token: str, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the token's row, its account's row) of a live reset token, or TokenRefused."""
        row = self.tokens.get(single_use.token_hash(token)) if token else None
        if row is None or row["purpose"] != PASSWORD_RESET or len(token) > single_use.MAX_TOKEN_LENGTH:
            raise TokenRefused("MAIL_TOKEN_INVALID")
        if not row["live"]:
            raise TokenRefused(row["why"])
        if row["expires_at"] <= now.timestamp():
            raise TokenRefused("MAIL_TOKEN_EXPIRED")
        account = self.rows.get(row["subject"])
        if account is None:
            raise TokenRefused("MAIL_TOKEN_INVALID")
        if email_key(account["email"]) != row["data"]:
            raise TokenRefused("MAIL_TOKEN_SUPERSEDED")
        return row, account

    async def peek_password_reset(self, token: str, now: datetime) -> UserRecord:
        return self._record(self._live_reset(token, now)[1])

    async def reset_password(
        self,
        token: str,
        new_hash: str,
        now: datetime,
        mail: Sequence[OutgoingMail] = (),
        *,
        audit_events: Sequence[AuditEvent] = (),
    ) -> UserRecord:
        row, account = self._live_reset(token, now)
        row["live"], row["why"] = False, "MAIL_TOKEN_USED"
        self._end_resets(account["id"])
        updated = {
            **account,
            "password_hash": new_hash,
            "email_verified": True,
            "email_verified_at": account.get("email_verified_at") if account.get("email_verified") else now,
            "version": account["version"] + 1,
            "updated_at": now,
        }
        self.rows[account["id"]] = updated
        self._queue(mail, None, now)
        await self.audit.record(*audit_events)
        return self._record(updated)

    def _end_resets(self, user_id: str) -> None:
        for token in self.tokens.values():
            if (token["purpose"], token["subject"]) == (PASSWORD_RESET, user_id) and token["live"]:
                token["live"], token["why"] = False, "MAIL_TOKEN_SUPERSEDED"

    def _take(self, limits: Sequence[tuple[str, int]], *, window: float, at: float) -> float:
        """rate_limit.take on the dict of counters."""
        wait = 0.0
        for key, limit in limits:
            start, hits = self.counters.get(key, (at, 0))
            if start + window > at and hits >= limit:
                wait = max(wait, start + window - at)
        if wait > 0:
            return wait
        for key, _ in limits:
            start, hits = self.counters.get(key, (at, 0))
            self.counters[key] = (start, hits + 1) if start + window > at else (at, 1)
        return 0.0

    async def verify_email(
        self, token: str, now: datetime, *, audit_events: VerifiedEvents | None = None
    ) -> UserRecord:
        row = self.tokens.get(single_use.token_hash(token)) if token else None
        if row is None or row["purpose"] != VERIFY_EMAIL:
            raise TokenRefused("MAIL_TOKEN_INVALID")
        if not row["live"]:
            raise TokenRefused(row["why"])
        if row["expires_at"] <= now.timestamp():
            raise TokenRefused("MAIL_TOKEN_EXPIRED")
        account = self.rows.get(row["subject"])
        if account is None:
            raise TokenRefused("MAIL_TOKEN_INVALID")
        changes: dict[str, Any] = {"email_verified": True, "email_verified_at": now}
        pending = account.get("pending_email")
        changed = pending is not None and email_key(pending) == row["data"]
        if changed:
            changes.update(email=pending, pending_email=None)
        elif email_key(account["email"]) != row["data"]:
            raise TokenRefused("MAIL_TOKEN_SUPERSEDED")
        updated = {**account, **changes, "version": account["version"] + 1, "updated_at": now}
        self._check_unique(updated, exclude=account["id"])
        row["live"], row["why"] = False, "MAIL_TOKEN_USED"
        self.rows[account["id"]] = updated
        if audit_events is not None:
            await self.audit.record(*audit_events(account["id"], changed))
        return self._record(updated)

    async def queue_verification(
        self,
        mail: OutgoingMail,
        token: Issued,
        *,
        limits: Sequence[tuple[str, int]],
        window: float,
        now: datetime,
    ) -> float:
        return self._queue_limited([mail], token, limits, window, now)

    def _queue_limited(
        self,
        mail: Sequence[OutgoingMail],
        token: Issued,
        limits: Sequence[tuple[str, int]],
        window: float,
        now: datetime,
    ) -> float:
        """The SQL store's `_queue_limited`: queued only if every limit has room."""
        wait = self._take(limits, window=window, at=now.timestamp())
        if wait == 0:
            self._queue(mail, token, now)
        return wait

    def _check_unique(self, row: Mapping[str, Any], *, exclude: str | None = None) -> None:
        """Conflict(column) when another row has this username or e-mail (as UNIQUE would)."""
        for other_id, other in self.rows.items():
            if other_id == exclude:
                continue
            if other["username"] == row["username"]:
                raise Conflict("username")
            if email_key(other["email"]) == email_key(row["email"]):
                raise Conflict("email")

    @staticmethod
    def _record(row: Mapping[str, Any]) -> UserRecord:
        names = {field.name for field in dataclasses.fields(UserRecord)}
        return UserRecord(**{name: row[name] for name in names if name in row})

    @staticmethod
    def _credentials(row: Mapping[str, Any]) -> Credentials:
        return Credentials(
            id=row["id"],
            username=row["username"],
            role=cast(Role, row["role"]),
            password_hash=row["password_hash"],
            disabled=bool(row.get("disabled", False)),
            email_verified=bool(row.get("email_verified", False)),
        )

    # -- accounts ------------------------------------------------------------------------------

    async def insert(
        self,
        values: Mapping[str, Any],
        *,
        mail: Sequence[OutgoingMail] = (),
        token: Issued | None = None,
        audit_events: Sequence[AuditEvent] = (),
    ) -> None:
        row = dict(values)  # every UserRecord field and the password_hash, as the domain passes them
        if row["id"] in self.rows:
            raise Conflict("id")
        self._check_unique(row)
        self.rows[row["id"]] = row
        self._queue(mail, token, row["created_at"])
        await self.audit.record(*audit_events)

    async def get(self, user_id: str) -> UserRecord | None:
        row = self.rows.get(user_id)
        return None if row is None else self._record(row)

    async def credentials_by_username(self, username: str) -> Credentials | None:
        for row in self.rows.values():
            if row["username"] == username:
                return self._credentials(row)
        return None

    async def credentials_by_email(self, email: str) -> Credentials | None:
        for row in self.rows.values():
            if email_key(row["email"]) == email_key(email):
                return self._credentials(row)
        return None

    async def list_page(self, *, after: tuple[datetime, str] | None, limit: int) -> list[UserRecord]:
        ordered = sorted(self.rows.values(), key=lambda row: (row["created_at"], row["id"]))
        if after is not None:
            ordered = [row for row in ordered if (row["created_at"], row["id"]) > after]
        return [self._record(row) for row in ordered[:limit]]

    async def update(
        self,
        user_id: str,
        values: Mapping[str, Any],
        *,
        expected_version: int | None,
        now: datetime,
        mail: Sequence[OutgoingMail] = (),
        token: Issued | None = None,
        audit_events: Sequence[AuditEvent] = (),
    ) -> UserRecord | None:
        row = self.rows.get(user_id)
        if row is None or (expected_version is not None and row["version"] != expected_version):
            return None
        updated = {**row, **values, "version": row["version"] + 1, "updated_at": now}
        self._check_unique(updated, exclude=user_id)
        self.rows[user_id] = updated
        self._queue(mail, token, now)
        await self.audit.record(*audit_events)
        return self._record(updated)

    async def credentials_by_id(self, user_id: str) -> Credentials | None:
        row = self.rows.get(user_id)
        return None if row is None else self._credentials(row)

    async def change_password_hash(
        self,
        user_id: str,
        old_hash: str,
        new_hash: str,
        now: datetime,
        mail: Sequence[OutgoingMail] = (),
        *,
        audit_events: Sequence[AuditEvent] = (),
    ) -> bool:
        row = self.rows.get(user_id)
        if row is None or row["password_hash"] != old_hash:
            return False
        row.update(password_hash=new_hash, version=row["version"] + 1, updated_at=now)
        self._end_resets(user_id)  # reset links die with the old password
        self._queue(mail, None, now)
        await self.audit.record(*audit_events)
        return True

    async def set_disabled(
        self, user_id: str, disabled: bool, now: datetime, *, audit_events: Sequence[AuditEvent] = ()
    ) -> bool:
        row = self.rows.get(user_id)
        if row is None:
            return False
        row.update(disabled=disabled, version=row["version"] + 1, updated_at=now)
        await self.audit.record(*audit_events)
        return True

    async def replace_password_hash(self, user_id: str, old_hash: str, new_hash: str) -> None:
        row = self.rows.get(user_id)
        if row is not None and row["password_hash"] == old_hash:
            row["password_hash"] = new_hash

    async def delete_with_purge(
        self, user_id: str, now: datetime, *, audit_events: Sequence[AuditEvent] = ()
    ) -> bool:
        if self.rows.pop(user_id, None) is None:
            return False
        self.factors.pop(user_id, None)
        self.recovery.pop(user_id, None)
        self.purges[user_id] = _Purge(user_id, created_at=now, attempts=0, next_attempt_at=now)
        await self.audit.record(*audit_events)
        return True

    # -- the TOTP second factor ----------------------------------------------------------------

    async def totp_factor(self, user_id: str) -> TotpFactor | None:
        return self.factors.get(user_id)

    async def save_pending_totp(self, user_id: str, secret: str, now: datetime) -> bool:
        current = self.factors.get(user_id)
        if user_id not in self.rows or (current is not None and current.active):
            return False
        self.factors[user_id] = TotpFactor(user_id, secret, active=False, last_step=0, enrolled_at=now)
        return True

    async def activate_totp(
        self,
        user_id: str,
        enrolled_at: datetime,
        step: int,
        code_hashes: Sequence[str],
        now: datetime,
        mail: Sequence[OutgoingMail] = (),
        *,
        audit_events: Sequence[AuditEvent] = (),
    ) -> bool:
        current = self.factors.get(user_id)
        if current is None or current.active or current.enrolled_at != enrolled_at:
            return False
        self.factors[user_id] = dataclasses.replace(current, active=True, last_step=step)
        self.recovery[user_id] = set(code_hashes)
        self.mail.extend(mail)
        await self.audit.record(*audit_events)
        return True

    async def use_totp_step(self, user_id: str, step: int) -> bool:
        current = self.factors.get(user_id)
        if current is None or not current.active or current.last_step >= step:
            return False
        self.factors[user_id] = dataclasses.replace(current, last_step=step)
        return True

    async def use_recovery_code(
        self,
        user_id: str,
        code_hash: str,
        mail: Sequence[OutgoingMail] = (),
        *,
        audit_events: Sequence[AuditEvent] = (),
    ) -> bool:
        codes = self.recovery.get(user_id, set())
        if code_hash not in codes:
            return False
        codes.discard(code_hash)
        self.mail.extend(mail)
        await self.audit.record(*audit_events)
        return True

    async def replace_recovery_codes(
        self, user_id: str, code_hashes: Sequence[str], *, audit_events: Sequence[AuditEvent] = ()
    ) -> bool:
        current = self.factors.get(user_id)
        if current is None or not current.active:
            return False
        self.recovery[user_id] = set(code_hashes)
        await self.audit.record(*audit_events)
        return True

    async def delete_totp(
        self,
        user_id: str,
        *,
        active_mail: Sequence[OutgoingMail] = (),
        audit_events: Sequence[AuditEvent] = (),
    ) -> bool:
        self.recovery.pop(user_id, None)
        removed = self.factors.pop(user_id, None)
        if removed is not None and removed.active:
            self.mail.extend(active_mail)
            await self.audit.record(*audit_events)
        return removed is not None

    async def recovery_codes_left(self, user_id: str) -> int:
        return len(self.recovery.get(user_id, ()))

    # -- purge outbox --------------------------------------------------------------------------

    async def due_purges(self, now: datetime, limit: int) -> list[PendingPurge]:
        due = sorted(
            (p for p in self.purges.values() if p.next_attempt_at <= now), key=lambda p: p.next_attempt_at
        )
        return [PendingPurge(p.user_id, p.attempts, p.next_attempt_at) for p in due[:limit]]

    async def claim_purge(self, purge: PendingPurge, lease_until: datetime) -> bool:
        row = self.purges.get(purge.user_id)
        if row is None or row.attempts != purge.attempts:
            return False
        row.attempts += 1
        row.next_attempt_at = lease_until
        return True

    async def finish_purge(self, user_id: str) -> None:
        self.purges.pop(user_id, None)

    async def reschedule_purge(self, user_id: str, attempts: int, at: datetime, error: str) -> None:
        row = self.purges.get(user_id)
        if row is not None and row.attempts == attempts:
            row.next_attempt_at = at
            row.last_error = error[:500]

    async def next_purge_due(self) -> datetime | None:
        return min((p.next_attempt_at for p in self.purges.values()), default=None)

    async def purge_backlog(self) -> tuple[int, datetime | None]:
        return len(self.purges), min((p.created_at for p in self.purges.values()), default=None)


_: type[UserStore] = MemoryUserStore  # mypy checks that it is one
