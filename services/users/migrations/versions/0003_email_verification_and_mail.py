"""E-mail verification (users.email_verified, email_verified_at, pending_email), the mail
outbox, single-use tokens and the mail rate limits.

Revision ID: 0003
Revises: 0002_disabled
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.kit import mail, rate_limit, single_use

revision: str = "0003"
down_revision: str | None = "0002_disabled"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email_verified", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("pending_email", sa.Text, nullable=True))
        batch.add_column(sa.Column("pending_email_lookup", sa.String(320), nullable=True))
    mail.create_outbox_table(op)
    single_use.create_table(op)
    rate_limit.create_table(op)


def downgrade() -> None:
    rate_limit.drop_table(op)
    single_use.drop_table(op)
    mail.drop_outbox_table(op)
    with op.batch_alter_table("users") as batch:
        batch.drop_column("pending_email_lookup")
        batch.drop_column("pending_email")
        batch.drop_column("email_verified_at")
        batch.drop_column("email_verified")
