"""The users service's tables, as SQLAlchemy Core metadata (the migrations create them)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)

from services.kit import mail, rate_limit, single_use

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on PostgreSQL and SQLite alike.

    PostgreSQL stores `timestamptz`; SQLite stores a fixed-width text form (microseconds), which
    sorts correctly, so keyset pagination on it works on both."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC-aware ones")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    # Stored lower-cased, so the UNIQUE constraint makes it unique regardless of case.
    Column("username", String(32), nullable=False),
    # AES-256-GCM ciphertext (see crypto.py), as is display_name.
    Column("email", Text, nullable=False),
    # What e-mail uniqueness and login-by-email use: the blind index of the lower-cased address
    # (an HMAC, hex). The UNIQUE constraint on it decides between concurrent sign-ups.
    Column("email_lookup", String(320), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("display_name", Text, nullable=False, server_default=""),
    Column("role", String(16), nullable=False, server_default="user"),
    # Set by an admin (through auth's DisableUser): the account may not log in or refresh.
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("email_verified", Boolean, nullable=False, server_default=false()),
    Column("email_verified_at", UTCDateTime, nullable=True),
    # An e-mail change waiting for its verification (sealed like email), and its blind index.
    # Not unique: whoever verifies first gets the address; the UNIQUE email_lookup decides.
    Column("pending_email", Text, nullable=True),
    Column("pending_email_lookup", String(320), nullable=True),
    # Bumped on every change; the etag is derived from it.
    Column("version", Integer, nullable=False, server_default="1"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("username", name="uq_users_username"),
    UniqueConstraint("email_lookup", name="uq_users_email_lookup"),
    Index("ix_users_created_at_id", "created_at", "id"),
)

# One row per deleted user whose data still has to be purged by the data service. The row is
# written in the same transaction as the delete, and removed only once the purge succeeded.
purge_outbox = Table(
    "purge_outbox",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    # When the row may next be tried; a worker that claims a row pushes this forward (a lease),
    # so another replica does not deliver it at the same time.
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Index("ix_purge_outbox_next_attempt_at", "next_attempt_at"),
)

# The kit's tables: mail waiting to go out (written in the transaction of the change that causes
# it), the verification tokens (hashes only), and the resend counters.
mail_outbox = mail.outbox_table_in(metadata)
single_use_tokens = single_use.table_in(metadata)
rate_limits = rate_limit.table_in(metadata)
# The TOTP second factor of an account (at most one). `secret` is sealed like the personal
# fields (crypto.py, column "totp_secret"); until `active` it is an enrolment awaiting its first
# code. `last_step` is the newest RFC 6238 step a code was accepted for: a code of that step or
# an older one is a replay. Removed with the account.
totp_factors = Table(
    "totp_factors",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("secret", Text, nullable=False),
    Column("active", Boolean, nullable=False, server_default=false()),
    Column("last_step", BigInteger, nullable=False, server_default="0"),
    Column("enrolled_at", UTCDateTime, nullable=False),
    Column("activated_at", UTCDateTime, nullable=True),
)

# The unspent recovery codes of an account's factor, as SHA-256 hashes (see totp.py).
recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("code_hash", String(64), primary_key=True),
)
