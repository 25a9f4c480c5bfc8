"""Device tokens (hashes only): proof that a client logged in to an account before, and the
failure count that throttles logins presenting it (issue 9).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "auth_device_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("login_key", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_at", sa.Float, nullable=True),
    )
    op.create_index("ix_auth_device_tokens_user_id", "auth_device_tokens", ["user_id"])
    op.create_index("ix_auth_device_tokens_expires_at", "auth_device_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_table("auth_device_tokens")
