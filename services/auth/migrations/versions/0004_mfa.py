"""Sessions record how their user signed in (amr, auth_time), and the login's second step
(issue 13).

Revision ID: 0004_mfa
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_mfa"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("auth_sessions") as batch:
        batch.add_column(sa.Column("amr", sa.String(32), nullable=False, server_default="pwd"))
        batch.add_column(sa.Column("auth_time", sa.Float, nullable=True))
    op.create_table(
        "auth_mfa_challenges",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("login_key", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(256), nullable=False, server_default=""),
        sa.Column("client_address", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float, nullable=True),
    )
    op.create_index("ix_auth_mfa_challenges_expires_at", "auth_mfa_challenges", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_auth_mfa_challenges_expires_at", table_name="auth_mfa_challenges")
    op.drop_table("auth_mfa_challenges")
    with op.batch_alter_table("auth_sessions") as batch:
        batch.drop_column("auth_time")
        batch.drop_column("amr")
