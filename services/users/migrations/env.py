"""Alembic environment of the users service; the kit does the work."""

from services.kit.sql import run_alembic_env
from services.users.schema import metadata

run_alembic_env(metadata)
