"""The container images, checked without a Docker engine.

- The Dockerfiles: pinned bases, a build stage and a slim runtime stage without compilers or pip,
  a numeric non-root user, and a build context (.dockerignore) that holds what they copy.
- The wheel the build stage makes: built here with pip from a copy of the sources, it must carry
  the generated `pinexa` stubs and each SQL service's Alembic migrations.
- The image's entrypoint (docker/entrypoint.sh), run here with the virtualenv's Python: service
  selection, `migrations` on two databases, and `healthcheck` against a real gRPC server.
- Envoy: the Deployment's command line passes `envoy --mode validate`, and the compose health
  check command gets 200 from a real Envoy's /healthz.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from envoy.render import CONSOLE_FILES, DOCS_FILES
from services.kit.server import ServiceHost, ServiceSpec
from services.kit.settings import Settings
from tests.deploy.conftest import K8S, ROOT, named, pod_spec, rendered, tool
from tests.support import free_port, wait_until

ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def _stages(dockerfile: Path) -> list[list[str]]:
    """The instructions of each stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def _args(dockerfile: Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile.read_text(), re.MULTILINE))


def test_application_dockerfile() -> None:
    dockerfile = ROOT / "Dockerfile"
    base = _args(dockerfile)["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base), base  # a pinned slim Python
    build, runtime = _stages(dockerfile)
    assert build[0] == "FROM ${PYTHON_IMAGE} AS build"
    assert any("pip wheel" in line for line in build)
    assert runtime[0] == "FROM ${PYTHON_IMAGE} AS runtime"
    runtime_text = "\n".join(runtime)
    # Only the virtualenv comes from the build stage: no compilers, no sources.
    assert [line for line in runtime if "--from=" in line] == ["COPY --from=build /opt/pinexa /opt/pinexa"]
    for forbidden in ("apt-get", "gcc", "build-essential", "pip install", "COPY services", "COPY ."):
        assert forbidden not in runtime_text, forbidden
    assert "pip uninstall --yes pip" in "\n".join(build)  # the runtime venv has no pip
    (user,) = [line for line in runtime if line.startswith("USER ")]
    uid, _, gid = user.split()[1].partition(":")
    assert int(uid) >= 10000 and int(gid) >= 10000
    assert 'ENTRYPOINT ["/usr/local/bin/pinexa"]' in runtime
    # The UID the Kubernetes manifests run as.
    for name in ("auth", "users", "data"):
        security = pod_spec(named(rendered("prod"), "Deployment", name))["securityContext"]
        assert (security["runAsUser"], security["runAsGroup"]) == (int(uid), int(gid))


def test_envoy_dockerfile() -> None:
    (stage,) = _stages(ROOT / "Dockerfile.envoy")
    assert stage[0] == "FROM envoyproxy/envoy:v1.40.0"
    copies = [line.split()[-2:] for line in stage if line.startswith("COPY")]
    assert copies == [
        ["k8s/base/envoy/envoy.yaml", "/etc/envoy/envoy.yaml"],
        ["k8s/base/envoy/pinexa.pb", "/etc/envoy/pinexa.pb"],
        ["k8s/base/envoy/openapi.json", "/etc/envoy-docs/openapi.json"],
        *([f"k8s/base/envoy/docs/{name}", f"/etc/envoy-docs/{name}"] for name in DOCS_FILES),
        *([f"k8s/base/envoy/console/{name}", f"/etc/envoy-console/{name}"] for name in CONSOLE_FILES),
    ]
    (user,) = [line for line in stage if line.startswith("USER ")]
    assert not user.split()[1].startswith("0")


def test_dockerignore_keeps_what_the_dockerfiles_copy() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"  # an allow-list: .git, .venv, var/ (keys, databases) stay out
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = []
    for dockerfile in (ROOT / "Dockerfile", ROOT / "Dockerfile.envoy"):
        for stage in _stages(dockerfile):
            for line in stage:
                if line.startswith("COPY") and "--from=" not in line:
                    sources += [s for s in line.split()[1:-1] if not s.startswith("--")]
    assert sources
    for source in sources:
        source = source.rstrip("/")
        assert source in allowed or source.startswith(tuple(f"{a}/" for a in allowed)), source
        assert (ROOT / source).exists(), source


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel --no-deps .` as the build stage runs it, on a copy of what the context holds."""
    source = tmp_path_factory.mktemp("context")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("generated", "services"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    out = tmp_path_factory.mktemp("wheels")
    # The virtualenv's setuptools when it has one (no network needed); else pip's isolated build.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", str(source), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (built,) = out.glob("pinexa-*.whl")
    return built


def test_wheel_carries_generated_stubs_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("auth/v1/auth_pb2.py", "users/v1/users_pb2.py", "data/v1/data_pb2.py"):
        assert f"pinexa/{module}" in names
    for service in ("users", "auth"):
        migrations = ROOT / "services" / service / "migrations"
        expected = {
            p.relative_to(ROOT).as_posix()
            for p in migrations.rglob("*")
            if p.is_file() and p.suffix in (".py", ".mako", ".ini") and "__pycache__" not in p.parts
        }
        assert any("/versions/" in name for name in expected), service
        assert expected <= names, sorted(expected - names)
    # The image's own paths the Dockerfile checks after installing.
    assert {"services/users/migrations/env.py", "services/auth/migrations/env.py"} <= names


def test_the_image_holds_the_product_only(wheel: Path) -> None:
    """The image is this wheel installed: the services and their stubs, none of the dev tools
    (the `make run` launcher devstack/, the Envoy renderer envoy/, scripts/, tests/)."""
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"services", "pinexa"}, sorted(top)
    assert not [name for name in names if "devstack" in name or name.startswith("envoy/")]
    # What the build stage copies is all the wheel is built from: the launcher is not in it.
    (build, _runtime) = _stages(ROOT / "Dockerfile")
    copied = {source for line in build if line.startswith("COPY ") for source in line.split()[1:-1]}
    assert copied == {"pyproject.toml", "README.md", "generated", "services"}, copied
    assert not (ROOT / "services" / "devstack").exists()
    # Nor does the build context (.dockerignore's allow-list) let the dev tools in.
    allowed = [
        line[1:].strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    assert not [a for a in allowed if a.split("/")[0] in ("devstack", "envoy", "scripts", "tests")], allowed


def _entrypoint(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **{k: os.environ[k] for k in ("HOME",) if k in os.environ},
        "PINEXA_ENV": "development",
        **(env or {}),
    }
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=timeout,
        check=False,
    )


def test_entrypoint_is_executable_posix_sh() -> None:
    assert os.access(ENTRYPOINT, os.X_OK)
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=False).returncode == 0


@pytest.mark.parametrize("args", [(), ("nope",), ("migrations", "extra"), ("healthcheck",)])
def test_entrypoint_refuses_unknown_commands(args: tuple[str, ...]) -> None:
    result = _entrypoint(*args)
    assert result.returncode == 64
    assert "usage: pinexa" in result.stderr


def test_entrypoint_selects_the_service() -> None:
    """`pinexa users ARGS` is `python -m services.users ARGS` (its usage error proves it ran)."""
    result = _entrypoint("users", "--no-such-option")
    assert result.returncode == 2
    assert "usage: python -m services.users" in result.stderr


def test_entrypoint_migrations_migrate_both_databases(tmp_path: Path) -> None:
    users_db, auth_db = tmp_path / "users.db", tmp_path / "auth.db"
    result = _entrypoint(
        "migrations",
        env={
            "USERS_DATABASE_URL": f"sqlite:///{users_db}",
            "AUTH_DATABASE_URL": f"sqlite:///{auth_db}",
            "DATA_DIR": str(tmp_path / "var"),
        },
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for database in (users_db, auth_db):
        with sqlite3.connect(database) as connection:
            tables = {
                row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        assert any(name.endswith("alembic_version") or "version" in name for name in tables), tables
        assert len(tables) > 1, tables
    # Each database got only its own service's schema.
    with sqlite3.connect(users_db) as connection:
        users_tables = {
            row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    with sqlite3.connect(auth_db) as connection:
        auth_tables = {
            row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    assert not users_tables & auth_tables, users_tables & auth_tables


@pytest.fixture
async def health_host() -> AsyncIterator[tuple[ServiceHost, int, asyncio.Event]]:
    """A real gRPC server with the kit's health service; its readiness fails while `down` is set."""
    down = asyncio.Event()

    async def readiness() -> None:
        if down.is_set():
            raise ConnectionError("database unreachable")

    spec = ServiceSpec(
        name="probe",
        register=lambda server: None,
        service_names=["pinexa.users.v1.UserService"],
        readiness=readiness,
    )
    host = ServiceHost(spec, settings=Settings(health_check_interval_seconds=0.05), verifier=None)
    port = await host.start("127.0.0.1:0")
    try:
        yield host, port, down
    finally:
        await host.stop(grace=0, drain=0)


async def _healthcheck(port: int, service: str = "") -> subprocess.CompletedProcess[str]:
    args = ["healthcheck", str(port), *([service] if service else [])]
    return await asyncio.to_thread(_entrypoint, *args)


async def test_entrypoint_healthcheck_and_the_probes_contract(
    health_host: tuple[ServiceHost, int, asyncio.Event],
) -> None:
    """What compose's health check and Kubernetes' probes ask: the overall status follows the
    database; the `liveness` service stays SERVING, so a database outage never restarts a pod."""
    _, port, down = health_host
    assert (await _healthcheck(port)).returncode == 0
    assert (await _healthcheck(port, "liveness")).returncode == 0
    down.set()

    async def not_serving() -> bool:
        return (await _healthcheck(port)).returncode != 0

    await wait_until(not_serving, timeout=10)
    result = await _healthcheck(port)
    assert "NOT_SERVING" in result.stderr
    assert (await _healthcheck(port, "liveness")).returncode == 0
    down.clear()

    async def serving() -> bool:
        return (await _healthcheck(port)).returncode == 0

    await wait_until(serving, timeout=10)


async def test_entrypoint_healthcheck_fails_when_nothing_listens() -> None:
    result = await asyncio.to_thread(_entrypoint, "healthcheck", str(free_port()))
    assert result.returncode != 0
    assert "UNAVAILABLE" in result.stderr


def _envoy_args(docs: list[dict[str, object]]) -> list[str]:
    (container,) = pod_spec(named(docs, "Deployment", "envoy"))["containers"]  # type: ignore[arg-type]
    return list(container["args"])


def test_envoy_deployment_command_line_passes_envoy_validate(tmp_path: Path) -> None:
    """The Deployment's own command line, on the committed config. (tests/e2e/test_envoy_config.py
    validates both renderings of the template; this checks the flags and paths the pods use.)"""
    args = _envoy_args(rendered("prod"))
    assert args == _envoy_args(rendered("dev"))
    source, mount = K8S / "base" / "envoy", "/etc/envoy"
    config = (source / "envoy.yaml").read_text()
    assert config.count(f"{mount}/pinexa.pb") == 1
    assert config.count("/etc/envoy-docs/openapi.json") == 1
    shutil.copy(source / "pinexa.pb", tmp_path / "pinexa.pb")
    config = config.replace("/etc/envoy-docs/openapi.json", str(source / "openapi.json"))
    config = config.replace("/etc/envoy-docs/", f"{source / 'docs'}/")
    config = config.replace("/etc/envoy-console/", f"{source / 'console'}/")
    config = config.replace(f"{mount}/pinexa.pb", str(tmp_path / "pinexa.pb"))
    (tmp_path / "envoy.yaml").write_text(config)
    result = subprocess.run(
        [tool("envoy"), "--mode", "validate", *(a.replace(mount, str(tmp_path)) for a in args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"configuration '{tmp_path}/envoy.yaml' OK" in result.stdout + result.stderr


async def test_compose_envoy_healthcheck_gets_200_from_a_real_envoy(tmp_path: Path) -> None:
    from envoy.render import local_params, render

    port, admin = free_port(), free_port()
    (tmp_path / "envoy.yaml").write_text(render(local_params(listen_port=port, admin_port=admin)))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["envoy"]["healthcheck"]["test"]
    assert command[:3] == ["CMD", "bash", "-c"]
    script = command[3].replace("/127.0.0.1/8080", f"/127.0.0.1/{port}")
    assert script != command[3]
    process = await asyncio.create_subprocess_exec(
        tool("envoy"),
        "-c",
        str(tmp_path / "envoy.yaml"),
        "--disable-hot-restart",
        "--log-level",
        "warn",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:

        async def healthy() -> bool:
            probe = await asyncio.create_subprocess_exec(
                "bash", "-c", script, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
            return await probe.wait() == 0

        await wait_until(healthy, timeout=20)
        broken = script.replace("/healthz", "/api/v1/nope")
        probe = await asyncio.create_subprocess_exec(
            "bash", "-c", broken, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        assert await probe.wait() != 0  # the check reads the status; a 404 is not healthy
    finally:
        process.terminate()
        await process.wait()
