"""The users service's rules: validation, authorization, passwords, etags, pagination.

Plain typed code; its collaborators (store, password hasher, clock, outbox wake-up) come in
through `__init__`. The servicer converts protobuf to these calls and back.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.kit import audit, rate_limit, single_use
from services.kit.context import Principal, Role
from services.kit.errors import (
    AlreadyExists,
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Violations,
)
from services.kit.mail import (
    OutgoingMail,
    email_change_notice_mail,
    password_changed_mail,
    password_reset_mail,
    recovery_code_used_mail,
    totp_disabled_mail,
    totp_enabled_mail,
    verify_email_mail,
)
from services.kit.pagination import decode_page_token, encode_page_token, malformed_page_token, page_size
from services.users import totp, validation
from services.users.model import PASSWORD_RESET, VERIFY_EMAIL, Conflict, Credentials, UserRecord, UserStore
from services.users.passwords import Passwords

log = logging.getLogger(__name__)

# Mutable fields an update may name in its update_mask.
UPDATABLE_FIELDS = ("email", "display_name", "role")
_LIST_SCOPE = "users.list:created_at,id"
_INVALID_CREDENTIALS = "the username or password is incorrect"
# The subject of the decoy reset token of an address no account has (no account has this id, so
# it could redeem nothing; it is never mailed, and not kept): see request_password_reset.
DECOY_RESET_SUBJECT = "-"


def etag_for(user_id: str, version: int) -> str:
    """An opaque tag for one version of one account (AIP-154)."""
    digest = hashlib.blake2b(f"{user_id}:{version}".encode(), digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode()


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class NewUser:
    """A sign-up as the client sent it (not yet validated)."""

    username: str
    email: str
    password: str
    display_name: str = ""


@dataclass(frozen=True, slots=True)
class UserPatch:
    """The changes of one update, already resolved from the update_mask (or its absence).

    A field is changed when it is not None. `role_in_mask` says the role was named explicitly in
    an update_mask (rather than sent along in a full PUT body), and `username` is whatever the
    body carried: it cannot change, but a PUT may repeat it.
    """

    email: str | None = None
    display_name: str | None = None
    role: Role | None = None
    role_in_mask: bool = False
    username: str = ""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who an account is, as auth puts it in tokens."""

    user_id: str
    username: str
    role: Role
    disabled: bool = False
    email_verified: bool = False


@dataclass(frozen=True, slots=True)
class MailPolicy:
    """How long verification and reset links work, and how many mails a client may ask for
    (per address and per client, in each window; resends and resets have separate budgets)."""

    verification_ttl: float = 86400.0
    reset_ttl: float = 1800.0
    per_address: int = 3
    per_client: int = 10
    window: float = 3600.0


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """What EnrollTotp shows: the secret three ways."""

    secret: str
    otpauth_uri: str
    qr_svg: str


@dataclass(frozen=True, slots=True)
class Page:
    users: list[UserRecord]
    next_page_token: str


def _conflict_error(conflict: Conflict) -> AlreadyExists:
    if conflict.column == "email":
        return AlreadyExists(
            "an account with this e-mail address already exists", metadata={"field": "user.email"}
        )
    if conflict.column == "username":
        return AlreadyExists(
            "an account with this username already exists", metadata={"field": "user.username"}
        )
    return AlreadyExists("this account already exists", metadata={"field": "user.id"})


def _require_id(user_id: str, field: str = "id") -> None:
    if not user_id:
        raise InvalidArgument(f"{field} is required", [(field, "is required")])


