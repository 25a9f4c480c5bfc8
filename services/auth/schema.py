"""Auth's tables, as SQLAlchemy Core metadata (the migrations create them; store.py queries
them). Times are UNIX seconds (floats); tokens and throttle keys are stored only as SHA-256."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

sessions = sa.Table(
    "auth_sessions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("revoked_reason", sa.String(32), nullable=True),
    # Updated at login and on every refresh.
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.Column("user_agent", sa.String(256), nullable=False, server_default=""),
    sa.Column("client_address", sa.String(64), nullable=False, server_default=""),
    # How the session's user last proved who they are (issue 13): the access tokens' `amr`
    # ("pwd" or "pwd otp") and `auth_time` (the login, or the last reauthentication).
    sa.Column("amr", sa.String(32), nullable=False, server_default="pwd"),
    sa.Column("auth_time", sa.Float, nullable=True),
)

# Every session revocation, in order: what WatchRevocations streams to the other services. A row
# is needed only until the longest access token of its session would have expired (`expires_at`);
# the purger deletes it then. `seq` is the subscribers' resume cursor.
revocations = sa.Table(
    "auth_revocations",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("session_id", sa.String(36), nullable=False),
    sa.Column("logged_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

refresh_tokens = sa.Table(
    "auth_refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column(
        "session_id",
        sa.String(36),
        sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("parent_hash", sa.String(64), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    sa.Column("spent_at", sa.Float, nullable=True),
    sa.Column("grace_uses", sa.Integer, nullable=False, server_default="0"),
)

login_throttle = sa.Table(
    "auth_login_throttle",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failure_at", sa.Float, nullable=False, index=True),
    sa.Column("blocked_until", sa.Float, nullable=False, server_default="0"),
)

device_tokens = sa.Table(
    "auth_device_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(64), nullable=False, index=True),
    sa.Column("login_key", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_used_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_at", sa.Float, nullable=True),
)

# The second step of a login with a second factor: the password was right, and this single-use
# token (stored as SHA-256) lets the client send a TOTP or recovery code within minutes.
mfa_challenges = sa.Table(
    "auth_mfa_challenges",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    # The device-token binding of the password step (its login name's key).
    sa.Column("login_key", sa.String(64), nullable=False),
    sa.Column("user_agent", sa.String(256), nullable=False, server_default=""),
    sa.Column("client_address", sa.String(64), nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    sa.Column("used_at", sa.Float, nullable=True),
)
