"""The security audit trail (issue 14): `users_audit_events` (services/kit/audit.py).

Revision ID: 0005_audit
Revises: 0004_totp
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

from services.kit.audit import create_audit_table

revision: str = "0005_audit"
down_revision: str | None = "0004_totp"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    create_audit_table(op, "users_audit_events")


def downgrade() -> None:
    op.drop_table("users_audit_events")
