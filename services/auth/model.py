"""Auth's records and the Protocols of its collaborators: what domain, store, users client and
servicer share.

The domain declares what it needs here: `AuthStore` (implemented by `store.SqlAuthStore`) and
`UsersClient` (implemented by `users_client.GrpcUsersClient`), so neither implementation imports
the domain and the domain imports neither (the kratos `identity.Pool` shape).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.kit.audit import AuditEvent, AuditStore
from services.kit.context import Role


@dataclass(frozen=True, slots=True)
class Identity:
    """Who an account is, as users reports it."""

    user_id: str
    role: Role
    disabled: bool = False
    email_verified: bool = False
    # The account has an active TOTP factor (VerifyCredentials says so): a login needs it too.
    totp_enabled: bool = False


class InvalidCredentials(Exception):
    """Users said the username/password pair does not match an account."""


class AccountDisabled(Exception):
    """Users said the account is disabled (the password matched)."""


class UnknownUser(Exception):
    """Users said the account no longer exists."""


class UsersClient(Protocol):
    """What auth asks the users service; see `services.auth.users_client`."""

    async def resolve_login(self, login: str) -> str:
        """The id of the account a login name reaches, or "" when none does."""

    async def verify_credentials(self, username: str, password: str) -> Identity: ...

    async def get_identity(self, user_id: str) -> Identity: ...

    async def change_password(self, user_id: str, current_password: str, new_password: str) -> None:
        """Raises InvalidCredentials for a wrong current password; users' INVALID_ARGUMENT (the
        new password's rules) passes through as it is."""

    async def set_disabled(self, user_id: str, disabled: bool) -> None:
        """Raises UnknownUser when there is no such account."""

    async def confirm_password_reset(self, token: str, new_password: str) -> str:
        """Spend a reset token and set the new password; the account's id. Users' refusals pass
        through as they are: TokenRefused (MAIL_TOKEN_*) and INVALID_ARGUMENT (the rules)."""

    async def remove_second_factor(self, user_id: str) -> bool:
        """Raises UnknownUser when there is no such account; False when it had no factor."""

    async def verify_second_factor(self, user_id: str, code: str, recovery_code: str) -> int:
        """Raises InvalidCredentials when the code is wrong, replayed or spent; else the
        recovery codes left."""


@dataclass(frozen=True, slots=True)
class DeviceClaim:
    """A device token charged with one attempt: whose it is and its failures counting this one."""

    token_hash: str
    user_id: str
    failures: int


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A stored device token's state; for tests and operators."""

    user_id: str
    failures: int
    expires_at: float
    locked_at: float | None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A stored refresh token and the state of its session."""

    token_hash: str
    session_id: str
    user_id: str
    expires_at: float
    spent_at: float | None
    session_revoked_at: float | None
    amr: str = "pwd"  # space-separated methods
    auth_time: float = 0.0


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A live session, as ListSessions shows it."""

    session_id: str
    user_id: str
    created_at: float
    last_used_at: float
    user_agent: str
    client_address: str


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    """A login waiting for its second factor: whose, and the password step's details."""

    token_hash: str
    user_id: str
    login_key: str
    user_agent: str
    client_address: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class RevocationRecord:
    """One row of the revocation log: its cursor, the session and when it may be forgotten."""

    cursor: int
    session_id: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class ThrottleKey:
    """One counter to charge on a login attempt, and the failures it allows before back-off."""

    key: str
    threshold: int


