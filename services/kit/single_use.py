"""Single-use tokens sent by mail: e-mail verification, password reset.

- A token is 32 bytes from `secrets` (256 bits), URL-safe base64: it goes into a link.
- Only its SHA-256 is stored. The row is found by that hash (a primary-key lookup on the hash
  of a 256-bit secret tells a timing observer nothing); where a token is compared with a stored
  hash, `matches` does it in constant time.
- Each token has a purpose (`verify_email`, `password_reset`), a subject (the account id) and an
  expiry; `data` carries what the issuer needs back (e.g. which address a verification is for).
- It dies when used (`consume` marks it in one conditional UPDATE, so of two concurrent
  consumers exactly one wins), when a newer token of the same purpose and subject is issued
  (superseded), when `revoke` is called (e.g. the password changed), or when it expires.
- A refused token says why: 401 with MAIL_TOKEN_INVALID, MAIL_TOKEN_USED, MAIL_TOKEN_SUPERSEDED
  or MAIL_TOKEN_EXPIRED (401 like a bad refresh token: the token is the credential of the call).

A SQL-backed service adds `single_use_tokens` to its schema (`table_in(metadata)`) and its
migrations (`create_table(op)`), and calls `issue` / `peek` / `consume` / `revoke` inside its own
transactions. Times are UNIX seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from services.kit.db import Connection
from services.kit.errors import Unauthenticated

TABLE = "single_use_tokens"
TOKEN_BYTES = 32  # 256 bits
MAX_TOKEN_LENGTH = 256  # a longer value cannot be one of ours; refused before hashing

_MESSAGES = {
    "MAIL_TOKEN_INVALID": "this link is not valid; ask for a new one",
    "MAIL_TOKEN_USED": "this link was already used; ask for a new one if you still need it",
    "MAIL_TOKEN_SUPERSEDED": "a newer link was sent since this one; use the newest one",
    "MAIL_TOKEN_EXPIRED": "this link has expired; ask for a new one",
}


def _columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("data", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float, nullable=True),
        # Set when a newer token of the same purpose and subject was issued, or on `revoke`.
        sa.Column("superseded_at", sa.Float, nullable=True),
    ]


_INDEX = ("ix_single_use_tokens_subject", ["purpose", "subject"])


def table_in(metadata: sa.MetaData) -> sa.Table:
    """The tokens table in a service's own metadata (its schema module calls this once)."""
    return sa.Table(TABLE, metadata, *_columns(), sa.Index(_INDEX[0], *_INDEX[1]))


def create_table(op: Any) -> None:
    """For a service's Alembic migration: `single_use.create_table(op)`."""
    op.create_table(TABLE, *_columns())
    op.create_index(_INDEX[0], TABLE, _INDEX[1])


def drop_table(op: Any) -> None:
    op.drop_index(_INDEX[0], table_name=TABLE)
    op.drop_table(TABLE)


# The kit's own handle on the table, for the statements below (one table, whoever's metadata).
tokens = table_in(sa.MetaData())


