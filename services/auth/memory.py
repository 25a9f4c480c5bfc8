"""Auth's collaborators in a process's memory, for tests and experiments:

- `MemoryAuthStore`, the `model.AuthStore` in dicts, with the SQL store's contract
  (tests/auth/test_store_conformance.py runs the same tests on both): a refresh token is spent
  once, or again within the grace window; a revoked session keeps its first reason; a login claim
  charges every key or none; a refund restores a back-off only if nothing moved it since.
- `MemoryUsersClient`, the `model.UsersClient` over a dict of accounts (plaintext passwords,
  compared in constant time), which can be made unavailable to stand for a users outage.

Every store method runs without awaiting, so each is atomic under asyncio, as one SQL statement
or transaction is.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import pyotp

from services.auth.model import (
    AccountDisabled,
    AuthStore,
    Charge,
    Claim,
    DeviceClaim,
    DeviceRecord,
    Identity,
    InvalidCredentials,
    MfaChallenge,
    RevocationRecord,
    SessionRecord,
    ThrottleKey,
    TokenRecord,
    UnknownUser,
    UsersClient,
)
from services.kit import audit
from services.kit.context import Role
from services.kit.errors import InvalidArgument, Unavailable
from services.kit.single_use import TokenRefused, new_token


@dataclass(slots=True)
class _Session:
    user_id: str
    created_at: float
    revoked_at: float | None = None
    revoked_reason: str | None = None
    last_used_at: float = 0.0
    user_agent: str = ""
    client_address: str = ""
    amr: str = "pwd"
    auth_time: float = 0.0


@dataclass(slots=True)
class _Token:
    session_id: str
    created_at: float
    expires_at: float
    parent_hash: str | None = None
    spent_at: float | None = None
    grace_uses: int = 0


@dataclass(slots=True)
class _Counter:
    failures: int
    last_failure_at: float
    blocked_until: float = 0.0


@dataclass(slots=True)
class _Device:
    user_id: str
    login_key: str
    created_at: float
    last_used_at: float
    expires_at: float
    failures: int = 0
    locked_at: float | None = None


class MemoryAuthStore:
    """Sessions, refresh tokens, failed-login counters and device tokens in four dicts, and the
    revocation log in a list."""

    def __init__(self) -> None:
        self.revocations: list[RevocationRecord] = []
        self.revocation_logged_at: dict[int, float] = {}  # cursor -> when it was logged
        self.sessions: dict[str, _Session] = {}
        self.tokens: dict[str, _Token] = {}  # token hash -> token
        self.counters: dict[str, _Counter] = {}  # throttle key -> counter
        self.devices: dict[str, _Device] = {}  # token hash -> device token
        self.audit = audit.MemoryAuditLog()
        self.challenges: dict[str, tuple[MfaChallenge, float | None]] = {}  # hash -> (it, used_at)

    async def close(self) -> None:
        pass

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
        audit_events: Sequence[audit.AuditEvent] = (),
        amr: str = "pwd",
    ) -> None:
        await self.audit.record(*audit_events)
        self.sessions[session_id] = _Session(
            user_id=user_id,
            created_at=now,
            last_used_at=now,
            user_agent=user_agent,
            client_address=client_address,
            amr=amr,
            auth_time=now,
        )
        self.tokens[token_hash] = _Token(session_id=session_id, created_at=now, expires_at=expires_at)

    async def find_token(self, token_hash: str) -> TokenRecord | None:
        token = self.tokens.get(token_hash)
        session = None if token is None else self.sessions.get(token.session_id)
        if token is None or session is None:
            return None
        return TokenRecord(
            token_hash=token_hash,
            session_id=token.session_id,
            user_id=session.user_id,
            expires_at=token.expires_at,
            spent_at=token.spent_at,
            session_revoked_at=session.revoked_at,
            amr=session.amr,
            auth_time=session.auth_time,
        )

    async def reauthenticate_session(self, session_id: str, user_id: str, *, now: float) -> bool:
        session = self.sessions.get(session_id)
        if session is None or session.user_id != user_id or session.revoked_at is not None:
            return False
        session.auth_time, session.amr = now, "pwd otp"
        return True

    async def session_auth(self, session_id: str) -> tuple[str, float] | None:
        session = self.sessions.get(session_id)
        if session is None or session.revoked_at is not None:
            return None
        return session.amr, session.auth_time

    async def create_mfa_challenge(self, challenge: MfaChallenge, *, now: float) -> None:
        self.challenges[challenge.token_hash] = (challenge, None)

    async def find_mfa_challenge(self, token_hash: str, *, now: float) -> MfaChallenge | None:
        challenge, used_at = self.challenges.get(token_hash, (None, None))
        if challenge is None or used_at is not None or challenge.expires_at <= now:
            return None
        return challenge

    async def spend_mfa_challenge(self, token_hash: str, *, now: float) -> bool:
        if await self.find_mfa_challenge(token_hash, now=now) is None:
            return False
        self.challenges[token_hash] = (self.challenges[token_hash][0], now)
        return True

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
        token = self.tokens.get(token_hash)
        session = self.sessions.get(session_id)
        if (
            token is None
            or token.expires_at <= now
            or (token.spent_at is not None and token.spent_at < grace_since)
            or session is None
            or session.revoked_at is not None
        ):
            return None
        if token.spent_at is None:
            token.spent_at = now
        else:
            token.grace_uses += 1
        self.tokens[new_hash] = _Token(
            session_id=session_id, created_at=now, expires_at=expires_at, parent_hash=token_hash
        )
        session.last_used_at, session.user_agent, session.client_address = now, user_agent, client_address
        return token.grace_uses

    async def revoke_session(
        self,
        session_id: str,
        *,
        now: float,
        reason: str,
        keep_until: float,
        audit_template: audit.AuditEvent | None = None,
    ) -> int:
        which = [sid for sid in self.sessions if sid == session_id]
        return await self._revoke(which, now, reason, keep_until, audit_template)

    async def revoke_user_sessions(
        self,
        user_id: str,
        *,
        now: float,
        reason: str,
        keep_until: float,
        except_session: str = "",
        audit_template: audit.AuditEvent | None = None,
    ) -> int:
        which = [sid for sid, s in self.sessions.items() if s.user_id == user_id and sid != except_session]
        return await self._revoke(which, now, reason, keep_until, audit_template)

    async def _revoke(
        self,
        session_ids: list[str],
        now: float,
        reason: str,
        keep_until: float,
        template: audit.AuditEvent | None,
    ) -> int:
        """Revoke the live ones among `session_ids`, logging each; a revoked one keeps its first
        reason."""
        live = [sid for sid in session_ids if self.sessions[sid].revoked_at is None]
        for session_id in live:
            session = self.sessions[session_id]
            session.revoked_at, session.revoked_reason = now, reason
            cursor = (self.revocations[-1].cursor if self.revocations else 0) + 1
            self.revocations.append(RevocationRecord(cursor, session_id, keep_until))
            self.revocation_logged_at[cursor] = now
        await self.audit.record(*audit.per_session(template, live))
        return len(live)

    async def list_sessions(self, user_id: str, *, now: float) -> list[SessionRecord]:
        live_tokens = {t.session_id for t in self.tokens.values() if t.expires_at > now}
        found = [
            SessionRecord(sid, s.user_id, s.created_at, s.last_used_at, s.user_agent, s.client_address)
            for sid, s in self.sessions.items()
            if s.user_id == user_id and s.revoked_at is None and sid in live_tokens
        ]
        return sorted(found, key=lambda r: (-r.created_at, r.session_id))

    async def session_owner(self, session_id: str) -> str | None:
        session = self.sessions.get(session_id)
        return None if session is None or session.revoked_at is not None else session.user_id

    async def revocations_since(
        self, *, after: int, logged_since: float, now: float
    ) -> list[RevocationRecord]:
        return [
            r
            for r in self.revocations
            if r.expires_at > now
            and (r.cursor > after or self.revocation_logged_at[r.cursor] >= logged_since)
        ]

    async def last_revocation_cursor(self) -> int:
        return self.revocations[-1].cursor if self.revocations else 0

    async def session_revoked_reason(self, session_id: str) -> str | None:
        session = self.sessions.get(session_id)
        return None if session is None else session.revoked_reason

    # ---- failed-login counters ---------------------------------------------------------------

    async def claim_attempt(
        self,
        keys: Sequence[ThrottleKey],
        *,
        now: float,
        forget_before: float,
        backoff: Callable[[int, int], float],
    ) -> Claim:
        """Charge every key or, when one is in back-off, none (changes are staged on copies and
        kept only if all keys could be charged, like the SQL store's transaction)."""
        ordered = sorted(keys, key=lambda k: k.key)
        staged: dict[str, _Counter] = {}
        charges: list[Charge] = []
        for item in ordered:
            counter = staged.get(item.key) or self.counters.get(item.key)
            if counter is None:
                counter = _Counter(failures=1, last_failure_at=now)
            elif counter.blocked_until > now:
                return Claim(retry_after=max(self._latest(ordered) - now, 0.001))
            else:
                failures = 1 if counter.last_failure_at < forget_before else counter.failures + 1
                counter = replace(counter, failures=failures, last_failure_at=now)
            blocked_before = counter.blocked_until
            delay = backoff(counter.failures, item.threshold)
            if delay > 0:
                counter.blocked_until = max(blocked_before, now + delay)
            staged[item.key] = counter
            charges.append(Charge(item.key, counter.failures, blocked_before, counter.blocked_until))
        self.counters.update(staged)
        return Claim(charges=tuple(charges))

    async def blocked_until(self, keys: Sequence[ThrottleKey]) -> float:
        return self._latest(keys)

    def _latest(self, keys: Sequence[ThrottleKey]) -> float:
        return max((self.counters[k.key].blocked_until for k in keys if k.key in self.counters), default=0.0)

    async def settle(self, claim: Claim, *, reset: Sequence[str] = ()) -> None:
        for charge in claim.charges:
            counter = self.counters.get(charge.key)
            if counter is None:
                continue
            if charge.key in reset:
                counter.failures, counter.blocked_until = 0, 0.0
                continue
            counter.failures = max(counter.failures - 1, 0)
            if counter.blocked_until == charge.blocked_until:
                counter.blocked_until = charge.blocked_before

    async def throttle_state(self, key: str) -> tuple[int, float] | None:
        counter = self.counters.get(key)
        return None if counter is None else (counter.failures, counter.blocked_until)

    # ---- device tokens -----------------------------------------------------------------------

    async def create_device(
        self, *, token_hash: str, user_id: str, login_key: str, now: float, expires_at: float
    ) -> None:
        self.devices[token_hash] = _Device(
            user_id=user_id, login_key=login_key, created_at=now, last_used_at=now, expires_at=expires_at
        )

    async def claim_device(
        self, token_hash: str, *, login_key: str, now: float, max_failures: int
    ) -> DeviceClaim | None:
        device = self.devices.get(token_hash)
        if (
            device is None
            or device.login_key != login_key
            or device.expires_at <= now
            or device.locked_at is not None
            or device.failures >= max_failures
        ):
            return None
        device.failures += 1
        return DeviceClaim(token_hash, device.user_id, device.failures)

    async def renew_device(self, token_hash: str, *, now: float, expires_at: float) -> bool:
        device = self.devices.get(token_hash)
        if device is None or device.locked_at is not None:
            return False
        device.failures, device.last_used_at, device.expires_at = 0, now, expires_at
        return True

    async def refund_device(self, token_hash: str) -> None:
        device = self.devices.get(token_hash)
        if device is not None and device.failures > 0:
            device.failures -= 1

    async def lock_device(self, token_hash: str, *, now: float) -> None:
        device = self.devices.get(token_hash)
        if device is not None and device.locked_at is None:
            device.locked_at = now

    async def delete_device(self, token_hash: str) -> None:
        self.devices.pop(token_hash, None)

    async def delete_user_devices(self, user_id: str) -> int:
        mine = [h for h, d in self.devices.items() if d.user_id == user_id]
        for token_hash in mine:
            del self.devices[token_hash]
        return len(mine)

    async def device_state(self, token_hash: str) -> DeviceRecord | None:
        device = self.devices.get(token_hash)
        if device is None:
            return None
        return DeviceRecord(device.user_id, device.failures, device.expires_at, device.locked_at)

    # ---- housekeeping ------------------------------------------------------------------------

    async def purge(self, *, now: float, tokens_expired_before: float, failures_before: float) -> int:
        tokens = [h for h, t in self.tokens.items() if t.expires_at < tokens_expired_before]
        for token_hash in tokens:
            del self.tokens[token_hash]
        with_tokens = {t.session_id for t in self.tokens.values()}
        sessions = [
            sid
            for sid, s in self.sessions.items()
            if sid not in with_tokens and s.created_at < tokens_expired_before
        ]
        for session_id in sessions:
            del self.sessions[session_id]
        counters = [
            k
            for k, c in self.counters.items()
            if c.last_failure_at < failures_before and c.blocked_until < now
        ]
        for key in counters:
            del self.counters[key]
        devices = [h for h, d in self.devices.items() if d.expires_at < now]
        for token_hash in devices:
            del self.devices[token_hash]
        # The newest revocation stays, expired or not: it holds the cursor subscribers resume from.
        revocations = [r for r in self.revocations[:-1] if r.expires_at < now]
        self.revocations = [r for r in self.revocations if r not in revocations]
        challenges = [h for h, (c, _) in self.challenges.items() if c.expires_at < now]
        for token_hash in challenges:
            del self.challenges[token_hash]
        return len(tokens) + len(sessions) + len(counters) + len(devices) + len(revocations) + len(challenges)


@dataclass(slots=True)
class _Account:
    username: str
    email: str
    password: str = field(repr=False)
    role: Role
    disabled: bool = False
    email_verified: bool = False
    totp_secret: str = field(default="", repr=False)
    totp_last_step: int = 0
    recovery_codes: set[str] = field(default_factory=set, repr=False)


class MemoryUsersClient:
    """The users service as auth sees it, over a dict of accounts. Login names match as users
    matches them: a username or an e-mail address, in any case. `unavailable = True` makes every
    call fail as a users outage does (503 USERS_UNAVAILABLE)."""

    def __init__(self) -> None:
        self.accounts: dict[str, _Account] = {}
        self.unavailable = False
        self.reset_tokens: dict[str, tuple[str, bool]] = {}  # token -> (user id, spent)
        self.clock: Callable[[], float] = time.time

    def add(self, username: str, password: str, *, email: str = "", role: Role = "user") -> str:
        """A new account; its id."""
        user_id = str(uuid.uuid4())
        self.accounts[user_id] = _Account(username, email or f"{username}@example.com", password, role)
        return user_id

    def _check_up(self) -> None:
        if self.unavailable:
            raise Unavailable(
                "the account directory is unavailable; try again shortly", reason="USERS_UNAVAILABLE"
            )

    def _find(self, login: str) -> str:
        """The id of the account a login name reaches, or "": as users decides, a name with an
        "@" is an e-mail address, anything else a username, both in any case."""
        name = login.strip().lower()
        for user_id, account in self.accounts.items():
            if name and name == (account.email if "@" in name else account.username).lower():
                return user_id
        return ""

    async def resolve_login(self, login: str) -> str:
        self._check_up()
        return self._find(login)

    async def verify_credentials(self, username: str, password: str) -> Identity:
        self._check_up()
        user_id = self._find(username)
        account = self.accounts.get(user_id)
        # Compared as bytes, in constant time, whether or not the account exists.
        expected = (account.password if account else "").encode()
        if not hmac.compare_digest(expected, password.encode()) or account is None:
            raise InvalidCredentials
        if account.disabled:
            raise AccountDisabled
        return Identity(
            user_id=user_id,
            role=account.role,
            email_verified=account.email_verified,
            totp_enabled=bool(account.totp_secret),
        )

    async def verify_second_factor(self, user_id: str, code: str, recovery_code: str) -> int:
        """As users checks it (services/users/totp.py): ±1 step, each step once; a recovery
        code once."""
        self._check_up()
        account = self.accounts.get(user_id)
        if account is None or not account.totp_secret:
            raise InvalidCredentials
        if recovery_code:
            if recovery_code not in account.recovery_codes:
                raise InvalidCredentials
            account.recovery_codes.discard(recovery_code)
            return len(account.recovery_codes)
        now = self.clock()
        authenticator = pyotp.TOTP(account.totp_secret)
        steps = [
            int(now // 30) + d
            for d in (-1, 0, 1)
            if hmac.compare_digest(authenticator.at(now + 30 * d), code)
        ]
        if not steps or steps[-1] <= account.totp_last_step:
            raise InvalidCredentials
        step = steps[-1]
        account.totp_last_step = step
        return len(account.recovery_codes)

    async def get_identity(self, user_id: str) -> Identity:
        self._check_up()
        account = self.accounts.get(user_id)
        if account is None:
            raise UnknownUser
        return Identity(
            user_id=user_id,
            role=account.role,
            disabled=account.disabled,
            email_verified=account.email_verified,
            totp_enabled=bool(account.totp_secret),
        )

    async def remove_second_factor(self, user_id: str) -> bool:
        self._check_up()
        account = self.accounts.get(user_id)
        if account is None:
            raise UnknownUser
        removed = bool(account.totp_secret)
        account.totp_secret, account.recovery_codes = "", set()
        return removed

    async def change_password(self, user_id: str, current_password: str, new_password: str) -> None:
        self._check_up()
        if not 10 <= len(new_password) <= 256:  # users' rule (services/users/validation.py)
            raise InvalidArgument("invalid input", [("new_password", "must be 10 to 256 characters")])
        account = self.accounts.get(user_id)
        expected = (account.password if account else "").encode()
        if not hmac.compare_digest(expected, current_password.encode()) or account is None:
            raise InvalidCredentials
        account.password = new_password

    async def set_disabled(self, user_id: str, disabled: bool) -> None:
        self._check_up()
        account = self.accounts.get(user_id)
        if account is None:
            raise UnknownUser
        account.disabled = disabled

    def issue_reset(self, user_id: str) -> str:
        """A reset token for the account, as users' RequestPasswordReset mails one."""
        token = new_token()
        self.reset_tokens[token] = (user_id, False)
        return token

    async def confirm_password_reset(self, token: str, new_password: str) -> str:
        self._check_up()
        if not 10 <= len(new_password) <= 256:  # users' rule (services/users/validation.py)
            raise InvalidArgument("invalid input", [("new_password", "must be 10 to 256 characters")])
        user_id, spent = self.reset_tokens.get(token, ("", False))
        account = self.accounts.get(user_id)
        if account is None:
            raise TokenRefused("MAIL_TOKEN_INVALID")
        if spent:
            raise TokenRefused("MAIL_TOKEN_USED")
        self.reset_tokens[token] = (user_id, True)
        account.password, account.email_verified = new_password, True
        return user_id


_store: type[AuthStore] = MemoryAuthStore  # mypy checks that each is one
_users: type[UsersClient] = MemoryUsersClient
