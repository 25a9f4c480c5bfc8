"""The users table and the purge outbox.

Revision ID: 0001
Revises:
Create Date: 2026-05-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("email_lookup", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("display_name", sa.Text, nullable=False, server_default=""),
        sa.Column("role", sa.String(16), nullable=False, server_default="user"),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("username", name="uq_users_username"),
        sa.UniqueConstraint("email_lookup", name="uq_users_email_lookup"),
    )
    op.create_index("ix_users_created_at_id", "users", ["created_at", "id"])
    op.create_table(
        "purge_outbox",
        sa.Column("user_id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_purge_outbox_next_attempt_at", "purge_outbox", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_purge_outbox_next_attempt_at", table_name="purge_outbox")
    op.drop_table("purge_outbox")
    op.drop_index("ix_users_created_at_id", table_name="users")
    op.drop_table("users")
