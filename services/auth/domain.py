"""Auth's rules: login with throttling (strangers per account and IP, known devices per device
token), refresh-token rotation with reuse detection and a grace window, logout, and the signing
keys.

Plain typed code: the store, the users client, the key ring and the clock come in through
`__init__`; nothing here knows about protobuf or gRPC.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

from services.auth.config import AuthSettings
from services.auth.keys import KeyRing
from services.auth.model import (
    AccountDisabled,
    AuthStore,
    Charge,
    Claim,
    DeviceClaim,
    Identity,
    InvalidCredentials,
    MfaChallenge,
    SessionRecord,
    ThrottleKey,
    TokenRecord,
    UnknownUser,
    UsersClient,
)
from services.kit import audit, metrics
from services.kit.context import Principal
from services.kit.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Violations,
)
from services.kit.single_use import token_hash

log = logging.getLogger(__name__)

# A throttled login's audit record is written at most this often per account and client address.
THROTTLE_AUDIT_INTERVAL = 60.0

# The one answer to a wrong password and to an unknown account: same code, reason and message.
INVALID_CREDENTIALS_MESSAGE = "the username or password is incorrect"

# A client IP may fail this many times more than one account before it is throttled: many
# people can share one address (an office, a carrier-grade NAT), and the per-account counter
# already stops guessing at any single account.
IP_FAILURE_FACTOR = 4
# A failure counter with no failure for this long starts again from zero.
FAILURE_MEMORY_SECONDS = 24 * 3600
# Inputs longer than these are refused before any work (a password hash costs time and memory).
MAX_USERNAME_LENGTH = 320
MAX_PASSWORD_LENGTH = 1024
MAX_REFRESH_TOKEN_LENGTH = 256
MAX_DEVICE_TOKEN_LENGTH = 256
MAX_USER_AGENT_LENGTH = 256
MAX_MFA_TOKEN_LENGTH = 256
MAX_CODE_LENGTH = 64
# A revoked session id is streamed to the services until its last access token has expired:
# the access-token lifetime after the revocation, plus this margin for the verifiers' leeway
# (30 s by default) and clock skew.
REVOCATION_MARGIN_SECONDS = 60


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """The knobs, taken from AuthSettings."""

    issuer: str = "pinexa-auth"
    audience: str = "pinexa"
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    reuse_grace: float = 10.0
    max_failures: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 900.0
    device_token_ttl: int = 90 * 24 * 3600
    require_verified_email: bool = False
    mfa_token_ttl: int = 300
    step_up_max_age: int = 600

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> AuthPolicy:
        return cls(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_token_ttl=settings.access_token_ttl_seconds,
            refresh_token_ttl=settings.refresh_token_ttl_seconds,
            reuse_grace=settings.refresh_reuse_grace_seconds,
            require_verified_email=settings.require_verified_email,
            max_failures=settings.login_max_failures,
            backoff_base=settings.login_backoff_base_seconds,
            backoff_max=settings.login_backoff_max_seconds,
            device_token_ttl=settings.login_device_token_ttl_seconds,
            mfa_token_ttl=settings.mfa_token_ttl_seconds,
            step_up_max_age=settings.step_up_max_age_seconds,
        )

    def backoff(self, failures: int, threshold: int) -> float:
        """Seconds to wait after `failures` failed attempts: none below the threshold, then
        base, 2 * base, 4 * base ... up to the maximum."""
        if failures < threshold:
            return 0.0
        return float(min(self.backoff_base * 2.0 ** min(failures - threshold, 62), self.backoff_max))


@dataclass(frozen=True, slots=True)
class Client:
    """Where a login or refresh comes from, as the session records it."""

    address: str = ""
    user_agent: str = ""


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session as its owner sees it."""

    record: SessionRecord
    current: bool


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 (a token type, not a secret)
    device_token: str = field(default="", repr=False)  # Login only


# SHA-256 of an opaque token (refresh or device): what the store keeps and looks tokens up by.
# The tokens are 256 random bits, so a fast unkeyed hash is enough, and a lookup by hash never
# compares the secret itself (no timing to measure). The same hash as the kit's single-use tokens.
hash_token = token_hash


def throttle_key(kind: str, value: str) -> str:
    """The stored (hashed) name of a failure counter."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def normalize_username(username: str) -> str:
    """The login name a device token is bound to: usernames and e-mail addresses are unique
    regardless of case."""
    return username.strip().casefold()


def unknown_login_key(login: str) -> str:
    """The strangers' counter of a name no account has: its compatibility-normalised, case-folded
    form, so the variants of one name share one budget, as an account's names do."""
    return throttle_key("login", unicodedata.normalize("NFKC", login).strip().casefold())


def account_key(user_id: str) -> str:
    """The strangers' counter of an account, whichever of its names was typed."""
    return throttle_key("user", user_id)


def _throttled_if(retry_after: float) -> None:
    """429 LOGIN_THROTTLED when an attempt must wait `retry_after` more seconds."""
    if retry_after > 0:
        log.info("login throttled", extra={"retry_after": round(retry_after, 3)})
        raise ResourceExhausted(
            "too many failed login attempts; try again later",
            retry_after=retry_after,
            reason="LOGIN_THROTTLED",
        )


