"""Alembic migrations of the users service (version table `alembic_version_users`)."""
