"""Alembic environment of the auth service; the kit does the work."""

from services.auth.schema import metadata
from services.kit.sql import run_alembic_env

run_alembic_env(metadata)