@dataclass(frozen=True, slots=True)
class Charge:
    """What `claim_attempt` changed on one counter, so it can be undone exactly."""

    key: str
    failures: int
    blocked_before: float
    blocked_until: float


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of `claim_attempt`: either charges, or how long until an attempt is allowed."""

    charges: tuple[Charge, ...] = ()
    retry_after: float = 0.0


class AuthStore(Protocol):
    """What the domain (and the housekeeping purger) need from storage; `store.SqlAuthStore`
    implements it. Times are UNIX seconds from the domain's clock; tokens and keys arrive
    already hashed."""

    @property
    def audit(self) -> AuditStore:
        """Auth's security audit records (services/kit/audit.py)."""
        ...

    async def close(self) -> None: ...

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
        audit_events: Sequence[AuditEvent] = (),
        amr: str = "pwd",
    ) -> None:
        """A new login: its session (auth_time `now`) and the first refresh token, and
        `audit_events` in the same transaction."""
        ...

    async def reauthenticate_session(self, session_id: str, user_id: str, *, now: float) -> bool:
        """Set a live session's auth_time to `now` and its amr to "pwd otp"; False when the
        session is not the user's or is revoked."""
        ...

    async def session_auth(self, session_id: str) -> tuple[str, float] | None:
        """(amr, auth_time) of a live session, or None."""
        ...

    # ---- the second step of a login ----------------------------------------------------------

    async def create_mfa_challenge(self, challenge: MfaChallenge, *, now: float) -> None: ...

    async def find_mfa_challenge(self, token_hash: str, *, now: float) -> MfaChallenge | None:
        """An unused, unexpired challenge, or None."""
        ...

    async def spend_mfa_challenge(self, token_hash: str, *, now: float) -> bool:
        """Mark it used; False when it was used (or expired) already: of two concurrent
        spends exactly one wins."""
        ...

    async def find_token(self, token_hash: str) -> TokenRecord | None: ...

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
        """Spend a refresh token and store its successor, atomically. How many times it had been
        spent before (0 for the first spend), or None when it may not be spent."""
        ...

    async def revoke_session(
        self,
        session_id: str,
        *,
        now: float,
        reason: str,
        keep_until: float,
        audit_template: AuditEvent | None = None,
    ) -> int:
        """Revoke one session and log it for WatchRevocations until `keep_until`; with
        `audit_template`, one audit record per ended session in the same transaction."""
        ...

    async def revoke_user_sessions(
        self,
        user_id: str,
        *,
        now: float,
        reason: str,
        keep_until: float,
        except_session: str = "",
        audit_template: AuditEvent | None = None,
    ) -> int: ...

    async def list_sessions(self, user_id: str, *, now: float) -> list[SessionRecord]: ...

    async def session_owner(self, session_id: str) -> str | None: ...

    async def revocations_since(
        self, *, after: int, logged_since: float, now: float
    ) -> list[RevocationRecord]: ...

    async def last_revocation_cursor(self) -> int: ...

    async def session_revoked_reason(self, session_id: str) -> str | None: ...

    # ---- failed-login counters ---------------------------------------------------------------

    async def claim_attempt(
        self,
        keys: Sequence[ThrottleKey],
        *,
        now: float,
        forget_before: float,
        backoff: Callable[[int, int], float],
    ) -> Claim:
        """Charge one failure to every key before the password is checked, unless a key is in
        back-off (then nothing is charged and `retry_after` says how long to wait)."""
        ...

    async def blocked_until(self, keys: Sequence[ThrottleKey]) -> float: ...

    async def settle(self, claim: Claim, *, reset: Sequence[str] = ()) -> None:
        """Undo a claim's charges; keys in `reset` are cleared entirely."""
        ...

    async def throttle_state(self, key: str) -> tuple[int, float] | None: ...

    # ---- device tokens -----------------------------------------------------------------------

    async def create_device(
        self, *, token_hash: str, user_id: str, login_key: str, now: float, expires_at: float
    ) -> None: ...

    async def claim_device(
        self, token_hash: str, *, login_key: str, now: float, max_failures: int
    ) -> DeviceClaim | None: ...

    async def renew_device(self, token_hash: str, *, now: float, expires_at: float) -> bool: ...

    async def refund_device(self, token_hash: str) -> None: ...

    async def lock_device(self, token_hash: str, *, now: float) -> None: ...

    async def delete_device(self, token_hash: str) -> None: ...

    async def delete_user_devices(self, user_id: str) -> int: ...

    async def device_state(self, token_hash: str) -> DeviceRecord | None: ...

    # ---- housekeeping ------------------------------------------------------------------------

    async def purge(self, *, now: float, tokens_expired_before: float, failures_before: float) -> int:
        """Delete long-expired tokens, empty sessions, forgotten counters, expired device
        tokens and expired mfa_token challenges; the number of rows removed."""
        ...
