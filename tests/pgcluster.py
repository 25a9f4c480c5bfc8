"""A scratch PostgreSQL cluster of the test's own, which the test may stop and start again.

The shared server at 127.0.0.1:5432 must never be stopped, so outage and chaos tests run on a
cluster made with `initdb` in a temporary directory, listening on a free port of 127.0.0.1:

    with PgCluster() as pg:                  # initdb + start (pg.port is free, fixed for its life)
        url = pg.create_database("users")    # postgresql://postgres@127.0.0.1:<port>/users
        pg.stop()                            # immediate shutdown (like a crash); mode="fast" also
        pg.start()                           # same port, same data directory
        pg.is_running()                      # pg_ctl status
    # leaving the block stops the server and deletes the directory

`PgCluster(port=..., bin_dir=..., settings={...})` overrides the port, the binaries
(/usr/lib/postgresql/15/bin, or $PG_BIN_DIR) and postgresql.conf entries. `pg.url` is the
`postgres` database; `pg.log()` returns the server log so far.

Run as root, initdb and pg_ctl run as the `postgres` user (`runuser -u postgres --`); the
cluster directory is then made under /tmp and handed to that user.

A test process that is killed (a timeout, kill -9) cannot stop its cluster; each directory
records the pid of the process that made it, and a new PgCluster stops and deletes the clusters
whose maker is gone (`reap_orphans()`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import psycopg

from tests.support import free_port

DEFAULT_BIN_DIR = Path(os.environ.get("PG_BIN_DIR", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"
PREFIX = "pinexa-pg-"
OWNER_FILE = "owner.pid"

# Small and fast: a test cluster needs no durability across a crash of the machine (fsync off:
# the OS keeps what was written), but it must keep every acknowledged commit across an immediate
# shutdown of the server, so synchronous_commit stays on (off would lose the last ones).
DEFAULT_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "100",
    "shared_buffers": "16MB",
    "fsync": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(bin_dir: Path = DEFAULT_BIN_DIR) -> list[Path]:
    """Stop and delete the scratch clusters whose making process has died; returns their dirs."""
    reaped: list[Path] = []
    for root in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            owner = int((root / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # not ours, or still being made
        if _alive(owner):
            continue
        data_dir = root / "data"
        if (data_dir / "postmaster.pid").exists():
            prefix = ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []
            subprocess.run(
                [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)
        reaped.append(root)
    return reaped


class PgCluster:
    """One scratch PostgreSQL server: `init`, `start`, `stop`, `start` again, `destroy`."""

    def __init__(
        self,
        *,
        port: int | None = None,
        bin_dir: Path = DEFAULT_BIN_DIR,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        reap_orphans(bin_dir)
        self.port = port or free_port()
        self.bin_dir = bin_dir
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / OWNER_FILE).write_text(str(os.getpid()))
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, user=OS_USER, group=OS_USER)
        self._initialised = False

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", OS_USER, "--"] if self._as_postgres else []
        return subprocess.run([*prefix, *args], check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> None:
        """initdb with trust authentication for the `postgres` role (idempotent)."""
        if self._initialised:
            return
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# pinexa test cluster\n")
            conf.write(f"port = {self.port}\n")
            conf.write(f"unix_socket_directories = '{self.root}'\n")
            for key, value in self.settings.items():
                conf.write(f"{key} = {value}\n")
        self._initialised = True

    def start(self, timeout: int = 30) -> None:
        """Start the server (initdb first if needed) and wait until it accepts connections."""
        self.init()
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(timeout),
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server: `immediate` (no clean shutdown, like a crash), `fast` or `smart`."""
        if mode not in ("immediate", "fast", "smart"):
            raise ValueError(f"unknown shutdown mode {mode!r}")
        if self.is_running():
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        if not self._initialised:
            return False
        result = self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "status", check=False)
        return result.returncode == 0

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (the server must be running); returns its URL."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def destroy(self) -> None:
        """Stop the server if it runs and delete its directory."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        try:
            self.start()
        except Exception:
            self.destroy()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()
