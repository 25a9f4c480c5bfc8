"""Sessions record where they are used (last use, user agent, client address), and the
revocation log that auth streams to the other services (issue 12).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("auth_sessions") as batch:
        batch.add_column(sa.Column("last_used_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("user_agent", sa.String(256), nullable=False, server_default=""))
        batch.add_column(sa.Column("client_address", sa.String(64), nullable=False, server_default=""))
    op.create_table(
        "auth_revocations",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("logged_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_auth_revocations_expires_at", "auth_revocations", ["expires_at"])


def downgrade() -> None:
    op.drop_table("auth_revocations")
    with op.batch_alter_table("auth_sessions") as batch:
        batch.drop_column("client_address")
        batch.drop_column("user_agent")
        batch.drop_column("last_used_at")
