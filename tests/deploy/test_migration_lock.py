"""Two replicas starting together run their `migrate` initContainers at the same moment. The kit's
Alembic environment takes a PostgreSQL advisory lock, so the second run waits for the first and
then finds nothing to do, instead of failing on "relation already exists" and crash-looping.

The migration here is a stand-in written for this test (it sleeps so that the two runs overlap);
the Alembic environment, the lock and the database are the real ones.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.deploy.conftest import ROOT

ENV = """
from services.kit.sql import run_alembic_env

run_alembic_env(None)
"""

REVISION = '''
"""a slow first migration"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT pg_sleep(1)")
    op.create_table("widgets", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("widgets")
'''


@pytest.fixture
def script_location(tmp_path: Path) -> Path:
    (tmp_path / "versions").mkdir()
    (tmp_path / "env.py").write_text(ENV)
    (tmp_path / "versions" / "0001_widgets.py").write_text(REVISION)
    return tmp_path


def _migrate_in_a_process(url: str, script_location: Path) -> subprocess.Popen[str]:
    """One initContainer: a process of its own (Alembic's context is per process)."""
    code = (
        "import sys; from pathlib import Path; from services.kit.sql import upgrade_sync; "
        "upgrade_sync(url=sys.argv[1], script_location=Path(sys.argv[2]), "
        "version_table='widgets_alembic_version')"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, url, str(script_location)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.postgres
def test_concurrent_migrations_wait_for_each_other(
    postgres_database_factory: Callable[[], str], script_location: Path
) -> None:
    url = postgres_database_factory()
    processes = [_migrate_in_a_process(url, script_location) for _ in range(3)]
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as connection:
        versions = connection.execute("SELECT version_num FROM widgets_alembic_version").fetchall()
        assert versions == [("0001",)]
        assert connection.execute("SELECT count(*) FROM widgets").fetchone() == (0,)
