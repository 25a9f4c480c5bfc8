"""The users service's only database access: SQLAlchemy Core on one pooled async engine.

Statements that run on every request are built once at import; the kit's executor caches their
compiled form. Reads of one statement go through `sql.read_engine`: on PostgreSQL a read is one
round trip, with no transaction around it.

`get` (GetUser, GetMe) coalesces (services/kit/coalesce.py): reads that arrive while others are
running wait for one of them and go together as one statement (`WHERE id = ANY(:ids)` on
PostgreSQL, `IN (...)` on SQLite). Nothing is cached: every request reads the database. A read
that finds none running is the same single-row statement as before. Rows are decrypted per
caller, and a batch that fails for any reason but an outage is retried one id at a time, so one
caller's bad input never becomes another caller's error.

Personal data is encrypted here, on its way in and out (see crypto.py): callers pass and get
plaintext, the tables hold only ciphertext and the e-mail blind index.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    String,
    any_,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError

from services.kit import audit, metrics, rate_limit, single_use, sql
from services.kit import mail as kit_mail
from services.kit.coalesce import Coalescer
from services.kit.context import Role
from services.kit.db import Connection, Database
from services.kit.mail import OutgoingMail
from services.kit.single_use import Issued, TokenRefused
from services.users.crypto import PiiCipher
from services.users.model import (
    PASSWORD_RESET,
    VERIFY_EMAIL,
    Conflict,
    Credentials,
    PendingPurge,
    TotpFactor,
    UserRecord,
    VerifiedEvents,
)
from services.users.schema import audit_events as audit_table
from services.users.schema import purge_outbox, recovery_codes, single_use_tokens, totp_factors, users
from services.users.validation import email_key

_TOTP_COLUMN = "totp_secret"  # the sealed secret's column name in its associated data
_RECORD_COLUMNS = (
    users.c.id,
    users.c.username,
    users.c.email,
    users.c.display_name,
    users.c.role,
    users.c.version,
    users.c.created_at,
    users.c.updated_at,
    users.c.email_verified,
    users.c.email_verified_at,
    users.c.pending_email,
    users.c.disabled,
)
_CREDENTIAL_COLUMNS = (
    users.c.id,
    users.c.username,
    users.c.role,
    users.c.password_hash,
    users.c.email_verified,
    users.c.disabled,
)

_GET_BY_ID = select(*_RECORD_COLUMNS).where(users.c.id == bindparam("id"))
# One statement for any number of ids: PostgreSQL takes an array (one prepared statement for
# every batch size); SQLite expands the list into IN (?, ?, ...).
_GET_BY_IDS_POSTGRES = select(*_RECORD_COLUMNS).where(
    users.c.id == any_(bindparam("ids", type_=ARRAY(String())))
)
_GET_BY_IDS_SQLITE = select(*_RECORD_COLUMNS).where(users.c.id.in_(bindparam("ids", expanding=True)))
# At most this many ids in one statement, and this many of those statements at once.
MAX_BATCH = 100
MAX_IN_FLIGHT = 2
_CREDENTIALS_BY_USERNAME = select(*_CREDENTIAL_COLUMNS).where(users.c.username == bindparam("username"))
_CREDENTIALS_BY_ID = select(*_CREDENTIAL_COLUMNS).where(users.c.id == bindparam("id"))
_CREDENTIALS_BY_EMAIL = select(*_CREDENTIAL_COLUMNS).where(users.c.email_lookup == bindparam("lookup"))
_RECORD_BY_EMAIL = select(*_RECORD_COLUMNS).where(users.c.email_lookup == bindparam("lookup"))
_RESET_TARGET = select(*_RECORD_COLUMNS, users.c.email_lookup).where(users.c.id == bindparam("id"))
_INSERT_USER = insert(users)
_REPLACE_HASH = (
    update(users)
    .where(users.c.id == bindparam("b_id"), users.c.password_hash == bindparam("b_old"))
    .values(password_hash=bindparam("b_new"))
)
_DELETE_USER = delete(users).where(users.c.id == bindparam("id"))
_INSERT_PURGE = insert(purge_outbox)


def _credentials(row: Any) -> Credentials:
    return Credentials(
        id=row.id,
        username=row.username,
        role=cast(Role, row.role),
        password_hash=row.password_hash,
        disabled=bool(row.disabled),
        email_verified=bool(row.email_verified),
    )


def _conflicting_column(error: IntegrityError) -> str:
    """Which UNIQUE constraint fired: PostgreSQL names it in diag, SQLite in the message.
    (PostgreSQL's message also quotes the duplicate value, which may be a username like
    `email_lookup`, so it is read only when there is no constraint name.)"""
    original = error.orig
    constraint = getattr(getattr(original, "diag", None), "constraint_name", None)
    text = (constraint or str(original)).lower()
    if "email_lookup" in text:
        return "email"
    if "username" in text:
        return "username"
    return "id"


class SqlUserStore:
    """Reads and writes the users and purge_outbox tables: the `model.UserStore` on SQL."""

    def __init__(self, engine: Database, cipher: PiiCipher) -> None:
        self._engine = engine
        self._reads = sql.read_engine(engine)
        self._cipher = cipher
        self.audit = audit.AuditLog(engine, audit_table, reads=self._reads)
        self._get_by_ids = _GET_BY_IDS_POSTGRES if engine.dialect.name == "postgresql" else _GET_BY_IDS_SQLITE
        batch_size = metrics.READ_BATCH_SIZE.labels("users", "GetUser")
        self._gets: Coalescer[str, Any] = Coalescer(
            self._rows_by_id, max_batch=MAX_BATCH, max_in_flight=MAX_IN_FLIGHT, on_batch=batch_size.observe
        )

    def _record(self, row: Any) -> UserRecord:
        return UserRecord(
            id=row.id,
            username=row.username,
            email=self._cipher.open("email", row.id, row.email),
            display_name=self._cipher.open("display_name", row.id, row.display_name),
            role=cast(Role, row.role),
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
            disabled=bool(row.disabled),
            email_verified=bool(row.email_verified),
            email_verified_at=row.email_verified_at,
            pending_email=(
                None
                if row.pending_email is None
                else self._cipher.open("pending_email", row.id, row.pending_email)
            ),
        )

    def _lookup(self, email: str) -> str:
        return self._cipher.email_lookup(email_key(email))

    async def _queue(
        self, connection: Connection, mail: Sequence[OutgoingMail], token: Issued | None, now: datetime
    ) -> None:
        """Store a verification token (its data: the blind index of the address it verifies,
        never the address) and queue the mail, in the caller's transaction."""
        if token is not None:
            await single_use.issue(
                connection, replace(token, data=self._lookup(token.data)), now=now.timestamp()
            )
        await kit_mail.enqueue_all(connection, mail, sealer=self._cipher)

    def _sealed(self, user_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` with the personal fields encrypted and the e-mail blind index added."""
        sealed = dict(values)
        if "email" in sealed:
            email = sealed["email"]
            sealed["email"] = self._cipher.seal("email", user_id, email)
            sealed["email_lookup"] = self._cipher.email_lookup(email_key(email))
        if "display_name" in sealed:
            sealed["display_name"] = self._cipher.seal("display_name", user_id, sealed["display_name"])
        if "pending_email" in sealed:
            pending = sealed["pending_email"]
            sealed["pending_email"] = (
                None if pending is None else self._cipher.seal("pending_email", user_id, pending)
            )
            sealed["pending_email_lookup"] = None if pending is None else self._lookup(pending)
        return sealed

    # -- accounts ------------------------------------------------------------------------------

    async def insert(
        self,
        values: Mapping[str, Any],
        *,
        mail: Sequence[OutgoingMail] = (),
        token: Issued | None = None,
        audit_events: Sequence[audit.AuditEvent] = (),
    ) -> None:
        """Insert one account (plaintext values; the e-mail and display name are encrypted
        here) and queue its mail. Conflict when the username or e-mail is taken: the database's
        UNIQUE constraints decide, so concurrent sign-ups cannot both win."""
        try:
            async with self._engine.begin() as connection:
                await connection.execute(_INSERT_USER, self._sealed(values["id"], values))
                await self._queue(connection, mail, token, values["created_at"])
                await self.audit.insert(connection, audit_events)
        except IntegrityError as error:
            raise Conflict(_conflicting_column(error)) from None
        audit.emitted(audit_events)

    async def get(self, user_id: str) -> UserRecord | None:
        row = await self._gets.load(user_id)
        return None if row is None else self._record(row)

    async def _rows_by_id(self, ids: list[str]) -> list[Any]:
        """The batch function of `get`: one row (or None) per id, in the order asked (an id may
        be asked for twice)."""
        if len(ids) == 1:
            return [await self._row_by_id(ids[0])]
        try:
            async with self._reads.connect() as connection:
                rows = (await connection.execute(self._get_by_ids, {"ids": list(set(ids))})).all()
        except Exception as error:
            if sql.is_outage(error):
                raise  # every caller gets DATABASE_UNAVAILABLE
            # Something about one id (or a bug): each caller gets its own answer or error.
            answers = await asyncio.gather(*(self._row_by_id(i) for i in ids), return_exceptions=True)
            for answer in answers:
                if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                    raise answer from None  # cancelled: not an answer to hand to a caller
            return answers
        found = {row.id: row for row in rows}
        return [found.get(i) for i in ids]

    async def _row_by_id(self, user_id: str) -> Any:
        async with self._reads.connect() as connection:
            return (await connection.execute(_GET_BY_ID, {"id": user_id})).first()

    async def credentials_by_username(self, username: str) -> Credentials | None:
        async with self._reads.connect() as connection:
            row = (await connection.execute(_CREDENTIALS_BY_USERNAME, {"username": username})).first()
        return None if row is None else _credentials(row)

    async def credentials_by_email(self, email: str) -> Credentials | None:
        lookup = self._cipher.email_lookup(email_key(email))
        async with self._reads.connect() as connection:
            row = (await connection.execute(_CREDENTIALS_BY_EMAIL, {"lookup": lookup})).first()
        return None if row is None else _credentials(row)

    async def list_page(self, *, after: tuple[datetime, str] | None, limit: int) -> list[UserRecord]:
        """Up to `limit` accounts in (created_at, id) order, strictly after `after`."""
        statement = select(*_RECORD_COLUMNS).order_by(users.c.created_at, users.c.id).limit(limit)
        if after is not None:
            statement = statement.where(tuple_(users.c.created_at, users.c.id) > tuple_(*after))
        async with self._reads.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [self._record(row) for row in rows]

    async def update(
        self,
        user_id: str,
        values: Mapping[str, Any],
        *,
        expected_version: int | None,
        now: datetime,
        mail: Sequence[OutgoingMail] = (),
        token: Issued | None = None,
        audit_events: Sequence[audit.AuditEvent] = (),
    ) -> UserRecord | None:
        """Apply `values` and bump the version, in one statement, and queue `mail` in the same
        transaction. With `expected_version`, only if the row still has it (optimistic
        concurrency). None when no row matched (nothing is queued)."""
        statement = (
            update(users)
            .where(users.c.id == user_id)
            .values(**self._sealed(user_id, values), version=users.c.version + 1, updated_at=now)
            .returning(*_RECORD_COLUMNS)
        )
        if expected_version is not None:
            statement = statement.where(users.c.version == expected_version)
        try:
            async with self._engine.begin() as connection:
                row = (await connection.execute(statement)).first()
                if row is not None:
                    await self._queue(connection, mail, token, now)
                    await self.audit.insert(connection, audit_events)
        except IntegrityError as error:
            raise Conflict(_conflicting_column(error)) from None
        if row is None:
            return None
        audit.emitted(audit_events)
        return self._record(row)

    async def credentials_by_id(self, user_id: str) -> Credentials | None:
        async with self._reads.connect() as connection:
            row = (await connection.execute(_CREDENTIALS_BY_ID, {"id": user_id})).first()
        return None if row is None else _credentials(row)

    async def change_password_hash(
        self,
        user_id: str,
        old_hash: str,
        new_hash: str,
        now: datetime,
        mail: Sequence[OutgoingMail] = (),
        *,
        audit_events: Sequence[audit.AuditEvent] = (),
    ) -> bool:
        """Set a new password, unless it changed since `old_hash` was read (two changes at once:
        the second one's current password was checked against a hash no longer there). Reset
        links of the account stop working and `mail` is queued, in the same transaction."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(users)
                .where(users.c.id == user_id, users.c.password_hash == old_hash)
                .values(password_hash=new_hash, version=users.c.version + 1, updated_at=now)
            )
            if result.rowcount:
                await single_use.revoke(
                    connection, purpose=PASSWORD_RESET, subject=user_id, now=now.timestamp()
                )
                await self._queue(connection, mail, None, now)
                await self.audit.insert(connection, audit_events)
        if result.rowcount:
            audit.emitted(audit_events)
        return bool(result.rowcount)

    async def set_disabled(
        self, user_id: str, disabled: bool, now: datetime, *, audit_events: Sequence[audit.AuditEvent] = ()
    ) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(disabled=disabled, version=users.c.version + 1, updated_at=now)
            )
            if result.rowcount:
                await self.audit.insert(connection, audit_events)
        if result.rowcount:
            audit.emitted(audit_events)
        return bool(result.rowcount)

    async def verify_email(
        self, token: str, now: datetime, *, audit_events: VerifiedEvents | None = None
    ) -> UserRecord:
        try:
            async with self._engine.begin() as connection:
                spent = await single_use.consume(
                    connection, purpose=VERIFY_EMAIL, token=token, now=now.timestamp()
                )
                row = (
                    await connection.execute(
                        select(
                            users.c.email_lookup, users.c.pending_email, users.c.pending_email_lookup
                        ).where(users.c.id == spent.subject)
                    )
                ).first()
                if row is None:  # the account was deleted since
                    raise TokenRefused("MAIL_TOKEN_INVALID")
                verified: dict[str, Any] = {
                    "email_verified": True,
                    "email_verified_at": now,
                    "version": users.c.version + 1,
                    "updated_at": now,
                }
                changed = row.pending_email_lookup is not None and row.pending_email_lookup == spent.data
                if changed:
                    # The e-mail change takes effect: the pending address becomes the address.
                    address = self._cipher.open("pending_email", spent.subject, row.pending_email)
                    verified.update(
                        email=self._cipher.seal("email", spent.subject, address),
                        email_lookup=row.pending_email_lookup,
                        pending_email=None,
                        pending_email_lookup=None,
                    )
                elif row.email_lookup != spent.data:
                    raise TokenRefused("MAIL_TOKEN_SUPERSEDED")  # sent to an address no longer in play
                updated = (
                    await connection.execute(
                        update(users)
                        .where(users.c.id == spent.subject)
                        .values(**verified)
                        .returning(*_RECORD_COLUMNS)
                    )
                ).one()
                events = [] if audit_events is None else list(audit_events(spent.subject, changed))
                await self.audit.insert(connection, events)
        except IntegrityError as error:
            raise Conflict(_conflicting_column(error)) from None
        audit.emitted(events)
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
        return await self._queue_limited([mail], token, limits=limits, window=window, now=now)

    async def _queue_limited(
        self,
        mail: Sequence[OutgoingMail],
        token: Issued,
        *,
        limits: Sequence[tuple[str, int]],
        window: float,
        now: datetime,
        keep_token: bool = True,
        audit_events: Sequence[audit.AuditEvent] = (),
    ) -> float:
        """Take one hit on every limit and, if all had room, store the token, queue the mail and
        write `audit_events` (one transaction); else nothing and the seconds until there is room.
        Without `keep_token` the token's row is written and deleted again in that transaction."""
        async with self._engine.begin() as connection:
            wait = await rate_limit.take(connection, list(limits), window=window, now=now.timestamp())
            if wait > 0:
                return wait
            await self._queue(connection, mail, token, now)
            if not keep_token:
                await connection.execute(
                    delete(single_use_tokens).where(
                        single_use_tokens.c.token_hash == single_use.token_hash(token.token)
                    )
                )
            await self.audit.insert(connection, audit_events)
        audit.emitted(audit_events)
        return 0.0

    # -- password reset ------------------------------------------------------------------------

    async def get_by_email(self, email: str) -> UserRecord | None:
        async with self._reads.connect() as connection:
            row = (await connection.execute(_RECORD_BY_EMAIL, {"lookup": self._lookup(email)})).first()
        return None if row is None else self._record(row)

    async def queue_password_reset(
        self,
        mail: OutgoingMail | None,
        token: Issued,
        *,
        limits: Sequence[tuple[str, int]],
        window: float,
        now: datetime,
        audit_events: Sequence[audit.AuditEvent] = (),
    ) -> float:
        """The token's `data` (the address) is stored as its blind index, as a verification's. A
        decoy (`mail` None) is written and deleted by its primary key in the same transaction:
        the statements of a real reset, with an indexed delete instead of the mail's insert, and
        nothing kept, so a flood of unknown addresses leaves no rows behind."""
        if mail is None:
            return await self._queue_limited(
                [], token, limits=limits, window=window, now=now, keep_token=False, audit_events=audit_events
            )
        return await self._queue_limited(
            [mail], token, limits=limits, window=window, now=now, audit_events=audit_events
        )

    @staticmethod
    def _reset_target(row: Any, spent: single_use.Redeemed) -> None:
        """Refuse a reset token whose account is gone or whose address moved since it was mailed."""
        if row is None:
            raise TokenRefused("MAIL_TOKEN_INVALID")
        if row.email_lookup != spent.data:
            raise TokenRefused("MAIL_TOKEN_SUPERSEDED")

    async def peek_password_reset(self, token: str, now: datetime) -> UserRecord:
        async with self._reads.connect() as connection:
            spent = await single_use.peek(
                connection, purpose=PASSWORD_RESET, token=token, now=now.timestamp()
            )
            row = (await connection.execute(_RESET_TARGET, {"id": spent.subject})).first()
        self._reset_target(row, spent)
        return self._record(row)

    async def reset_password(
        self,
        token: str,
        new_hash: str,
        now: datetime,
        mail: Sequence[OutgoingMail] = (),
        *,
        audit_events: Sequence[audit.AuditEvent] = (),
    ) -> UserRecord:
        """The conditional UPDATE of `single_use.consume` decides between concurrent resets with
        one token; a refusal after it (the address moved) rolls the spend back."""
        async with self._engine.begin() as connection:
            spent = await single_use.consume(
                connection, purpose=PASSWORD_RESET, token=token, now=now.timestamp()
            )
            self._reset_target(
                (await connection.execute(_RESET_TARGET, {"id": spent.subject})).first(), spent
            )
            updated = (
                await connection.execute(
                    update(users)
                    .where(users.c.id == spent.subject)
                    .values(
                        password_hash=new_hash,
                        email_verified=True,
                        # The first verification's time stays; an unverified address is verified now.
                        email_verified_at=case(
                            (users.c.email_verified.is_(True), users.c.email_verified_at), else_=now
                        ),
                        version=users.c.version + 1,
                        updated_at=now,
                    )
                    .returning(*_RECORD_COLUMNS)
                )
            ).one()
            await single_use.revoke(
                connection, purpose=PASSWORD_RESET, subject=spent.subject, now=now.timestamp()
            )
            await self._queue(connection, mail, None, now)
            await self.audit.insert(connection, audit_events)
        audit.emitted(audit_events)
        return self._record(updated)

    def address_key(self, email: str) -> str:
        """The blind index of an address: what per-address limits count (no address stored)."""
        return self._lookup(email)

    async def replace_password_hash(self, user_id: str, old_hash: str, new_hash: str) -> None:
        """Swap in a rehashed password, unless the password changed meanwhile. The version is
        not bumped: the account did not change in any way a client can see."""
        async with self._engine.begin() as connection:
            await connection.execute(_REPLACE_HASH, {"b_id": user_id, "b_old": old_hash, "b_new": new_hash})

    async def delete_with_purge(
        self, user_id: str, now: datetime, *, audit_events: Sequence[audit.AuditEvent] = ()
    ) -> bool:
        """Delete the account and, in the same transaction, record that its data must be
        purged. False when there was no such account (nothing is written)."""
        async with self._engine.begin() as connection:
            result = await connection.execute(_DELETE_USER, {"id": user_id})
            if result.rowcount == 0:
                return False
            await connection.execute(delete(totp_factors).where(totp_factors.c.user_id == user_id))
            await connection.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
            await connection.execute(
                _INSERT_PURGE,
                {"user_id": user_id, "created_at": now, "attempts": 0, "next_attempt_at": now},
            )
            await self.audit.insert(connection, audit_events)
        audit.emitted(audit_events)
        return True

    async def reencrypt(self, *, batch_size: int = 200) -> tuple[int, int]:
        """Rewrite every personal value not sealed with the newest key. Returns (rewritten,
        skipped): a row that changed under us is skipped, and a further pass picks it up. The
        version is not bumped: nothing a client can see changes."""
        rewritten, skipped = await self._reencrypt_totp(batch_size)
        after = ""
        columns = select(users.c.id, users.c.email, users.c.display_name)
        while True:
            async with self._reads.connect() as connection:
                rows = (
                    await connection.execute(
                        columns.where(users.c.id > after).order_by(users.c.id).limit(batch_size)
                    )
                ).all()
            if not rows:
                return rewritten, skipped
            for row in rows:
                if self._cipher.is_current(row.email) and self._cipher.is_current(row.display_name):
                    continue
                email = self._cipher.open("email", row.id, row.email)
                display_name = self._cipher.open("display_name", row.id, row.display_name)
                statement = (
                    update(users)
                    .where(
                        users.c.id == row.id,
                        users.c.email == row.email,
                        users.c.display_name == row.display_name,
                    )
                    .values(
                        email=self._cipher.seal("email", row.id, email),
                        display_name=self._cipher.seal("display_name", row.id, display_name),
                    )
                )
                async with self._engine.begin() as connection:
                    result = await connection.execute(statement)
                if result.rowcount == 1:
                    rewritten += 1
                else:
                    skipped += 1
            after = rows[-1].id

    async def _reencrypt_totp(self, batch_size: int) -> tuple[int, int]:
        """`reencrypt` for the TOTP secrets (compare-and-set on the old ciphertext, as above)."""
        rewritten = skipped = 0
        after = ""
        columns = select(totp_factors.c.user_id, totp_factors.c.secret)
        while True:
            async with self._reads.connect() as connection:
                rows = (
                    await connection.execute(
                        columns.where(totp_factors.c.user_id > after)
                        .order_by(totp_factors.c.user_id)
                        .limit(batch_size)
                    )
                ).all()
            if not rows:
                return rewritten, skipped
            for row in rows:
                if self._cipher.is_current(row.secret):
                    continue
                secret = self._cipher.open(_TOTP_COLUMN, row.user_id, row.secret)
                async with self._engine.begin() as connection:
                    result = await connection.execute(
                        update(totp_factors)
                        .where(totp_factors.c.user_id == row.user_id, totp_factors.c.secret == row.secret)
                        .values(secret=self._cipher.seal(_TOTP_COLUMN, row.user_id, secret))
                    )
                if result.rowcount == 1:
                    rewritten += 1
                else:
                    skipped += 1
            after = rows[-1].user_id

    # -- the TOTP second factor ----------------------------------------------------------------

    async def totp_factor(self, user_id: str) -> TotpFactor | None:
        async with self._reads.connect() as connection:
            row = (
                await connection.execute(select(totp_factors).where(totp_factors.c.user_id == user_id))
            ).first()
        if row is None:
            return None
        return TotpFactor(
            user_id=row.user_id,
            secret=self._cipher.open(_TOTP_COLUMN, row.user_id, row.secret),
            active=bool(row.active),
            last_step=int(row.last_step),
            enrolled_at=row.enrolled_at,
        )

    async def save_pending_totp(self, user_id: str, secret: str, now: datetime) -> bool:
        sealed = self._cipher.seal(_TOTP_COLUMN, user_id, secret)
        async with self._engine.begin() as connection:
            if (await connection.execute(select(users.c.id).where(users.c.id == user_id))).first() is None:
                return False
            replaced = await connection.execute(
                update(totp_factors)
                .where(totp_factors.c.user_id == user_id, totp_factors.c.active == false())
                .values(secret=sealed, last_step=0, enrolled_at=now, activated_at=None)
            )
            if replaced.rowcount:
                return True
        try:
            async with self._engine.begin() as connection:
                await connection.execute(
                    insert(totp_factors).values(
                        user_id=user_id, secret=sealed, active=False, last_step=0, enrolled_at=now
                    )
                )
        except IntegrityError:
            return False  # an active factor (or a concurrent enrolment) is there
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
        audit_events: Sequence[audit.AuditEvent] = (),
    ) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(totp_factors)
                .where(
                    totp_factors.c.user_id == user_id,
                    totp_factors.c.active == false(),
                    totp_factors.c.enrolled_at == enrolled_at,
                )
                .values(active=True, last_step=step, activated_at=now)
            )
            if result.rowcount != 1:
                return False
            await self._write_codes(connection, user_id, code_hashes)
            await self._queue(connection, mail, None, now)
            await self.audit.insert(connection, audit_events)
        audit.emitted(audit_events)
        return True

    @staticmethod
    async def _write_codes(connection: Connection, user_id: str, code_hashes: Sequence[str]) -> None:
        await connection.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
        if code_hashes:
            await connection.execute(
                insert(recovery_codes), [{"user_id": user_id, "code_hash": h} for h in code_hashes]
            )

    async def use_totp_step(self, user_id: str, step: int) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(totp_factors)
                .where(
                    totp_factors.c.user_id == user_id,
                    totp_factors.c.active == true(),
                    totp_factors.c.last_step < step,
                )
                .values(last_step=step)
            )
        return result.rowcount == 1

    async def use_recovery_code(
        self,
        user_id: str,
        code_hash: str,
        mail: Sequence[OutgoingMail] = (),
        *,
        audit_events: Sequence[audit.AuditEvent] = (),
    ) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                delete(recovery_codes).where(
                    recovery_codes.c.user_id == user_id, recovery_codes.c.code_hash == code_hash
                )
            )
            if result.rowcount == 1:
                await kit_mail.enqueue_all(connection, mail, sealer=self._cipher)
                await self.audit.insert(connection, audit_events)
        if result.rowcount == 1:
            audit.emitted(audit_events)
        return result.rowcount == 1

    async def replace_recovery_codes(
        self, user_id: str, code_hashes: Sequence[str], *, audit_events: Sequence[audit.AuditEvent] = ()
    ) -> bool:
        async with self._engine.begin() as connection:
            active = (
                await connection.execute(
                    select(totp_factors.c.user_id).where(
                        totp_factors.c.user_id == user_id, totp_factors.c.active == true()
                    )
                )
            ).first()
            if active is None:
                return False
            await self._write_codes(connection, user_id, code_hashes)
            await self.audit.insert(connection, audit_events)
        audit.emitted(audit_events)
        return True

    async def delete_totp(
        self,
        user_id: str,
        *,
        active_mail: Sequence[OutgoingMail] = (),
        audit_events: Sequence[audit.AuditEvent] = (),
    ) -> bool:
        async with self._engine.begin() as connection:
            removed = (
                await connection.execute(
                    delete(totp_factors)
                    .where(totp_factors.c.user_id == user_id)
                    .returning(totp_factors.c.active)
                )
            ).first()
            await connection.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
            active = removed is not None and removed.active
            if active:
                await kit_mail.enqueue_all(connection, active_mail, sealer=self._cipher)
                await self.audit.insert(connection, audit_events)
        if active:
            audit.emitted(audit_events)
        return removed is not None

    async def recovery_codes_left(self, user_id: str) -> int:
        async with self._reads.connect() as connection:
            value = (
                await connection.execute(
                    select(func.count())
                    .select_from(recovery_codes)
                    .where(recovery_codes.c.user_id == user_id)
                )
            ).scalar()
        return int(value or 0)

    # -- purge outbox --------------------------------------------------------------------------

    async def due_purges(self, now: datetime, limit: int) -> list[PendingPurge]:
        statement = (
            select(purge_outbox.c.user_id, purge_outbox.c.attempts, purge_outbox.c.next_attempt_at)
            .where(purge_outbox.c.next_attempt_at <= now)
            .order_by(purge_outbox.c.next_attempt_at)
            .limit(limit)
        )
        async with self._reads.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [PendingPurge(row.user_id, row.attempts, row.next_attempt_at) for row in rows]

    async def claim_purge(self, purge: PendingPurge, lease_until: datetime) -> bool:
        """Take a row for one delivery attempt. The attempt counter is the compare-and-set
        token: if another replica claimed the row first, this matches nothing."""
        statement = (
            update(purge_outbox)
            .where(purge_outbox.c.user_id == purge.user_id, purge_outbox.c.attempts == purge.attempts)
            .values(attempts=purge.attempts + 1, next_attempt_at=lease_until)
        )
        async with self._engine.begin() as connection:
            result = await connection.execute(statement)
        return result.rowcount == 1

    async def finish_purge(self, user_id: str) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(delete(purge_outbox).where(purge_outbox.c.user_id == user_id))

    async def reschedule_purge(self, user_id: str, attempts: int, at: datetime, error: str) -> None:
        """After a failed attempt: try again at `at`, unless someone else has claimed it since."""
        statement = (
            update(purge_outbox)
            .where(purge_outbox.c.user_id == user_id, purge_outbox.c.attempts == attempts)
            .values(next_attempt_at=at, last_error=error[:500])
        )
        async with self._engine.begin() as connection:
            await connection.execute(statement)

    async def purge_backlog(self) -> tuple[int, datetime | None]:
        statement = select(func.count(), func.min(purge_outbox.c.created_at))
        async with self._reads.connect() as connection:
            row = (await connection.execute(statement)).one()
        return int(row[0]), cast(datetime | None, row[1])

    async def next_purge_due(self) -> datetime | None:
        async with self._reads.connect() as connection:
            value = (await connection.execute(select(func.min(purge_outbox.c.next_attempt_at)))).scalar()
        return cast(datetime | None, value)