def new_token() -> str:
    """A fresh token: 256 bits from `secrets`, URL-safe."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What is stored instead of the token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str, stored_hash: str) -> bool:
    """Whether `token` is the one `stored_hash` was made from, in constant time."""
    return hmac.compare_digest(token_hash(token).encode(), stored_hash.encode())


class TokenRefused(Unauthenticated):
    """401 with the reason (MAIL_TOKEN_INVALID, _USED, _SUPERSEDED, _EXPIRED); the ErrorInfo's
    metadata names the request field that carried the token."""

    def __init__(self, reason: str, *, field: str = "token") -> None:
        super().__init__(_MESSAGES[reason], reason=reason, metadata={"field": field})


@dataclass(frozen=True, slots=True)
class Issued:
    """A token to store: made by the caller (so it can go into a mail of the same transaction)."""

    token: str
    purpose: str
    subject: str
    expires_at: float
    data: str = ""


@dataclass(frozen=True, slots=True)
class Redeemed:
    """What a consumed token was issued for."""

    purpose: str
    subject: str
    data: str
    created_at: float


def prepare(*, purpose: str, subject: str, ttl_seconds: float, now: float, data: str = "") -> Issued:
    """A new token for `subject`, valid for `ttl_seconds` from `now` (not stored yet: `issue`)."""
    return Issued(new_token(), purpose, subject, now + ttl_seconds, data)


async def issue(connection: Connection, issued: Issued, *, now: float) -> None:
    """Store `issued` in the caller's transaction; every older live token of the same purpose
    and subject is superseded. Long-dead tokens of the subject are removed on the way."""
    live = sa.and_(
        tokens.c.purpose == issued.purpose,
        tokens.c.subject == issued.subject,
        tokens.c.used_at.is_(None),
        tokens.c.superseded_at.is_(None),
    )
    await connection.execute(sa.update(tokens).where(live).values(superseded_at=now))
    # Kept a day past expiry so a late click still reads "expired" rather than "invalid".
    await connection.execute(
        sa.delete(tokens).where(
            tokens.c.purpose == issued.purpose,
            tokens.c.subject == issued.subject,
            tokens.c.expires_at < now - 86400,
        )
    )
    await connection.execute(
        sa.insert(tokens).values(
            token_hash=token_hash(issued.token),
            purpose=issued.purpose,
            subject=issued.subject,
            data=issued.data,
            created_at=now,
            expires_at=issued.expires_at,
        )
    )


async def consume(connection: Connection, *, purpose: str, token: str, now: float) -> Redeemed:
    """Spend `token` in the caller's transaction, or raise TokenRefused saying why. One
    conditional UPDATE decides: of concurrent consumers of one token, exactly one gets a row."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenRefused("MAIL_TOKEN_INVALID")
    digest = token_hash(token)
    spent = (
        await connection.execute(
            sa.update(tokens)
            .where(
                tokens.c.token_hash == digest,
                tokens.c.purpose == purpose,
                tokens.c.used_at.is_(None),
                tokens.c.superseded_at.is_(None),
                tokens.c.expires_at > now,
            )
            .values(used_at=now)
            .returning(tokens.c.subject, tokens.c.data, tokens.c.created_at)
        )
    ).first()
    if spent is not None:
        return Redeemed(purpose, spent.subject, spent.data, spent.created_at)
    await peek(connection, purpose=purpose, token=token, now=now)  # raises why it was refused
    raise TokenRefused("MAIL_TOKEN_USED")  # spent between the UPDATE and the read (a race lost)


async def peek(connection: Connection, *, purpose: str, token: str, now: float) -> Redeemed:
    """What `token` would redeem, without spending it, or TokenRefused saying why not: one
    read by its hash. For a check before costly work (a password reset hashes the new password
    only for a live token); `consume` still decides, so a peeked token may be refused later."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenRefused("MAIL_TOKEN_INVALID")
    row = (
        await connection.execute(
            sa.select(
                tokens.c.subject,
                tokens.c.data,
                tokens.c.created_at,
                tokens.c.used_at,
                tokens.c.superseded_at,
                tokens.c.expires_at,
            ).where(tokens.c.token_hash == token_hash(token), tokens.c.purpose == purpose)
        )
    ).first()
    if row is None:
        raise TokenRefused("MAIL_TOKEN_INVALID")
    if row.used_at is not None:
        raise TokenRefused("MAIL_TOKEN_USED")
    if row.superseded_at is not None:
        raise TokenRefused("MAIL_TOKEN_SUPERSEDED")
    if row.expires_at <= now:
        raise TokenRefused("MAIL_TOKEN_EXPIRED")
    return Redeemed(purpose, row.subject, row.data, row.created_at)


async def revoke(connection: Connection, *, purpose: str, subject: str, now: float) -> int:
    """Kill every live token of `purpose` for `subject` (e.g. reset links once the password
    changed). Returns how many there were."""
    result = await connection.execute(
        sa.update(tokens)
        .where(
            tokens.c.purpose == purpose,
            tokens.c.subject == subject,
            tokens.c.used_at.is_(None),
            tokens.c.superseded_at.is_(None),
        )
        .values(superseded_at=now)
    )
    return int(result.rowcount or 0)
