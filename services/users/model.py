"""The users service's records and the store Protocol: what domain, store and servicer share.

The domain declares what it needs from persistence here, and `store.SqlUserStore` implements
it, so domain and store never import each other (the kratos `identity.Pool` shape).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.kit.audit import AuditEvent, AuditStore
from services.kit.context import Role
from services.kit.mail import OutgoingMail
from services.kit.single_use import Issued

VERIFY_EMAIL = "verify_email"  # the purpose of e-mail verification tokens (kit single_use)
PASSWORD_RESET = "password_reset"  # noqa: S105 (a token purpose, not a secret; kit single_use)

# The audit records of a verified address: (account id, whether a pending address replaced the
# old one) -> the records to write with it.
VerifiedEvents = Callable[[str, bool], Sequence[AuditEvent]]


@dataclass(frozen=True, slots=True)
class UserRecord:
    """An account as the rest of the service sees it: no password material."""

    id: str
    username: str
    email: str
    display_name: str
    role: Role
    version: int
    created_at: datetime
    updated_at: datetime
    disabled: bool = False
    email_verified: bool = False
    email_verified_at: datetime | None = None
    # An e-mail change waiting for its verification link to be used.
    pending_email: str | None = None


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a login check needs. Never leaves the service."""

    id: str
    username: str
    role: Role
    password_hash: str
    disabled: bool = False
    email_verified: bool = False


@dataclass(frozen=True, slots=True)
class PendingPurge:
    """An outbox row: a deleted user whose data the data service has not purged yet."""

    user_id: str
    attempts: int
    next_attempt_at: datetime


class Conflict(Exception):
    """A UNIQUE constraint refused a write; `column` names which (username or email)."""

    def __init__(self, column: str) -> None:
        super().__init__(column)
        self.column = column


@dataclass(frozen=True, slots=True)
class TotpFactor:
    """An account's TOTP factor, its secret in plaintext (the store seals it)."""

    user_id: str
    secret: str
    active: bool
    last_step: int
    enrolled_at: datetime