@dataclass(slots=True)
class _Attempt:
    """What a login learned about itself, for its audit record."""

    device: str  # "used" or "none": whether a device token was presented ('' for a second step)
    subject: str = ""  # the account the typed name reached, once known
    method: str = ""  # a second step's: "totp" or "recovery_code"

    def detail(self, reason: str) -> dict[str, str | int]:
        detail: dict[str, str | int] = {"reason": reason}
        if self.device:
            detail["device_token"] = self.device
        if self.method:
            detail["method"] = self.method
        return detail


class AuthDomain:
    def __init__(
        self,
        *,
        store: AuthStore,
        users: UsersClient,
        keys: KeyRing,
        policy: AuthPolicy,
        clock: Callable[[], float] = time.time,
        is_outage: Callable[[BaseException], bool] = lambda _exc: False,
        on_revoke: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        # (account, client address) -> when its last LOGIN_THROTTLED audit record was written.
        self._throttle_recorded: dict[tuple[str, str], float] = {}
        # Told after every revocation (the revocation log wakes its streams).
        self._on_revoke = on_revoke
        self._users = users
        self._keys = keys
        self._policy = policy
        self._clock = clock
        # Tells a store outage (already logged once by the health monitor) from a bug.
        self._is_outage = is_outage

    # ---- tokens ------------------------------------------------------------------------------

    def jwks(self) -> list[dict[str, str]]:
        return self._keys.jwks()

    def _access_token(
        self, identity: Identity, session_id: str, now: float, amr: str = "pwd", auth_time: float = 0.0
    ) -> str:
        issued = int(now)
        claims = {
            "iss": self._policy.issuer,
            "aud": self._policy.audience,
            "sub": identity.user_id,
            "sid": session_id,
            "role": identity.role,
            "email_verified": identity.email_verified,
            # RFC 8176 method names; OpenID Connect's auth_time: when the user last proved who
            # they are in this session (kept through refreshes, renewed by reauthentication).
            "amr": amr.split(),
            "auth_time": int(auth_time or now),
            "jti": uuid.uuid4().hex,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self._policy.access_token_ttl,
        }
        return self._keys.signing_key().sign(claims)

    def _pair(
        self,
        identity: Identity,
        session_id: str,
        refresh_token: str,
        now: float,
        amr: str = "pwd",
        auth_time: float = 0.0,
    ) -> TokenPair:
        return TokenPair(
            access_token=self._access_token(identity, session_id, now, amr, auth_time),
            refresh_token=refresh_token,
            expires_in=self._policy.access_token_ttl,
        )

    # ---- login -------------------------------------------------------------------------------

    async def login(
        self,
        username: str,
        password: str,
        *,
        client_ip: str,
        device_token: str = "",
        user_agent: str = "",
    ) -> TokenPair:
        """`_login`, with its audit record: LOGIN_SUCCEEDED (written with the new session),
        LOGIN_FAILED or LOGIN_THROTTLED (written on their own). The typed name is never recorded:
        only the account it reached (`subject_id`, '' for a name no account has)."""
        attempt = _Attempt(device="used" if device_token else "none")
        try:
            return await self._login(
                username,
                password,
                client_ip=client_ip,
                device_token=device_token,
                user_agent=user_agent,
                attempt=attempt,
            )
        except ResourceExhausted:
            await self._audit_throttled(attempt, client_ip)
            raise
        except (Unauthenticated, PermissionDenied) as error:
            if error.reason == "MFA_REQUIRED":  # the right password: the login awaits login:mfa
                await self._audit_login(audit.LOGIN_MFA_REQUIRED, attempt, audit.SUCCESS, error.reason)
            else:
                await self._audit_login(audit.LOGIN_FAILED, attempt, audit.FAILURE, error.reason)
            raise

    async def _audit_throttled(self, attempt: _Attempt, client_ip: str) -> None:
        """A throttled login takes no write lock (a flood in back-off must not slow the logins
        that write), so its audit record is written at most once a minute per account and client
        address; every one is still logged (and counted in pinexa_logins_total)."""
        key = (attempt.subject, client_ip)
        now = self._clock()
        if now - self._throttle_recorded.get(key, -THROTTLE_AUDIT_INTERVAL) < THROTTLE_AUDIT_INTERVAL:
            audit.emit_log(
                self._event(
                    audit.LOGIN_THROTTLED,
                    attempt.subject,
                    actor_id="",
                    outcome=audit.REFUSED,
                    detail=attempt.detail("LOGIN_THROTTLED"),
                )
            )
            return
        if len(self._throttle_recorded) >= 10_000:
            self._throttle_recorded.clear()
        self._throttle_recorded[key] = now
        await self._audit_login(audit.LOGIN_THROTTLED, attempt, audit.REFUSED, "LOGIN_THROTTLED")

    async def _audit_login(self, kind: str, attempt: _Attempt, outcome: str, reason: str) -> None:
        event = self._event(
            kind,
            attempt.subject,
            actor_id="",
            outcome=outcome,
            detail=attempt.detail(reason),
        )
        await self._compensate(self._store.audit.record(event))

    def _event(self, kind: str, subject_id: str, **kwargs: Any) -> audit.AuditEvent:
        return audit.new_event("auth", kind, subject_id=subject_id, now=self._clock(), **kwargs)

    async def _login(
        self,
        username: str,
        password: str,
        *,
        client_ip: str,
        device_token: str,
        user_agent: str,
        attempt: _Attempt,
    ) -> TokenPair:
        """Check a username-or-email and password, and open a session.

        A login that presents a device token this login name was given before (`device_token`)
        is charged to that token alone (`_login_as_device`). Any other login is a stranger's: it
        is charged to the account's counter and the client IP's, before the password is checked,
        so neither many addresses nor many parallel guesses get past the back-off. The account's
        counter is found by asking users which account the name reaches (`_strangers_key`), so
        its username, its e-mail and every case of them share one budget.
        """
        violations = Violations()
        violations.check(bool(username.strip()), "username", "is required")
        violations.check(len(username) <= MAX_USERNAME_LENGTH, "username", "is too long")
        violations.check(bool(password), "password", "is required")
        violations.check(len(password) <= MAX_PASSWORD_LENGTH, "password", "is too long")
        violations.check(len(device_token) <= MAX_DEVICE_TOKEN_LENGTH, "device_token", "is too long")
        violations.raise_if_any()

        now = self._clock()
        client = Client(address=client_ip, user_agent=user_agent[:MAX_USER_AGENT_LENGTH])
        login_key = throttle_key("account", normalize_username(username))
        if device_token:
            device = await self._store.claim_device(
                hash_token(device_token),
                login_key=login_key,
                now=now,
                max_failures=self._policy.max_failures,
            )
            if device is not None:
                attempt.subject = device.user_id
                return await self._login_as_device(
                    username, password, device, device_token, login_key, now, client
                )

        keys = []
        if client_ip:
            ip = ThrottleKey(throttle_key("ip", client_ip), self._policy.max_failures * IP_FAILURE_FACTOR)
            # An address in back-off is answered before users is asked anything: a flood from
            # it costs users nothing, and auth's own database is the first thing a login needs.
            _throttled_if(await self._store.blocked_until([ip]) - now)
            keys.append(ip)
        resolved, strangers_key = await self._strangers_key(username)
        attempt.subject = resolved
        keys.append(ThrottleKey(strangers_key, self._policy.max_failures))
        claim = await self._store.claim_attempt(
            keys, now=now, forget_before=now - FAILURE_MEMORY_SECONDS, backoff=self._policy.backoff
        )
        _throttled_if(claim.retry_after)
        try:
            identity = await self._users.verify_credentials(username, password)
        except InvalidCredentials:
            log.info("login failed", extra={"failures": max(c.failures for c in claim.charges)})
            raise Unauthenticated(INVALID_CREDENTIALS_MESSAGE, reason="INVALID_CREDENTIALS") from None
        except AccountDisabled:
            await self._refund(claim)  # the right password: not a guess
            raise _disabled() from None
        except Exception:
            await self._refund(claim)  # not a wrong guess (users unreachable): don't count it
            raise
        # A success resets the account's counter; if the name reached another account by the
        # time the password was checked (an e-mail moved meanwhile), it is only refunded.
        await self._store.settle(claim, reset=[strangers_key] if identity.user_id == resolved else [])
        self._require_verified(identity)
        if identity.totp_enabled:
            await self._mfa_required(identity, login_key, now, client)
        pair = await self._new_session(identity, now, client, device=attempt.device)
        return replace(pair, device_token=await self._new_device(identity, login_key, now))

    def _require_verified(self, identity: Identity) -> None:
        """With REQUIRE_VERIFIED_EMAIL, a right password of an unverified account opens no
        session (checked only after the password, so it tells a stranger nothing)."""
        if self._policy.require_verified_email and not identity.email_verified:
            raise PermissionDenied(
                "confirm your e-mail address first: open the link in the verification mail; a "
                "password reset's link confirms it too",
                reason="EMAIL_NOT_VERIFIED",
            )

    async def _mfa_required(self, identity: Identity, login_key: str, now: float, client: Client) -> NoReturn:
        """The password was right and the account has a second factor: no session yet, but a
        single-use token, valid `mfa_token_ttl`, for LoginMfa. It carries the password step
        (account, login name, client), so the second step needs no password again."""
        mfa_token = secrets.token_urlsafe(32)
        await self._store.create_mfa_challenge(
            MfaChallenge(
                token_hash=hash_token(mfa_token),
                user_id=identity.user_id,
                login_key=login_key,
                user_agent=client.user_agent,
                client_address=client.address,
                expires_at=now + self._policy.mfa_token_ttl,
            ),
            now=now,
        )
        raise Unauthenticated(
            "this account has a second factor: send a code from the authenticator (or a recovery "
            "code) with mfa_token to POST /api/v1/auth/login:mfa",
            reason="MFA_REQUIRED",
            metadata={"mfa_token": mfa_token, "expires_in": str(self._policy.mfa_token_ttl)},
        )

    async def _second_factor(self, user_id: str, code: str, recovery_code: str, now: float) -> str:
        """Check a code (or spend a recovery code) for `user_id`, throttled per account like
        passwords: after `max_failures` wrong codes each further one doubles a back-off. The
        amr method it proves ("otp")."""
        violations = Violations()
        violations.check(
            bool(code) != bool(recovery_code), "code", "send a code or a recovery_code (one of them)"
        )
        violations.check(len(code) <= MAX_CODE_LENGTH, "code", "is too long")
        violations.check(len(recovery_code) <= MAX_CODE_LENGTH, "recovery_code", "is too long")
        violations.raise_if_any()
        key = throttle_key("second-factor", user_id)
        claim = await self._store.claim_attempt(
            [ThrottleKey(key, self._policy.max_failures)],
            now=now,
            forget_before=now - FAILURE_MEMORY_SECONDS,
            backoff=self._policy.backoff,
        )
        if claim.retry_after > 0:
            raise ResourceExhausted(
                "too many wrong codes; try again later",
                retry_after=claim.retry_after,
                reason="MFA_THROTTLED",
            )
        try:
            await self._users.verify_second_factor(user_id, code, recovery_code)
        except InvalidCredentials:
            log.info("second factor refused", extra={"failures": max(c.failures for c in claim.charges)})
            raise Unauthenticated(
                "the code is incorrect, was already used, or is not the current one",
                reason="INVALID_SECOND_FACTOR",
            ) from None
        except Exception:
            await self._refund(claim)
            raise
        await self._store.settle(claim, reset=[key])
        return "otp"

    async def login_mfa(
        self, mfa_token: str, *, code: str = "", recovery_code: str = "", client: Client | None = None
    ) -> TokenPair:
        """`_login_mfa`, with its audit record: LOGIN_SUCCEEDED (with the session; detail.method
        totp or recovery_code), LOGIN_FAILED (a wrong code, an unknown or spent mfa_token) or
        LOGIN_THROTTLED, as the password step's."""
        attempt = _Attempt(device="", method="recovery_code" if recovery_code else "totp")
        try:
            return await self._login_mfa(
                mfa_token, code=code, recovery_code=recovery_code, client=client, attempt=attempt
            )
        except ResourceExhausted:
            await self._audit_throttled(attempt, client.address if client else "")
            raise
        except (Unauthenticated, PermissionDenied) as error:
            await self._audit_login(audit.LOGIN_FAILED, attempt, audit.FAILURE, error.reason)
            raise

    async def _login_mfa(
        self, mfa_token: str, *, code: str, recovery_code: str, client: Client | None, attempt: _Attempt
    ) -> TokenPair:
        """The second step of a login: the mfa_token of a right password, and a TOTP code or a
        recovery code. The token pair (and a device token) of a session with amr pwd+otp."""
        if not mfa_token:
            raise InvalidArgument("mfa_token is required", [("mfa_token", "is required")])
        now = self._clock()
        refused = Unauthenticated(
            "the mfa_token is not valid (expired or used); log in with the password again",
            reason="MFA_TOKEN_INVALID",
        )
        if len(mfa_token) > MAX_MFA_TOKEN_LENGTH:
            raise refused
        challenge = await self._store.find_mfa_challenge(hash_token(mfa_token), now=now)
        if challenge is None:
            raise refused
        attempt.subject = challenge.user_id
        await self._second_factor(challenge.user_id, code, recovery_code, now)
        if not await self._store.spend_mfa_challenge(challenge.token_hash, now=now):
            raise refused  # a concurrent second step won
        try:
            identity = await self._users.get_identity(challenge.user_id)
        except UnknownUser:
            raise refused from None
        if identity.disabled:
            raise _disabled()
        self._require_verified(identity)
        where = client or Client(address=challenge.client_address, user_agent=challenge.user_agent)
        pair = await self._new_session(identity, now, where, amr="pwd otp", method=attempt.method)
        return replace(pair, device_token=await self._new_device(identity, challenge.login_key, now))

    async def reauthenticate(
        self, principal: Principal, *, code: str = "", recovery_code: str = ""
    ) -> TokenPair:
        """Step-up: a fresh second factor renews the current session's auth_time. A new access
        token for that session (the refresh token is unchanged; refresh_token is empty). Its
        audit record: REAUTHENTICATED, FAILURE with a wrong code (a throttled one is not
        recorded: the code was not even checked)."""
        if not principal.session_id:
            raise Unauthenticated("this access token belongs to no session", reason="TOKEN_INVALID")
        now = self._clock()
        method = "recovery_code" if recovery_code else "totp"
        detail: dict[str, str | int] = {"session_id": principal.session_id, "method": method}
        try:
            await self._second_factor(principal.user_id, code, recovery_code, now)
        except Unauthenticated as error:
            failed = {**detail, "reason": error.reason}
            await self._compensate(
                self._store.audit.record(
                    self._event(
                        audit.REAUTHENTICATED, principal.user_id, outcome=audit.FAILURE, detail=failed
                    )
                )
            )
            raise
        if not await self._store.reauthenticate_session(principal.session_id, principal.user_id, now=now):
            raise Unauthenticated("this session has ended; log in again", reason="SESSION_REVOKED")
        await self._store.audit.record(self._event(audit.REAUTHENTICATED, principal.user_id, detail=detail))
        identity = await self._users.get_identity(principal.user_id)
        return TokenPair(
            access_token=self._access_token(identity, principal.session_id, now, "pwd otp", now),
            refresh_token="",
            expires_in=self._policy.access_token_ttl,
        )

    async def _strangers_key(self, username: str) -> tuple[str, str]:
        """(the account id the name reaches or "", the strangers' counter to charge). Known and
        unknown names cost the same: one call to users, one indexed read there, one hash here."""
        user_id = await self._users.resolve_login(username)
        return user_id, account_key(user_id) if user_id else unknown_login_key(username)

    async def _login_as_device(
        self,
        username: str,
        password: str,
        device: DeviceClaim,
        device_token: str,
        login_key: str,
        now: float,
        client: Client,
    ) -> TokenPair:
        """A login from a client that logged in to this account before: charged to its device
        token only. Strangers' failures don't stop it, and its own don't stop them; after
        `max_failures` wrong passwords in a row the token is locked for good.

        Its success leaves the strangers' counter alone: an owner logging in while a flood goes
        on must not hand the flood a fresh budget.
        """
        try:
            identity = await self._users.verify_credentials(username, password)
        except InvalidCredentials:
            if device.failures >= self._policy.max_failures:
                await self._store.lock_device(device.token_hash, now=now)
                log.warning(
                    "device token locked after repeated wrong passwords",
                    extra={"user": device.user_id, "failures": device.failures},
                )
            else:
                log.info("login failed with a device token", extra={"failures": device.failures})
            raise Unauthenticated(INVALID_CREDENTIALS_MESSAGE, reason="INVALID_CREDENTIALS") from None
        except AccountDisabled:
            await self._refund_device(device)
            raise _disabled() from None
        except Exception:
            await self._refund_device(device)
            raise
        self._require_verified(identity)
        if identity.totp_enabled:
            await self._refund_device(device)  # the right password: not a failure of this device
            await self._mfa_required(identity, login_key, now, client)
        pair = await self._new_session(identity, now, client, device="used")
        if identity.user_id != device.user_id:
            # The login name now belongs to another account (the token's was deleted and the
            # name taken again): the token means nothing for this one.
            await self._store.delete_device(device.token_hash)
        elif await self._store.renew_device(
            device.token_hash, now=now, expires_at=now + self._policy.device_token_ttl
        ):
            return replace(pair, device_token=device_token)
        return replace(pair, device_token=await self._new_device(identity, login_key, now))

    async def _new_device(self, identity: Identity, login_key: str, now: float) -> str:
        device_token = secrets.token_urlsafe(32)
        await self._store.create_device(
            token_hash=hash_token(device_token),
            user_id=identity.user_id,
            login_key=login_key,
            now=now,
            expires_at=now + self._policy.device_token_ttl,
        )
        return device_token

    async def _refund_device(self, device: DeviceClaim) -> None:
        await self._compensate(self._store.refund_device(device.token_hash))

    async def _refund(self, claim: Claim) -> None:
        await self._compensate(self._store.settle(claim))

    async def _compensate(self, step: Awaitable[None]) -> None:
        """Run a refund on the way out of a failed login; its own failure must not replace the
        login's error. A database outage (logged once by the health monitor) costs one line."""
        try:
            await step
        except Exception as exc:
            if not self._is_outage(exc):
                log.exception("could not refund a login attempt")
                return
            log.warning("could not refund a login attempt: the database is unavailable")

    async def _new_session(
        self,
        identity: Identity,
        now: float,
        client: Client,
        *,
        device: str = "",
        amr: str = "pwd",
        method: str = "",
    ) -> TokenPair:
        """A session and its pair; its LOGIN_SUCCEEDED record (with the second factor's `method`
        after a second step) is written with it."""
        refresh_token = secrets.token_urlsafe(32)
        session_id = str(uuid.uuid4())
        detail: dict[str, str | int] = {"session_id": session_id}
        if device:
            detail["device_token"] = device
        if method:
            detail["method"] = method
        event = self._event(audit.LOGIN_SUCCEEDED, identity.user_id, actor_id=identity.user_id, detail=detail)
        await self._store.create_session(
            session_id=session_id,
            user_id=identity.user_id,
            token_hash=hash_token(refresh_token),
            now=now,
            expires_at=now + self._policy.refresh_token_ttl,
            user_agent=client.user_agent,
            client_address=client.address,
            audit_events=[event],
            amr=amr,
        )
        return self._pair(identity, session_id, refresh_token, now, amr, now)

    # ---- refresh -----------------------------------------------------------------------------

    async def _lookup(self, refresh_token: str) -> TokenRecord | None:
        if not refresh_token or len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
            return None
        return await self._store.find_token(hash_token(refresh_token))

    async def refresh(self, refresh_token: str, *, client: Client | None = None) -> TokenPair:
        """Spend a refresh token and return a new pair.

        - A token spent before, outside the grace window, is a reuse: its whole family is
          revoked, so whichever party holds the newest token (the thief or the user) is out too.
        - Within the grace window after its first spend, the same token is honoured again with a
          sibling token of the same family: two tabs refreshing at once both stay logged in.
        - The account is looked up first, so a deleted account cannot refresh and a changed role
          is in the next access token. That happens before the spend: if users is down the token
          stays unspent and the client can simply retry.
        """
        if not refresh_token:
            raise InvalidArgument("refresh_token is required", [("refresh_token", "is required")])
        record = await self._lookup(refresh_token)
        now = self._clock()
        if record is None:
            raise Unauthenticated("the refresh token is not valid", reason="REFRESH_TOKEN_INVALID")
        if record.session_revoked_at is not None:
            raise Unauthenticated("the refresh token has been revoked", reason="REFRESH_TOKEN_REVOKED")
        if record.expires_at <= now:
            raise Unauthenticated("the refresh token has expired", reason="REFRESH_TOKEN_EXPIRED")
        if record.spent_at is not None and now - record.spent_at > self._policy.reuse_grace:
            await self._reused(record, now)

        try:
            identity = await self._users.get_identity(record.user_id)
        except UnknownUser:
            await self._revoke_session(
                record.session_id, now=now, reason="account_deleted", user_id=record.user_id
            )
            await self._store.delete_user_devices(record.user_id)
            raise Unauthenticated("the account no longer exists", reason="ACCOUNT_NOT_FOUND") from None
        if identity.disabled:
            await self._revoke_session(
                record.session_id, now=now, reason="account_disabled", user_id=record.user_id
            )
            raise _disabled()
        client = client or Client()

        now = self._clock()  # the users call may have taken a while
        new_token = secrets.token_urlsafe(32)
        spent_before = await self._store.rotate(
            token_hash=record.token_hash,
            session_id=record.session_id,
            new_hash=hash_token(new_token),
            now=now,
            grace_since=now - self._policy.reuse_grace,
            expires_at=now + self._policy.refresh_token_ttl,
            user_agent=client.user_agent[:MAX_USER_AGENT_LENGTH],
            client_address=client.address,
        )
        if spent_before is not None:
            if spent_before:  # e.g. a second tab refreshing at the same moment
                log.info("refresh token reused within the grace window", extra={"session": record.session_id})
            return self._pair(identity, record.session_id, new_token, now, record.amr, record.auth_time)
        # Revoked or expired since we looked, or its grace window closed while users answered.
        current = await self._lookup(refresh_token)
        if current is None or current.session_revoked_at is not None:
            raise Unauthenticated("the refresh token has been revoked", reason="REFRESH_TOKEN_REVOKED")
        if current.expires_at <= now:
            raise Unauthenticated("the refresh token has expired", reason="REFRESH_TOKEN_EXPIRED")
        await self._reused(current, now)

    async def _reused(self, record: TokenRecord, now: float) -> NoReturn:
        await self._store.audit.record(
            self._event(
                audit.REFRESH_TOKEN_REUSED,
                record.user_id,
                actor_id="",
                outcome=audit.REFUSED,
                detail={"session_id": record.session_id},
            )
        )
        revoked = await self._revoke_session(
            record.session_id, now=now, reason="token_reuse", user_id=record.user_id
        )
        metrics.REFRESH_REUSE.inc()
        log.warning(
            "refresh token reuse detected; session revoked",
            extra={"session": record.session_id, "user": record.user_id, "revoked": revoked},
        )
        raise Unauthenticated(
            "this refresh token was already used; the session has been revoked", reason="REFRESH_TOKEN_REUSED"
        )

    # ---- revocation ------------------------------------------------------------------------

    def _keep_until(self, now: float) -> float:
        return now + self._policy.access_token_ttl + REVOCATION_MARGIN_SECONDS

    def _revocation(self, user_id: str, reason: str) -> audit.AuditEvent:
        """The template of the SESSION_REVOKED records (one per ended session)."""
        return self._event(audit.SESSION_REVOKED, user_id, detail={"reason": reason})

    async def _revoke_session(self, session_id: str, *, now: float, reason: str, user_id: str = "") -> int:
        revoked = await self._store.revoke_session(
            session_id,
            now=now,
            reason=reason,
            keep_until=self._keep_until(now),
            audit_template=self._revocation(user_id, reason),
        )
        if revoked:
            self._on_revoke()
        return revoked

    async def _revoke_user(self, user_id: str, *, now: float, reason: str, except_session: str = "") -> int:
        revoked = await self._store.revoke_user_sessions(
            user_id,
            now=now,
            reason=reason,
            keep_until=self._keep_until(now),
            except_session=except_session,
            audit_template=self._revocation(user_id, reason),
        )
        if revoked:
            self._on_revoke()
        return revoked

    # ---- logout ------------------------------------------------------------------------------

    async def logout(
        self,
        refresh_token: str,
        *,
        all_sessions: bool,
        principal: Principal | None,
        other_sessions: bool = False,
    ) -> int:
        """Revoke a refresh token's family, or with `all_sessions` every family of the caller,
        or with `other_sessions` every family of the caller but the one of its access token.

        Access tokens of the revoked sessions are refused by every service within about a
        second (the revocation stream), though they have not expired.
        """
        record = await self._lookup(refresh_token) if refresh_token else None
        if principal is not None and record is not None and record.user_id != principal.user_id:
            raise PermissionDenied(
                "the refresh token belongs to another account", reason="REFRESH_TOKEN_NOT_YOURS"
            )
        now = self._clock()
        if all_sessions and other_sessions:
            raise InvalidArgument(
                "all_sessions and other_sessions exclude each other",
                [("other_sessions", "cannot be combined with all_sessions")],
            )
        if all_sessions or other_sessions:
            if principal is None:
                raise Unauthenticated("ending sessions needs a valid access token", reason="TOKEN_MISSING")
            if other_sessions:
                if not principal.session_id:
                    raise InvalidArgument(
                        "this access token names no session; log in again",
                        [("other_sessions", "needs an access token that carries a session")],
                    )
                return await self._revoke_user(
                    principal.user_id, now=now, reason="logout_others", except_session=principal.session_id
                )
            # Logging out everywhere is what a user does who fears someone else is in: every
            # device of theirs is forgotten too, and logs in as a stranger once more.
            await self._store.delete_user_devices(principal.user_id)
            return await self._revoke_user(principal.user_id, now=now, reason="logout_all")
        if not refresh_token:
            raise InvalidArgument("refresh_token is required", [("refresh_token", "is required")])
        if record is None:
            return 0  # unknown or purged: nothing to end (RFC 7009 answers the same way)
        return await self._revoke_session(record.session_id, now=now, reason="logout", user_id=record.user_id)

    # ---- sessions ------------------------------------------------------------------------------

    async def list_sessions(self, principal: Principal) -> list[SessionView]:
        records = await self._store.list_sessions(principal.user_id, now=self._clock())
        return [SessionView(record, record.session_id == principal.session_id) for record in records]

    async def delete_session(self, principal: Principal, session_id: str) -> None:
        """End one of the caller's own sessions. Another account's session, an unknown or an
        ended one are all 404: the answer does not tell which ids exist."""
        if not session_id.strip():
            raise InvalidArgument("id is required", [("id", "is required")])
        owner = await self._store.session_owner(session_id) if len(session_id) <= 36 else None
        if owner is None or owner != principal.user_id:
            raise NotFound("no such session", reason="SESSION_NOT_FOUND")
        await self._revoke_session(
            session_id, now=self._clock(), reason="session_deleted", user_id=principal.user_id
        )

    # ---- admin ---------------------------------------------------------------------------------

    async def _require_step_up(self, principal: Principal) -> None:
        """With a second factor on the caller's account: 401 REAUTHENTICATION_REQUIRED unless
        the token's second factor is recent (as users decides for its own sensitive changes)."""
        try:
            identity = await self._users.get_identity(principal.user_id)
        except UnknownUser:
            raise NotFound("no such account", reason="USER_NOT_FOUND") from None
        if not identity.totp_enabled:
            return
        if "otp" in principal.amr and self._clock() - principal.auth_time <= self._policy.step_up_max_age:
            return
        raise Unauthenticated(
            "this change needs a recent second factor: POST /api/v1/auth/reauthenticate with a "
            "code, then retry with the new access token",
            reason="REAUTHENTICATION_REQUIRED",
            metadata={"max_age_seconds": str(self._policy.step_up_max_age)},
        )

    async def remove_second_factor(self, principal: Principal, user_id: str) -> tuple[bool, int]:
        """An admin removes an account's second factor (the user lost device and codes): every
        session of the account ends, so whoever held one must log in again. (removed, ended)."""
        _require_admin(principal, "only an admin may remove another account's second factor")
        _require_user_id(user_id)
        try:
            removed = await self._users.remove_second_factor(user_id)
        except UnknownUser:
            raise NotFound("no such account", reason="USER_NOT_FOUND") from None
        revoked = await self._revoke_user(user_id, now=self._clock(), reason="second_factor_removed")
        log.info("second factor removed by an admin", extra={"target": user_id, "revoked": revoked})
        return removed, revoked

    async def sign_out_user(self, principal: Principal, user_id: str) -> int:
        _require_admin(principal, "only an admin may sign another account out")
        _require_user_id(user_id)
        revoked = await self._revoke_user(user_id, now=self._clock(), reason="admin_sign_out")
        # The admin's action itself, also when it ended no session (each one ended has its own
        # SESSION_REVOKED record).
        await self._store.audit.record(
            self._event(audit.SIGNED_OUT_BY_ADMIN, user_id, detail={"sessions": revoked})
        )
        return revoked

    async def set_disabled(self, principal: Principal, user_id: str, *, disabled: bool) -> int:
        """Disable (and end every session of) or enable an account; how many sessions ended."""
        _require_admin(principal, "only an admin may disable or enable an account")
        _require_user_id(user_id)
        if disabled and user_id == principal.user_id:
            raise PermissionDenied("an admin cannot disable their own account", reason="CANNOT_DISABLE_SELF")
        try:
            await self._users.set_disabled(user_id, disabled)
        except UnknownUser:
            raise NotFound("no such account", reason="USER_NOT_FOUND") from None
        if not disabled:
            log.info("account enabled", extra={"target": user_id})
            return 0
        await self._store.delete_user_devices(user_id)
        revoked = await self._revoke_user(user_id, now=self._clock(), reason="account_disabled")
        log.info("account disabled", extra={"target": user_id, "revoked": revoked})
        return revoked

    # ---- password change -----------------------------------------------------------------------

    async def record_second_factor(self, kind: str, user_id: str, *, method: str = "totp") -> None:
        """The one line issue 13 needs: record a second-factor change (SECOND_FACTOR_ENABLED,
        _DISABLED, _RECOVERY_CODES_REGENERATED) of `user_id` by the current caller, on its own;
        where the change is one store transaction, pass the event to that store call instead."""
        await self._store.audit.record(self._event(kind, user_id, detail={"method": method}))

    async def change_password(
        self, principal: Principal, user_id: str, current_password: str, new_password: str, *, client_ip: str
    ) -> int:
        """Change the caller's own password; every other session of the account ends.

        Admins do not set other people's passwords (they send a reset). A wrong current
        password is charged like a stranger's failed login (the account's and the client's
        counters), so this is no side door for guessing; the right one resets the account's."""
        _require_user_id(user_id)
        if principal.user_id != user_id:
            raise PermissionDenied(
                "only the account itself may change its password", reason="NOT_YOUR_ACCOUNT"
            )
        violations = Violations()
        violations.check(bool(current_password), "current_password", "is required")
        violations.check(len(current_password) <= MAX_PASSWORD_LENGTH, "current_password", "is too long")
        violations.check(bool(new_password), "new_password", "is required")
        violations.raise_if_any()
        await self._require_step_up(principal)
        now = self._clock()
        keys = [ThrottleKey(account_key(user_id), self._policy.max_failures)]
        if client_ip:
            keys.append(
                ThrottleKey(throttle_key("ip", client_ip), self._policy.max_failures * IP_FAILURE_FACTOR)
            )
        claim = await self._store.claim_attempt(
            keys, now=now, forget_before=now - FAILURE_MEMORY_SECONDS, backoff=self._policy.backoff
        )
        _throttled_if(claim.retry_after)
        try:
            await self._users.change_password(user_id, current_password, new_password)
        except InvalidCredentials:
            log.info("password change with a wrong current password")
            raise InvalidArgument(
                "the current password is incorrect",
                [("current_password", "is incorrect")],
                reason="INVALID_CREDENTIALS",
            ) from None
        except Exception:
            await self._refund(claim)  # the new password broke a rule, or users is down
            raise
        await self._compensate(self._store.settle(claim, reset=[account_key(user_id)]))
        revoked = await self._revoke_user(
            user_id, now=self._clock(), reason="password_changed", except_session=principal.session_id
        )
        log.info("password changed", extra={"revoked": revoked})
        return revoked

    # ---- password reset ------------------------------------------------------------------------

    async def confirm_password_reset(self, token: str, new_password: str) -> int:
        """Set a new password with a reset mail's token (public: the token is the proof); how
        many sessions ended. Users spends the token and sets the password (and marks the
        address verified); then every session of the account ends, and its strangers' login
        counter is cleared: whoever proved the mailbox is the owner, not a guesser. Device
        tokens stay, as after a password change (they decide only which budget a login is
        charged to). A second factor, when the account has one, is not removed."""
        violations = Violations()
        violations.check(bool(token.strip()), "token", "is required")
        violations.check(len(token) <= MAX_REFRESH_TOKEN_LENGTH, "token", "is too long")
        violations.check(bool(new_password), "new_password", "is required")
        violations.check(len(new_password) <= MAX_PASSWORD_LENGTH, "new_password", "is too long")
        violations.raise_if_any()
        user_id = await self._users.confirm_password_reset(token, new_password)
        revoked = await self._revoke_user(user_id, now=self._clock(), reason="password_reset")
        log.info("password reset; every session ended", extra={"target": user_id, "revoked": revoked})
        key = account_key(user_id)
        # A charge on the account's counter, settled with `reset`: the counter is cleared.
        cleared = Claim(charges=(Charge(key, 0, 0.0, 0.0),))
        try:
            await self._store.settle(cleared, reset=[key])
        except Exception as exc:  # the password is set and the sessions ended: still a success
            if not self._is_outage(exc):
                log.exception("could not clear the login throttle after a password reset")
            else:
                log.warning(
                    "could not clear the login throttle after a password reset: the database is unavailable"
                )
        return revoked


def _disabled() -> PermissionDenied:
    return PermissionDenied("this account has been disabled", reason="ACCOUNT_DISABLED")


def _require_admin(principal: Principal, message: str) -> None:
    if not principal.is_admin:
        raise PermissionDenied(message, reason="ADMIN_ONLY")


def _require_user_id(user_id: str) -> None:
    try:
        uuid.UUID(user_id)
    except ValueError:
        raise InvalidArgument("id is not a valid account id", [("id", "is not a UUID")]) from None