class UsersDomain:
    """Account operations with their authorization rules.

    Authorization is decided from the caller's token before the database is touched, so a
    refused caller learns nothing about whether an account exists.
    """

    def __init__(
        self,
        *,
        store: UserStore,
        passwords: Passwords,
        on_delete: Callable[[], None] = lambda: None,
        on_mail: Callable[[], None] = lambda: None,
        mail_policy: MailPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        audit_peers: Sequence[audit.AuditSource] = (),
        totp_issuer: str = "Pinexa",  # PRODUCT_NAME: what authenticator apps show
        step_up_max_age: float = 600.0,
    ) -> None:
        # audit_peers: the other services' audit records (auth's, over gRPC), listed with ours.
        self._audit_sources: list[audit.AuditSource] = [store.audit, *audit_peers]
        self._totp_issuer = totp_issuer
        self._step_up_max_age = step_up_max_age
        self._store = store
        self._passwords = passwords
        self._on_delete = on_delete
        self._on_mail = on_mail
        self._mail = mail_policy or MailPolicy()
        self._clock = clock

    def _verification(
        self, user_id: str, username: str, address: str, now: datetime
    ) -> tuple[OutgoingMail, single_use.Issued]:
        """A verification token for `address` and the mail that carries its link."""
        token = single_use.prepare(
            purpose=VERIFY_EMAIL,
            subject=user_id,
            ttl_seconds=self._mail.verification_ttl,
            now=now.timestamp(),
            data=address,
        )
        message = verify_email_mail(
            to=address, username=username, token=token.token, ttl_seconds=self._mail.verification_ttl
        )
        return message, token

    def _mail_limits(self, scope: str, address: str, client: str) -> list[tuple[str, int]]:
        """The rate-limit counters a mail of `scope` is charged to: its address's and, when known,
        the client IP's (each scope has a budget of its own)."""
        limits = [
            (rate_limit.key(f"{scope}:address", self._store.address_key(address)), self._mail.per_address)
        ]
        if client:
            limits.append((rate_limit.key(f"{scope}:client", client), self._mail.per_client))
        return limits

    # -- sign-up and reads ---------------------------------------------------------------------

    async def sign_up(self, new: NewUser) -> UserRecord:
        """Create an ordinary account. Any role the client asked for is ignored."""
        username = validation.normalize_username(new.username)
        email = validation.normalize_email(new.email)
        violations = Violations()
        violations.report("user.username", validation.username_problem(username))
        violations.report("user.email", validation.email_problem(email))
        violations.report("user.password", validation.password_problem(new.password))
        violations.report("user.display_name", validation.display_name_problem(new.display_name))
        violations.raise_if_any()
        return await self._create(username, email, new.password, new.display_name, "user")

    async def _create(
        self,
        username: str,
        email: str,
        password: str,
        display_name: str,
        role: Role,
        *,
        verified: bool = False,
    ) -> UserRecord:
        """Insert the account; unless `verified`, its verification mail goes out with it (one
        transaction: no account without its mail, no mail without its account)."""
        now = self._clock()
        record = UserRecord(
            id=str(uuid.uuid4()),
            username=username,
            email=email,
            display_name=display_name,
            role=role,
            version=1,
            created_at=now,
            updated_at=now,
            email_verified=verified,
            email_verified_at=now if verified else None,
        )
        password_hash = await self._passwords.hash(password)
        values = {**dataclasses.asdict(record), "password_hash": password_hash}
        # A sign-up acts for the account it creates; the operator's admin account (verified,
        # from ADMIN_USERNAME) is created by nobody signed in.
        created = self._event(
            audit.ACCOUNT_CREATED,
            record.id,
            actor_id="" if verified else record.id,
            detail={"role": role, **({"reason": "bootstrap_admin"} if verified else {})},
        )
        try:
            if verified:
                await self._store.insert(values, audit_events=[created])
            else:
                message, token = self._verification(record.id, username, email, now)
                await self._store.insert(values, mail=[message], token=token, audit_events=[created])
        except Conflict as conflict:
            raise _conflict_error(conflict) from None
        if not verified:
            self._on_mail()
        return record

    async def get(self, principal: Principal, user_id: str) -> UserRecord:
        _require_id(user_id)
        if not principal.can_act_for(user_id):
            raise PermissionDenied("you may only read your own account")
        record = await self._store.get(user_id)
        if record is None:
            raise NotFound("no such account", reason="USER_NOT_FOUND")
        return record

    async def me(self, principal: Principal) -> UserRecord:
        record = await self._store.get(principal.user_id)
        if record is None:
            raise NotFound("the account of this access token no longer exists", reason="USER_NOT_FOUND")
        return record

    async def list_page(self, principal: Principal, *, size: int, token: str) -> Page:
        """One page in (created_at, id) order; admin only."""
        if not principal.is_admin:
            raise PermissionDenied("only an admin may list accounts", reason="ADMIN_ONLY")
        limit = page_size(size)
        position = decode_page_token(token, scope=_LIST_SCOPE)
        after = None
        if position is not None:
            try:
                after = (datetime.fromisoformat(str(position["c"])), str(position["i"]))
            except (KeyError, ValueError):
                raise malformed_page_token() from None
        rows = await self._store.list_page(after=after, limit=limit + 1)
        next_token = ""
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_token = encode_page_token(
                {"c": last.created_at.isoformat(), "i": last.id}, scope=_LIST_SCOPE
            )
        return Page(users=rows, next_page_token=next_token)

    # -- update --------------------------------------------------------------------------------

    async def update(self, principal: Principal, user_id: str, patch: UserPatch, etag: str) -> UserRecord:
        _require_id(user_id, "user.id")
        if not principal.can_act_for(user_id):
            raise PermissionDenied("you may only change your own account")
        if patch.role is not None and not principal.is_admin:
            # A full PUT may repeat the caller's own role; anything else is a role change.
            if patch.role_in_mask or patch.role != principal.role:
                raise PermissionDenied("only an admin may change a role", reason="ROLE_CHANGE_FORBIDDEN")
            patch = UserPatch(
                email=patch.email,
                display_name=patch.display_name,
                username=patch.username,
            )

        violations = Violations()
        values: dict[str, Any] = {}
        new_email: str | None = None
        if patch.email is not None:
            new_email = validation.normalize_email(patch.email)
            violations.report("user.email", validation.email_problem(new_email))
        if patch.display_name is not None:
            violations.report("user.display_name", validation.display_name_problem(patch.display_name))
            values["display_name"] = patch.display_name
        if patch.role is not None:
            values["role"] = patch.role
        violations.raise_if_any()

        current = await self._store.get(user_id)
        if current is None:
            raise NotFound("no such account", reason="USER_NOT_FOUND")
        if patch.username and validation.normalize_username(patch.username) != current.username:
            raise InvalidArgument("a username cannot be changed", [("user.username", "cannot be changed")])
        # As bytes: compare_digest refuses str with non-ASCII characters (a client's etag may have them).
        expected = etag_for(current.id, current.version)
        if etag and not hmac.compare_digest(etag.encode(), expected.encode()):
            raise EtagMismatch("the account has changed since it was read; read it again and retry")
        now = self._clock()
        mail: list[OutgoingMail] = []
        token: single_use.Issued | None = None
        if new_email is not None:
            if validation.email_key(new_email) == validation.email_key(current.email):
                if current.pending_email is not None:
                    values["pending_email"] = None  # back to the current address: cancel the change
            else:
                # A change of address needs a recent second factor (step-up), then stays pending
                # until verified; the old address keeps working and gets a notice.
                await self.require_step_up(principal, user_id)
                await self._refuse_taken_address(user_id, new_email)
                values["pending_email"] = new_email
                message, token = self._verification(current.id, current.username, new_email, now)
                notice = email_change_notice_mail(
                    to=current.email, username=current.username, new_email=new_email
                )
                mail = [message, notice]
        if not values:
            return current

        events = self._update_events(principal, current, values)
        try:
            updated = await self._store.update(
                user_id,
                values,
                expected_version=current.version if etag else None,
                now=now,
                mail=mail,
                token=token,
                audit_events=events,
            )
        except Conflict as conflict:
            raise _conflict_error(conflict) from None
        if mail and updated is not None:
            self._on_mail()
        if updated is None:
            if etag:
                # Someone changed (or deleted) it between our read and our write.
                raise EtagMismatch("the account has changed since it was read; read it again and retry")
            raise NotFound("no such account", reason="USER_NOT_FOUND")
        return updated

    async def _refuse_taken_address(self, user_id: str, address: str) -> None:
        """409 when another account has `address` as its (verified or not) address. The UNIQUE
        constraint decides again when the change is verified."""
        owner = await self._store.credentials_by_email(address)
        if owner is not None and owner.id != user_id:
            raise _conflict_error(Conflict("email"))

    # -- e-mail verification -------------------------------------------------------------------

    async def verify_email(self, token: str) -> UserRecord:
        """Spend a verification link's token (public: the token is the proof)."""
        if not token.strip():
            raise InvalidArgument("token is required", [("token", "is required")])

        def verified(user_id: str, changed: bool) -> list[audit.AuditEvent]:
            # The link is the proof of the mailbox: whoever opens it acts for the account.
            kind = audit.EMAIL_CHANGED if changed else audit.EMAIL_VERIFIED
            return [self._event(kind, user_id, actor_id=user_id)]

        try:
            record = await self._store.verify_email(token.strip(), self._clock(), audit_events=verified)
        except Conflict:
            raise AlreadyExists(
                "another account has taken this e-mail address since the change was asked for",
                reason="EMAIL_TAKEN",
                metadata={"field": "email"},
            ) from None
        log.info("e-mail address verified", extra={"user": record.id})
        return record

    async def send_verification(self, principal: Principal, user_id: str, *, client: str) -> str:
        """Queue a new verification mail (to the pending address, else the address); older
        links stop working. The account itself or an admin; limited per address and per client.
        Returns the address it goes to."""
        _require_id(user_id)
        if not principal.can_act_for(user_id):
            raise PermissionDenied("you may only ask for your own verification mail")
        record = await self._store.get(user_id)
        if record is None:
            raise NotFound("no such account", reason="USER_NOT_FOUND")
        address = record.pending_email or record.email
        if record.pending_email is None and record.email_verified:
            raise FailedPrecondition("this e-mail address is already verified", reason="ALREADY_VERIFIED")
        now = self._clock()
        limits = self._mail_limits("verify_email", address, client)
        message, token = self._verification(record.id, record.username, address, now)
        wait = await self._store.queue_verification(
            message, token, limits=limits, window=self._mail.window, now=now
        )
        if wait > 0:
            raise ResourceExhausted(
                "too many verification mails were asked for; try again later",
                retry_after=wait,
                reason="TOO_MANY_MAILS",
            )
        self._on_mail()
        return address

    def _event(self, kind: str, subject_id: str, **kwargs: Any) -> audit.AuditEvent:
        return audit.new_event("users", kind, subject_id=subject_id, now=self._clock().timestamp(), **kwargs)

    def _update_events(
        self, principal: Principal, current: UserRecord, values: dict[str, Any]
    ) -> list[audit.AuditEvent]:
        """The audit records of an update, written with it: an e-mail change asked for or
        cancelled (it is EMAIL_CHANGED only once the new address is confirmed, in verify_email),
        a role change, and any change an admin makes to someone else's account (which fields,
        never their values)."""
        events = []
        if "pending_email" in values:
            if values["pending_email"] is not None:
                events.append(self._event(audit.EMAIL_CHANGE_REQUESTED, current.id))
            elif current.pending_email is not None:
                events.append(self._event(audit.EMAIL_CHANGE_CANCELLED, current.id))
        if "role" in values and values["role"] != current.role:
            detail = {"role": str(values["role"]), "previous_role": current.role}
            events.append(self._event(audit.ROLE_CHANGED, current.id, detail=detail))
        if principal.is_admin and principal.user_id != current.id:
            # The client's names: an e-mail change is stored as the pending address.
            fields = ",".join(sorted("email" if name == "pending_email" else name for name in values))
            events.append(self._event(audit.ACCOUNT_UPDATED_BY_ADMIN, current.id, detail={"fields": fields}))
        return events

    def second_factor_event(self, kind: str, user_id: str, *, method: str = "totp") -> audit.AuditEvent:
        """The record of a second-factor change: SECOND_FACTOR_ENABLED, _DISABLED, _REMOVED_BY_ADMIN
        or _RECOVERY_CODES_REGENERATED of `user_id` by the current caller, for the store call that
        makes the change (same transaction)."""
        return self._event(kind, user_id, detail={"method": method})

    async def audit_events(
        self, principal: Principal, *, subject_id: str | None, filter_text: str, size: int, token: str
    ) -> audit.AuditPage:
        """Security audit records of every service, newest first: with `subject_id` None every
        account's (admins only), else that account's (itself or an admin)."""
        if subject_id is None:
            if not principal.is_admin:
                raise PermissionDenied("only an admin may list every audit event", reason="ADMIN_ONLY")
        else:
            _require_id(subject_id)
            if not principal.can_act_for(subject_id):
                raise PermissionDenied("you may only read your own audit events")
        return await audit.list_page(
            self._audit_sources, filter_text=filter_text, subject_id=subject_id or "", size=size, token=token
        )

    # -- password reset ------------------------------------------------------------------------

    async def request_password_reset(self, email: str, *, client: str) -> None:
        """Mail a reset link to the account with this address, if there is one and it is not
        disabled (public). The answer must not tell whether there is: an unknown address runs
        the same steps (the same read, the same rate-limit counters, a decoy token written in
        the same transaction, and deleted again there, instead of a mail), and both are limited
        per address and per client."""
        address = validation.normalize_email(email)
        violations = Violations()
        violations.report("email", validation.email_problem(address))
        violations.raise_if_any()
        now = self._clock()
        limits = self._mail_limits("password_reset", address, client)
        record = await self._store.get_by_email(address)
        # Its audit record, written with the token in every case, so that a known and an unknown
        # address run the same statements: the account's (or '' for no account), never the address.
        if record is None:
            asked = self._event(
                audit.PASSWORD_RESET_REQUESTED,
                "",
                actor_id="",
                outcome=audit.FAILURE,
                detail={"reason": audit.UNKNOWN_ADDRESS},
            )
        elif record.disabled:
            asked = self._event(
                audit.PASSWORD_RESET_REQUESTED,
                record.id,
                actor_id="",
                outcome=audit.REFUSED,
                detail={"reason": "ACCOUNT_DISABLED"},
            )
        else:
            asked = self._event(audit.PASSWORD_RESET_REQUESTED, record.id, actor_id="")
        if record is not None and record.disabled:
            record = None  # a disabled account gets no reset mail (and the same answer)
        subject, to, username = (
            (record.id, record.email, record.username) if record else (DECOY_RESET_SUBJECT, address, "")
        )
        token = single_use.prepare(
            purpose=PASSWORD_RESET,
            subject=subject,
            ttl_seconds=self._mail.reset_ttl,
            now=now.timestamp(),
            data=to,
        )
        # Built for a decoy too (the same work), but queued only for an account.
        message = password_reset_mail(
            to=to, username=username, token=token.token, ttl_seconds=self._mail.reset_ttl
        )
        known = record is not None
        wait = await self._store.queue_password_reset(
            message if known else None,
            token,
            limits=limits,
            window=self._mail.window,
            now=now,
            audit_events=[asked],
        )
        if wait > 0:
            raise ResourceExhausted(
                "too many password reset mails were asked for; try again later",
                retry_after=wait,
                reason="TOO_MANY_MAILS",
            )
        if known:
            self._on_mail()
            log.info("password reset mail queued", extra={"target": token.subject})

    async def confirm_password_reset(self, token: str, new_password: str) -> UserRecord:
        """Spend a reset link's token and set the new password (internal: auth's
        ConfirmPasswordReset, which then ends the account's sessions). The address the link
        went to counts as verified, and the account's address hears of the change.

        Cheap checks come first: the new password's rules (a bad one spends no token), then the
        token, read without spending it, so that a random token costs no password hash."""
        violations = Violations()
        violations.check(bool(token.strip()), "token", "is required")
        violations.report("new_password", validation.password_problem(new_password))
        violations.raise_if_any()
        token = token.strip()
        account = await self._store.peek_password_reset(token, self._clock())
        new_hash = await self._passwords.hash(new_password)
        now = self._clock()
        notice = password_changed_mail(
            to=account.email, username=account.username, changed_at=now.timestamp()
        )
        # The link is the proof of the mailbox: whoever opens it acts for the account.
        done = self._event(audit.PASSWORD_RESET, account.id, actor_id=account.id)
        record = await self._store.reset_password(token, new_hash, now, [notice], audit_events=[done])
        self._on_mail()
        log.info("password reset", extra={"target": record.id})
        return record

    # -- delete --------------------------------------------------------------------------------

    async def delete(self, principal: Principal, user_id: str) -> None:
        """Delete the account; its data is purged through the outbox (see outbox.py)."""
        _require_id(user_id)
        if not principal.can_act_for(user_id):
            raise PermissionDenied("you may only delete your own account")
        await self.require_step_up(principal, user_id)
        event = self._event(audit.ACCOUNT_DELETED, user_id)
        if not await self._store.delete_with_purge(user_id, self._clock(), audit_events=[event]):
            raise NotFound("no such account", reason="USER_NOT_FOUND")
        log.info("account deleted; data purge queued", extra={"deleted_user": user_id})
        self._on_delete()

    # -- the TOTP second factor ----------------------------------------------------------------

    @staticmethod
    def _require_self(principal: Principal, user_id: str, action: str) -> None:
        """Only the account itself: not even an admin may enrol a factor for someone (an admin
        can only remove one, through auth's RemoveSecondFactor)."""
        _require_id(user_id)
        if principal.user_id != user_id:
            raise PermissionDenied(f"only the account itself may {action}", reason="SELF_ONLY")

    async def enroll_totp(self, principal: Principal, user_id: str) -> TotpEnrolment:
        self._require_self(principal, user_id, "enrol a second factor")
        record = await self._store.get(user_id)
        if record is None:
            raise NotFound("no such account", reason="USER_NOT_FOUND")
        secret = totp.new_secret()
        if not await self._store.save_pending_totp(user_id, secret, self._clock()):
            raise FailedPrecondition(
                "this account already has an active second factor; remove it first",
                reason="TOTP_ALREADY_ENABLED",
            )
        uri = totp.provisioning_uri(secret, account=record.username, issuer=self._totp_issuer)
        log.info("totp enrolment started", extra={"target": user_id})
        return TotpEnrolment(secret=secret, otpauth_uri=uri, qr_svg=totp.qr_svg(uri))

    async def activate_totp(self, principal: Principal, user_id: str, code: str) -> list[str]:
        """Turn the pending factor on with its first code; the recovery codes, shown once."""
        self._require_self(principal, user_id, "activate a second factor")
        violations = Violations()
        if not code:
            violations.report("code", "is required")
        elif not (len(code) == totp.DIGITS and code.isascii() and code.isdigit()):
            violations.report("code", f"must be the {totp.DIGITS} digits the authenticator shows")
        violations.raise_if_any()
        factor = await self._store.totp_factor(user_id)
        if factor is None or factor.active:
            raise FailedPrecondition(
                "there is no enrolment to activate; call totp:enroll first", reason="TOTP_NOT_ENROLLED"
            )
        now = self._clock()
        step = totp.matching_step(factor.secret, code, now.timestamp())
        if step is None:
            raise InvalidArgument(
                "the code is not the authenticator's current one; check the device's clock",
                [("code", "does not match")],
                reason="INVALID_TOTP_CODE",
            )
        codes = totp.new_recovery_codes()
        hashes = [totp.recovery_code_hash(c) for c in codes]
        notice = await self._notice(
            user_id, lambda r: totp_enabled_mail(to=r.email, username=r.username, changed_at=now.timestamp())
        )
        enabled = self.second_factor_event(audit.SECOND_FACTOR_ENABLED, user_id)
        if not await self._store.activate_totp(
            user_id, factor.enrolled_at, step, hashes, now, notice, audit_events=[enabled]
        ):
            raise FailedPrecondition(
                "the enrolment changed meanwhile (enrolled again, or activated); start again",
                reason="TOTP_NOT_ENROLLED",
            )
        self._sent(notice)
        log.info("totp activated", extra={"target": user_id})
        return codes

    async def _notice(self, user_id: str, build: Callable[[UserRecord], OutgoingMail]) -> list[OutgoingMail]:
        """The notice `build` makes for the account's current address (none for an account
        that is gone), for the store to queue in the transaction of the change."""
        record = await self._store.get(user_id)
        return [] if record is None else [build(record)]

    def _sent(self, mail: Sequence[OutgoingMail]) -> None:
        """After the change (and its mail) committed: wake the mail worker."""
        if mail:
            self._on_mail()

    async def verify_second_factor(self, user_id: str, code: str, recovery_code: str) -> int:
        """Accept a TOTP code (each step once) or spend a recovery code; for auth, which
        throttles. Returns the recovery codes left. Unauthenticated INVALID_SECOND_FACTOR."""
        _require_id(user_id, "user_id")
        refused = Unauthenticated("the code is incorrect", reason="INVALID_SECOND_FACTOR")
        if bool(code) == bool(recovery_code):
            raise InvalidArgument(
                "send exactly one of code and recovery_code",
                [("code", "send a code or a recovery code, not both or neither")],
            )
        factor = await self._store.totp_factor(user_id)
        if factor is None or not factor.active:
            raise refused
        if recovery_code:
            if len(recovery_code) > 64:
                raise refused
            # The count in the notice is read before the spend: a concurrent spend can make it
            # one too high, which a notice can live with.
            left = max(0, await self._store.recovery_codes_left(user_id) - 1)
            at = self._clock().timestamp()
            notice = await self._notice(
                user_id,
                lambda r: recovery_code_used_mail(
                    to=r.email, username=r.username, used_at=at, codes_left=left
                ),
            )
            # The second step of a login or a step-up (auth's call): the account acts.
            used = self._event(
                audit.RECOVERY_CODE_USED, user_id, actor_id=user_id, detail={"method": "recovery_code"}
            )
            if not await self._store.use_recovery_code(
                user_id, totp.recovery_code_hash(recovery_code), notice, audit_events=[used]
            ):
                raise refused
            self._sent(notice)
            log.info("recovery code used", extra={"target": user_id})
            return await self._store.recovery_codes_left(user_id)
        step = totp.matching_step(factor.secret, code, self._clock().timestamp())
        # A step at or before the last accepted one is a replay (compare-and-set in the store,
        # so two concurrent uses of one code cannot both pass).
        if step is None or not await self._store.use_totp_step(user_id, step):
            raise refused
        return await self._store.recovery_codes_left(user_id)

    async def require_step_up(self, principal: Principal, user_id: str) -> None:
        """On the caller's own account with an active factor: 401 REAUTHENTICATION_REQUIRED
        unless the token's second factor is recent (amr has "otp" and auth_time is at most
        `step_up_max_age` old). An admin acting on another account is not asked (their own
        login is what protects that)."""
        if principal.user_id != user_id or not await self.totp_enabled(user_id):
            return
        age = self._clock().timestamp() - principal.auth_time
        if "otp" in principal.amr and age <= self._step_up_max_age:
            return
        raise Unauthenticated(
            "this change needs a recent second factor: POST /api/v1/auth/reauthenticate with a "
            "code, then retry with the new access token",
            reason="REAUTHENTICATION_REQUIRED",
            metadata={"max_age_seconds": str(int(self._step_up_max_age))},
        )

    async def disable_totp(self, principal: Principal, user_id: str) -> None:
        """The account itself turns its factor off (with a recent second factor)."""
        self._require_self(principal, user_id, "disable its second factor")
        await self.require_step_up(principal, user_id)
        notice = await self._disabled_notice(user_id, by_admin=False)
        disabled = self.second_factor_event(audit.SECOND_FACTOR_DISABLED, user_id)
        if not await self._store.delete_totp(user_id, active_mail=notice, audit_events=[disabled]):
            raise FailedPrecondition("this account has no second factor", reason="TOTP_NOT_ENABLED")
        self._sent(notice)
        log.info("totp disabled", extra={"target": user_id})

    async def _disabled_notice(self, user_id: str, *, by_admin: bool) -> list[OutgoingMail]:
        at = self._clock().timestamp()
        return await self._notice(
            user_id,
            lambda r: totp_disabled_mail(to=r.email, username=r.username, changed_at=at, by_admin=by_admin),
        )

    async def regenerate_recovery_codes(self, principal: Principal, user_id: str) -> list[str]:
        """Ten new recovery codes; the old ones stop working (with a recent second factor)."""
        self._require_self(principal, user_id, "regenerate its recovery codes")
        await self.require_step_up(principal, user_id)
        codes = totp.new_recovery_codes()
        hashes = [totp.recovery_code_hash(c) for c in codes]
        regenerated = self.second_factor_event(audit.SECOND_FACTOR_RECOVERY_CODES_REGENERATED, user_id)
        if not await self._store.replace_recovery_codes(user_id, hashes, audit_events=[regenerated]):
            raise FailedPrecondition("this account has no second factor", reason="TOTP_NOT_ENABLED")
        log.info("recovery codes regenerated", extra={"target": user_id})
        return codes

    async def remove_totp(self, user_id: str) -> bool:
        """For auth, on an admin's behalf (auth checks the role and ends the sessions)."""
        _require_id(user_id, "user_id")
        notice = await self._disabled_notice(user_id, by_admin=True)
        if not notice:
            raise NotFound("no such account", reason="USER_NOT_FOUND")
        # The actor is the admin auth acted for (forwarded on the internal call).
        gone = self.second_factor_event(audit.SECOND_FACTOR_REMOVED_BY_ADMIN, user_id)
        removed = await self._store.delete_totp(user_id, active_mail=notice, audit_events=[gone])
        if removed:
            self._sent(notice)
        log.info("second factor removed by an admin", extra={"target": user_id, "removed": removed})
        return removed

    async def totp_enabled(self, user_id: str) -> bool:
        factor = await self._store.totp_factor(user_id)
        return factor is not None and factor.active

    # -- internal: credentials and identity ----------------------------------------------------

    async def verify_credentials(self, login: str, password: str) -> Identity:
        """The account that `login` (a username or an e-mail address) and `password` belong to.

        An unknown account and a wrong password give the same error, and both cost one argon2
        verify, so neither the answer nor its timing tells them apart."""
        credentials: Credentials | None = None
        if 0 < len(password) <= validation.PASSWORD_MAX:
            credentials = await self._credentials_for(login)
        if credentials is None:
            if password and len(password) <= validation.PASSWORD_MAX:
                await self._passwords.dummy_verify(password)
            raise Unauthenticated(_INVALID_CREDENTIALS, reason="INVALID_CREDENTIALS")
        if not await self._passwords.verify(credentials.password_hash, password):
            raise Unauthenticated(_INVALID_CREDENTIALS, reason="INVALID_CREDENTIALS")
        if self._passwords.needs_rehash(credentials.password_hash):
            new_hash = await self._passwords.hash(password)
            await self._store.replace_password_hash(credentials.id, credentials.password_hash, new_hash)
        if credentials.disabled:
            # Said only to whoever knows the password: a stranger learns nothing from it.
            raise FailedPrecondition("this account has been disabled", reason="ACCOUNT_DISABLED")
        return Identity(
            user_id=credentials.id,
            username=credentials.username,
            role=credentials.role,
            email_verified=credentials.email_verified,
        )

    async def change_password(self, user_id: str, current_password: str, new_password: str) -> None:
        """Set a new password after checking the current one (auth throttles the attempts).

        The new password's rules are checked first, so a bad new password costs no guess."""
        _require_id(user_id, "user_id")
        violations = Violations()
        violations.report("new_password", validation.password_problem(new_password))
        violations.raise_if_any()
        credentials = None
        if 0 < len(current_password) <= validation.PASSWORD_MAX:
            credentials = await self._store.credentials_by_id(user_id)
        if credentials is None:
            if current_password and len(current_password) <= validation.PASSWORD_MAX:
                await self._passwords.dummy_verify(current_password)
            raise Unauthenticated("the current password is incorrect", reason="INVALID_CREDENTIALS")
        if not await self._passwords.verify(credentials.password_hash, current_password):
            await self._store.audit.record(
                self._event(
                    audit.PASSWORD_CHANGED,
                    user_id,
                    outcome=audit.REFUSED,
                    detail={"reason": "INVALID_CREDENTIALS"},
                )
            )
            raise Unauthenticated("the current password is incorrect", reason="INVALID_CREDENTIALS")
        new_hash = await self._passwords.hash(new_password)
        now = self._clock()
        record = await self._store.get(user_id)
        # The account's address hears of the change (in the same transaction as the change).
        notice = (
            []
            if record is None
            else [
                password_changed_mail(to=record.email, username=record.username, changed_at=now.timestamp())
            ]
        )
        event = self._event(audit.PASSWORD_CHANGED, user_id)
        if not await self._store.change_password_hash(
            user_id, credentials.password_hash, new_hash, now, notice, audit_events=[event]
        ):
            # Changed (or deleted) between the check and the write: the current password we
            # checked is no longer current.
            raise Unauthenticated("the current password is incorrect", reason="INVALID_CREDENTIALS")
        log.info("password changed", extra={"target": user_id})

    async def set_disabled(self, user_id: str, *, disabled: bool) -> None:
        _require_id(user_id, "user_id")
        event = self._event(audit.ACCOUNT_DISABLED if disabled else audit.ACCOUNT_ENABLED, user_id)
        if not await self._store.set_disabled(user_id, disabled, self._clock(), audit_events=[event]):
            raise NotFound("no such account", reason="USER_NOT_FOUND")

    async def resolve_login(self, login: str) -> str | None:
        """The id of the account `login` reaches (what `verify_credentials` would check the
        password against), or None. One indexed read, the same for a known and an unknown name."""
        credentials = await self._credentials_for(login)
        return None if credentials is None else credentials.id

    async def _credentials_for(self, login: str) -> Credentials | None:
        """A login name (a username or an e-mail address, any case) to its account."""
        login = login.strip()
        if not login:
            return None
        if "@" in login:
            return await self._store.credentials_by_email(login)
        return await self._store.credentials_by_username(validation.normalize_username(login))

    async def identity(self, user_id: str) -> Identity:
        _require_id(user_id, "user_id")
        record = await self._store.get(user_id)
        if record is None:
            raise NotFound("no such account", reason="USER_NOT_FOUND")
        return Identity(
            user_id=record.id,
            username=record.username,
            role=record.role,
            disabled=record.disabled,
            email_verified=record.email_verified,
        )

    # -- start-up ------------------------------------------------------------------------------

    async def ensure_admin(self, *, username: str, email: str, password: str) -> None:
        """Make sure an admin account with this username exists (idempotent, safe to run from
        several replicas at once). An existing account is promoted only if ADMIN_PASSWORD is its
        password: whoever signed up under that name first must not become admin by it."""
        username = validation.normalize_username(username)
        email = validation.normalize_email(email)
        violations = Violations()
        violations.report("ADMIN_USERNAME", validation.username_problem(username))
        violations.report("ADMIN_EMAIL", validation.email_problem(email))
        violations.report("ADMIN_PASSWORD", validation.password_problem(password))
        violations.raise_if_any("the admin account settings are invalid")
        for _ in range(3):
            existing = await self._store.credentials_by_username(username)
            if existing is not None:
                if existing.role == "admin":
                    return
                if not await self._passwords.verify(existing.password_hash, password):
                    raise AlreadyExists(
                        "ADMIN_USERNAME belongs to an existing account whose password is not ADMIN_PASSWORD",
                        metadata={"field": "ADMIN_USERNAME"},
                    )
                detail = {"role": "admin", "previous_role": existing.role, "reason": "bootstrap_admin"}
                promotion = self._event(audit.ROLE_CHANGED, existing.id, actor_id="", detail=detail)
                promoted = await self._store.update(
                    existing.id,
                    {"role": "admin"},
                    expected_version=None,
                    now=self._clock(),
                    audit_events=[promotion],
                )
                if promoted is not None:
                    log.info("promoted the bootstrap account to admin", extra={"username": username})
                    return
                continue
            try:
                # The operator chose this address: it counts as verified (no mail).
                await self._create(username, email, password, "", "admin", verified=True)
            except AlreadyExists as error:
                if error.metadata.get("field") == "user.email":
                    raise AlreadyExists(
                        "ADMIN_EMAIL belongs to another account than ADMIN_USERNAME",
                        metadata={"field": "ADMIN_EMAIL"},
                    ) from None
                continue  # another replica created it just now: promote or return it
            log.info("created the bootstrap admin account", extra={"username": username})
            return
        raise RuntimeError("could not ensure the admin account")  # pragma: no cover