class UserStore(Protocol):
    """What the domain and the purge outbox need from storage; `store.SqlUserStore` implements
    it. Callers pass and get plaintext: encrypting personal data is the store's business."""

    @property
    def audit(self) -> AuditStore:
        """The service's security audit records (services/kit/audit.py)."""
        ...

    # -- accounts ------------------------------------------------------------------------------

    async def insert(
        self,
        values: Mapping[str, Any],
        *,
        mail: Sequence[OutgoingMail] = (),
        token: Issued | None = None,
        audit_events: Sequence[AuditEvent] = (),
    ) -> None:
        """Insert one account and, in the same transaction, queue `mail`, store `token` (a
        verification token: its `data` is the address it verifies) and write `audit_events`.
        Conflict when the username or e-mail is taken."""
        ...

    async def get(self, user_id: str) -> UserRecord | None: ...

    async def credentials_by_username(self, username: str) -> Credentials | None: ...

    async def credentials_by_email(self, email: str) -> Credentials | None: ...

    async def list_page(self, *, after: tuple[datetime, str] | None, limit: int) -> list[UserRecord]:
        """Up to `limit` accounts in (created_at, id) order, strictly after `after`."""
        ...

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
        """Apply `values` and bump the version; with `expected_version`, only if the row still
        has it; `mail`, `token` (as in `insert`) and `audit_events` in the same transaction, only
        when the change is. None when no row matched; Conflict on a taken username or e-mail."""
        ...

    async def verify_email(
        self, token: str, now: datetime, *, audit_events: VerifiedEvents | None = None
    ) -> UserRecord:
        """Spend a verification token and mark the address it was issued for verified (moving
        a pending address into email). TokenRefused for a bad token; Conflict("email") when
        another account took the pending address meanwhile (the token is then not spent). The
        records `audit_events(account id, whether the address changed)` are written in the same
        transaction."""
        ...

    async def queue_verification(
        self,
        mail: OutgoingMail,
        token: Issued,
        *,
        limits: Sequence[tuple[str, int]],
        window: float,
        now: datetime,
    ) -> float:
        """Queue a verification mail and store its token, if every (key, limit) counter has room;
        else nothing and the seconds until it has. 0.0: queued."""
        ...

    async def get_by_email(self, email: str) -> UserRecord | None:
        """The account whose (current, not pending) address is `email`, in any case: one
        indexed read, the same for a known and an unknown address."""
        ...

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
        """As `queue_verification`, for a reset token (its `data`: the address it was mailed
        to). With `mail` None (no account to mail) the same statements run for the token, which
        is then deleted again in the same transaction: nothing is kept."""
        ...

    async def peek_password_reset(self, token: str, now: datetime) -> UserRecord:
        """The account a live reset token is for, without spending it; TokenRefused when the
        token is bad, or when the account is gone or its address is no longer the one the link
        was mailed to (MAIL_TOKEN_SUPERSEDED)."""
        ...

    async def reset_password(
        self,
        token: str,
        new_hash: str,
        now: datetime,
        mail: Sequence[OutgoingMail] = (),
        *,
        audit_events: Sequence[AuditEvent] = (),
    ) -> UserRecord:
        """In one transaction: spend the reset token (of concurrent spenders exactly one wins;
        the others get TokenRefused), set the new password hash, mark the address verified,
        end the account's other reset tokens and queue `mail`. TokenRefused as in
        `peek_password_reset`."""
        ...

    def address_key(self, email: str) -> str:
        """What a per-address limit counts for `email` (its blind index: no address stored)."""
        ...

    async def credentials_by_id(self, user_id: str) -> Credentials | None: ...

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
        """Set a new password hash if the stored one is still `old_hash` (bumps the version); in
        the same transaction, live password reset tokens of the account die and `mail` (the
        "password changed" notice) is queued, and `audit_events` written."""
        ...

    async def set_disabled(
        self, user_id: str, disabled: bool, now: datetime, *, audit_events: Sequence[AuditEvent] = ()
    ) -> bool:
        """False when there is no such account."""
        ...

    async def replace_password_hash(self, user_id: str, old_hash: str, new_hash: str) -> None:
        """Swap in a rehashed password, unless the password changed meanwhile."""
        ...

    async def delete_with_purge(
        self, user_id: str, now: datetime, *, audit_events: Sequence[AuditEvent] = ()
    ) -> bool:
        """Delete the account and record, atomically, that its data must be purged. False when
        there was no such account."""
        ...

    # -- the TOTP second factor ----------------------------------------------------------------

    async def totp_factor(self, user_id: str) -> TotpFactor | None: ...

    async def save_pending_totp(self, user_id: str, secret: str, now: datetime) -> bool:
        """Store a new, not yet active factor, replacing a pending one. False when the account
        already has an active factor (nothing changes)."""
        ...

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
        """Make the pending factor enrolled at `enrolled_at` active, with `step` used and these
        recovery codes, and queue `mail` and write `audit_events`, in one transaction; False
        (nothing queued or written) when it is not that pending factor any more."""
        ...

    async def use_totp_step(self, user_id: str, step: int) -> bool:
        """Record that a code of `step` was accepted: False when the active factor already
        accepted this step or a later one (a replay), or there is none."""
        ...

    async def use_recovery_code(
        self,
        user_id: str,
        code_hash: str,
        mail: Sequence[OutgoingMail] = (),
        *,
        audit_events: Sequence[AuditEvent] = (),
    ) -> bool:
        """Spend a recovery code of the active factor, queue `mail` and write `audit_events`, in
        one transaction; False (nothing queued or written) when it is not one (any more)."""
        ...

    async def replace_recovery_codes(
        self, user_id: str, code_hashes: Sequence[str], *, audit_events: Sequence[AuditEvent] = ()
    ) -> bool:
        """Replace every recovery code of the active factor (and write `audit_events`); False
        when there is none."""
        ...

    async def delete_totp(
        self,
        user_id: str,
        *,
        active_mail: Sequence[OutgoingMail] = (),
        audit_events: Sequence[AuditEvent] = (),
    ) -> bool:
        """Remove the factor (active or pending) and its recovery codes; False when none.
        `active_mail` is queued and `audit_events` written in the same transaction when the
        factor removed was active (a pending enrolment going away is nobody's news)."""
        ...

    async def recovery_codes_left(self, user_id: str) -> int: ...

    # -- purge outbox --------------------------------------------------------------------------

    async def due_purges(self, now: datetime, limit: int) -> list[PendingPurge]: ...

    async def claim_purge(self, purge: PendingPurge, lease_until: datetime) -> bool:
        """Take a row for one delivery attempt; False if another replica claimed it first."""
        ...

    async def finish_purge(self, user_id: str) -> None: ...

    async def reschedule_purge(self, user_id: str, attempts: int, at: datetime, error: str) -> None: ...

    async def next_purge_due(self) -> datetime | None: ...

    async def purge_backlog(self) -> tuple[int, datetime | None]:
        """(rows waiting, the oldest row's created_at or None): the outbox's depth and age."""
        ...
