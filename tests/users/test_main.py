"""`python -m services.users` as an operator runs it: a real process, configured by environment."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import grpc
import sqlalchemy

from pinexa.users.v1 import users_pb2, users_pb2_grpc
from services.kit.sql import sync_url
from tests.support import free_port, wait_serving
from tests.users.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ADMIN_", "DATABASE_URL", "PINEXA_", "PII_"))
    }
    env.update({"DATA_DIR": str(tmp_path / "var"), "LOG_FORMAT": "json", **extra})
    return env


async def _run(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.users",
        *args,
        cwd=ROOT,
        env=_env(tmp_path, **env),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_migrate_applies_the_schema_and_exits(tmp_path: Path, sql_url: str) -> None:
    code, stderr = await _run(tmp_path, "migrate", DATABASE_URL=sql_url)
    assert code == 0, stderr
    engine = sqlalchemy.create_engine(sync_url(sql_url))
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"users", "purge_outbox", "alembic_version_users"} <= tables


async def test_reencrypt_command(tmp_path: Path) -> None:
    assert (await _run(tmp_path, "migrate"))[0] == 0
    code, stderr = await _run(tmp_path, "reencrypt")
    assert code == 0, stderr
    assert "re-encrypted" in stderr


async def test_production_without_a_pii_key_refuses_to_start(tmp_path: Path) -> None:
    code, stderr = await _run(tmp_path, PINEXA_ENV="production", INTERNAL_TOKEN="t" * 40)
    assert code == 2
    assert "PII_ENCRYPTION_KEY" in stderr


async def test_unknown_arguments_are_refused(tmp_path: Path) -> None:
    code, stderr = await _run(tmp_path, "nonsense")
    assert code == 2
    assert "usage" in stderr


async def test_serves_on_its_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.users",
        cwd=ROOT,
        env=_env(
            tmp_path,
            USERS_PORT=str(port),
            DATA_PORT=str(free_port()),
            AUTH_PORT=str(free_port()),
            SHUTDOWN_DRAIN_SECONDS="0",
        ),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_serving(f"127.0.0.1:{port}", "pinexa.users.v1.UserService", timeout=60)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            user = await users_pb2_grpc.UserServiceStub(channel).CreateUser(
                users_pb2.CreateUserRequest(
                    user=users_pb2.User(username="proc", email="proc@example.com", password=PASSWORD)
                )
            )
        assert user.username == "proc"
        assert (tmp_path / "var" / "users.db").exists()
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, stderr.decode()
        assert PASSWORD.encode() not in stderr
        assert b'"service": "users"' in stderr
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
