"""The dev databases' first-start script, run against the real PostgreSQL the tests use.

k8s/overlays/dev/postgres/init-databases.sh (also mounted by docker-compose.yml) gives users and
auth one role and one database each. Here it runs with psql exactly as the postgres image runs it,
except that the role and database names get a unique suffix, because the test server is shared;
then the services' real migrations run as those roles (through the image's entrypoint), and a
role is refused the other service's database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import DEFAULT_TEST_DATABASE_URL
from tests.deploy.conftest import K8S, ROOT, load_env_file, tool

SCRIPT = K8S / "overlays" / "dev" / "postgres" / "init-databases.sh"
NAMES = ("pinexa_users", "pinexa_auth")


@pytest.fixture
def server() -> Iterator[tuple[str, str]]:
    """The test server's admin URL and a unique suffix; drops what the script made."""
    url = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    suffix = f"_t{uuid.uuid4().hex[:8]}"
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    yield conninfo, suffix
    with psycopg.connect(conninfo, autocommit=True) as connection:
        for name in NAMES:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}{suffix}" WITH (FORCE)')
            connection.execute(f'DROP ROLE IF EXISTS "{name}{suffix}"')


@pytest.mark.postgres
def test_init_script_makes_one_role_and_database_per_service(server: tuple[str, str], tmp_path: Path) -> None:
    conninfo, suffix = server
    admin = make_url(conninfo)
    script = SCRIPT.read_text()
    for name in NAMES:
        assert script.count(name) >= 3
        script = script.replace(name, f"{name}{suffix}")
    (tmp_path / "init.sh").write_text(script)
    passwords = load_env_file(K8S / "overlays" / "dev" / "secrets" / "postgres.env")
    environment = {
        "PATH": os.environ["PATH"],
        "PGHOST": admin.host or "127.0.0.1",
        "PGPORT": str(admin.port or 5432),
        **({"PGPASSWORD": admin.password} if admin.password else {}),
        "POSTGRES_USER": admin.username or "postgres",
        "USERS_DB_PASSWORD": passwords["USERS_DB_PASSWORD"],
        "AUTH_DB_PASSWORD": passwords["AUTH_DB_PASSWORD"],
    }
    # The image's entrypoint sources *.sh files that are not executable: do the same.
    result = subprocess.run(
        ["sh", "-c", f". {tmp_path / 'init.sh'}"],
        env={**environment, "PATH": f"{Path(tool('psql')).parent}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    def url(name: str, password: str) -> str:
        return admin.set(
            drivername="postgresql", username=f"{name}{suffix}", password=password, database=f"{name}{suffix}"
        ).render_as_string(hide_password=False)

    users_url = url("pinexa_users", passwords["USERS_DB_PASSWORD"])
    auth_url = url("pinexa_auth", passwords["AUTH_DB_PASSWORD"])
    migrate = subprocess.run(
        ["sh", str(ROOT / "docker" / "entrypoint.sh"), "migrations"],
        env={
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PINEXA_ENV": "development",
            "DATA_DIR": str(tmp_path / "var"),
            "USERS_DATABASE_URL": users_url,
            "AUTH_DATABASE_URL": auth_url,
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr
    for service_url in (users_url, auth_url):
        with psycopg.connect(service_url) as connection:
            tables = connection.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user"
            ).fetchone()
            assert tables is not None and tables[0] > 1
    # The users role may not even connect to auth's database.
    other = make_url(users_url).set(database=f"pinexa_auth{suffix}").render_as_string(hide_password=False)
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(other).close()
