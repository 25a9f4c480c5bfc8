"""The whole Pinexa stack as local processes: what `make run`, the e2e tests and `make bench` start.

    stack = Stack(Path("var"), Ports())          # or Ports.free() for tests, in a tmp dir
    stack.start()                                # returns once everything reports healthy
    ...                                          # stack.rest_url, stack.grpc_address("users")
    stack.stop()                                 # SIGTERM, then SIGKILL after a timeout

It starts every service whose package exists (`python -m services.<svc>`, each its own process
on its own port), an nx-27017 MongoDB wire server when the data service exists and MONGODB_URL
is not set, and Envoy with the LOCAL rendering of envoy/envoy.yaml.tmpl. Readiness is polled
(gRPC health of each service; Envoy's /healthz, its view of the clusters and its JWKS fetch),
never slept on.

Every child runs in its own process group and is told by the kernel to exit when this process
dies (PR_SET_PDEATHSIG), so neither Ctrl-C, SIGTERM nor a crash of the parent leaves orphans.
State goes under the base directory: SQLite files, nx-27017's data file, dev signing keys, the
rendered Envoy config, and one log file per process under logs/.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any

from envoy import render as envoy_config
from services.kit.settings import Settings, SettingsError

SERVICES = ("auth", "users", "data")
"""Every service, in the order they are reported."""

PUBLIC_SERVICE = {
    "auth": "pinexa.auth.v1.AuthService",
    "users": "pinexa.users.v1.UserService",
    "data": "pinexa.data.v1.DataService",
}

MONGO = "nx-27017"
"""The name of the embedded MongoDB process (its child, log file and readiness)."""

OTLP = "otlp"
"""The name of the dev trace receiver (devstack/otlp.py): its child and log file."""

_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """The stack could not start; the message names the process and quotes its log."""


@dataclass(frozen=True, kw_only=True)
class Ports:
    """Where everything listens, all on 127.0.0.1. The defaults are `make run`'s."""

    envoy: int = 8080
    admin: int = 9901
    auth: int = 50051
    users: int = 50052
    data: int = 50053
    mongo: int = 27017
    # Envoy's stats listener (GET /stats/prometheus), the trace receiver and each service's
    # /metrics (the latter two only with `observe`, as under `make run`).
    envoy_stats: int = 9902
    otlp: int = 4317
    auth_metrics: int = 9091
    users_metrics: int = 9092
    data_metrics: int = 9093

    @classmethod
    def free(cls) -> Ports:
        """Ports free right now (for tests and benchmarks running next to `make run`)."""
        sockets = []
        try:
            for _ in fields(cls):
                sock = socket.socket()
                sock.bind(("127.0.0.1", 0))
                sockets.append(sock)
            return cls(**{f.name: s.getsockname()[1] for f, s in zip(fields(cls), sockets, strict=True)})
        finally:
            for sock in sockets:
                sock.close()

    def of(self, name: str) -> int:
        return int(getattr(self, name))


def available_services() -> tuple[str, ...]:
    """The services that can be started: those with a `services/<svc>/__main__.py`."""
    found = []
    for name in SERVICES:
        try:
            if importlib.util.find_spec(f"services.{name}.__main__") is not None:
                found.append(name)
        except ImportError:  # the package itself is missing
            continue
    return tuple(found)


def venv_tool(name: str) -> str:
    """A command installed next to this Python (the project's .venv/bin), else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name} is not installed; run `make venv` (it comes with the project's extras)")
    return found


def _die_with_parent(parent: int) -> Callable[[], None]:
    """preexec_fn for children: the kernel sends SIGTERM when the parent dies, however it dies.

    Linux ties this to the *thread* that forked, so it is set only for children started from the
    main thread (a child started from a worker thread would be killed when that thread ends)."""
    prctl = None
    if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread():
        # Looked up here, in the parent: between fork and exec the child must not load a library
        # (dlopen takes the loader's lock, which another thread of ours may have held at fork).
        prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class Child:
    """One process of the stack: started in its own process group, logging to one file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *, stop_timeout: float) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, env: Mapping[str, str], cwd: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: we decide when it gets signals
                preexec_fn=_die_with_parent(os.getpid()),
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        """Send `sig` to the child's whole process group."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def wait(self, timeout: float) -> bool:
        """True once the child has exited; False if it is still running after `timeout`."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=max(timeout, 0))
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def stop_children(children: Iterable[Child]) -> None:
    """SIGTERM every child at once, then SIGKILL whichever outlives its stop timeout."""
    children = [c for c in children if c.running()]
    for child in children:
        child.signal(signal.SIGTERM)
    started = time.monotonic()
    for child in children:
        if not child.wait(child.stop_timeout - (time.monotonic() - started)):
            child.kill()


def envoy_child(config: Path, log_path: Path, *, concurrency: int = 2, log_level: str = "warning") -> Child:
    """An Envoy process for `config` (not started yet)."""
    argv = [
        venv_tool("envoy"),
        "-c",
        str(config),
        "--disable-hot-restart",  # no shared memory: several Envoys may run side by side
        "--concurrency",
        str(concurrency),
        "-l",
        log_level,
        "--drain-time-s",
        "1",
    ]
    return Child("envoy", argv, log_path, stop_timeout=10)


def _http_get(url: str, timeout: float = 1.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (local URLs)
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()
    except OSError:  # refused, reset, timed out: not up (yet)
        return 0, b""


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def grpc_serving(address: str, service: str = "") -> bool:
    """True when the gRPC server at `address` reports SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            )
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def mongo_ready(url: str) -> bool:
    import pymongo
    import pymongo.errors

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=500, connectTimeoutMS=500
    )
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()
    return True


def envoy_ready(rest_url: str, admin_url: str, *, clusters: Iterable[str], jwks: bool) -> bool:
    """Envoy answers /healthz, every host of `clusters` passes its health check and, with `jwks`,
    jwt_authn has fetched the JWKS."""
    if _http_get(f"{rest_url}/healthz")[0] != 200:
        return False
    status, body = _http_get(f"{admin_url}/clusters?format=json")
    if status != 200:
        return False
    healthy = {}
    for cluster in json.loads(body).get("cluster_statuses", []):
        hosts = cluster.get("host_statuses", [])
        # A host that failed a check carries a flag such as failed_active_health_check.
        healthy[cluster["name"]] = bool(hosts) and all(
            h.get("health_status", {}) == {"eds_health_status": "HEALTHY"} for h in hosts
        )
    if not all(healthy.get(name) for name in clusters):
        return False
    if jwks:
        status, body = _http_get(f"{admin_url}/stats?filter=jwks_fetch_success$")
        fetched = sum(int(line.rsplit(":", 1)[1]) for line in body.decode().splitlines() if ":" in line)
        if fetched < 1:
            return False
    return True


class Stack:
    """Services + nx-27017 + Envoy as child processes, sharing one base directory."""

    def __init__(
        self,
        base_dir: Path,
        ports: Ports | None = None,
        *,
        env: Mapping[str, str] | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        services: Sequence[str] | None = None,
        envoy_overrides: Mapping[str, Any] | None = None,
        envoy_concurrency: int | None = None,
        envoy_log_level: str = "warning",
        start_timeout: float = 60.0,
        observe: bool = False,
    ) -> None:
        """`env` is the environment the services see on top of this process's own (settings such
        as DATABASE_URL or LOG_LEVEL); `services` limits which services start (default: every one
        that exists); `service_env` adds variables for one service only (e.g. METRICS_PORT);
        `envoy_overrides` changes EnvoyParams fields of the local rendering. With `observe` (what
        `make run` does) every service serves /metrics on its port in `ports`, and Envoy and the
        services send traces to OTEL_EXPORTER_OTLP_ENDPOINT, or when that is unset to a local
        receiver started here, writing <base_dir>/traces.jsonl."""
        self.base_dir = base_dir.resolve()
        self.ports = ports or Ports()
        self.services = tuple(services) if services is not None else available_services()
        unknown = set(self.services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services: {sorted(unknown)}")
        self.log_dir = self.base_dir / "logs"
        self.envoy_config_path = self.base_dir / "envoy.yaml"
        self._extra_env = dict(env or {})
        self._service_env_overrides = {name: dict(values) for name, values in (service_env or {}).items()}
        self._envoy_overrides = dict(envoy_overrides or {})
        self.envoy_concurrency = envoy_concurrency or max(1, min(4, os.cpu_count() or 1))
        self._envoy_log_level = envoy_log_level
        self._start_timeout = start_timeout
        self.observe = observe
        self.runs_otlp = observe and not self._inherited("OTEL_EXPORTER_OTLP_ENDPOINT")
        self.traces_path = self.base_dir / "traces.jsonl"
        self.children: dict[str, Child] = {}
        self.env = self._service_env()
        self.mongo_url = self.env.get("MONGODB_URL", "")
        self.runs_mongo = "data" in self.services and not self._inherited("MONGODB_URL")

    # ---- addresses

    @property
    def rest_url(self) -> str:
        """Envoy's listener: REST and native gRPC."""
        return f"http://127.0.0.1:{self.ports.envoy}"

    @property
    def serves_console(self) -> bool:
        """Envoy serves the web console at / (built by devstack/console.py)."""
        return bool(self._envoy_overrides.get("console_dir"))

    @property
    def envoy_address(self) -> str:
        return f"127.0.0.1:{self.ports.envoy}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.admin}"

    def grpc_address(self, service: str) -> str:
        """A service's own gRPC port (health, reflection, and its internal service)."""
        return f"127.0.0.1:{self.ports.of(service)}"

    def metrics_url(self, service: str) -> str:
        """A service's /metrics (served only with `observe`)."""
        return f"http://127.0.0.1:{self.ports.of(f'{service}_metrics')}/metrics"

    @property
    def envoy_stats_url(self) -> str:
        """Envoy's stats in Prometheus' format, on its stats listener."""
        return f"http://127.0.0.1:{self.ports.envoy_stats}/stats/prometheus"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    # ---- configuration

    def _inherited(self, name: str) -> bool:
        return bool(self._extra_env.get(name, os.environ.get(name, "")).strip())

    def _service_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "DATA_DIR": str(self.base_dir),
                "JWT_KEYS_DIR": str(self.base_dir / "keys"),
                "LOG_FORMAT": os.environ.get("LOG_FORMAT", "text"),
                # Internal RPCs need a shared secret; a fresh one per run unless one is given.
                "INTERNAL_TOKEN": os.environ.get("INTERNAL_TOKEN") or secrets.token_urlsafe(32),
            }
        )
        for name in SERVICES:
            port = self.ports.of(name)
            env[f"{name.upper()}_PORT"] = str(port)
            env[f"{name.upper()}_ADDRESS"] = f"127.0.0.1:{port}"
        env.update(self._extra_env)
        if not env.get("MONGODB_URL", "").strip():
            env["MONGODB_URL"] = f"mongodb://127.0.0.1:{self.ports.mongo}/"
        if self.runs_otlp:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{self.ports.otlp}"
            env["OTEL_EXPORTER_OTLP_INSECURE"] = "true"
            # Spans reach the file within about a second of the request.
            env.setdefault("OTEL_BSP_SCHEDULE_DELAY", "500")
        return env

    def _per_service_env(self, name: str) -> dict[str, str]:
        env = {}
        if self.observe and name in SERVICES:
            env["METRICS_PORT"] = str(self.ports.of(f"{name}_metrics"))
        return {**env, **self._service_env_overrides.get(name, {})}

    def shared_settings(self) -> Settings:
        """The kit's shared settings as every service reads them from `env` (the same loader, so
        the same defaults and the same refusal of a malformed value)."""
        try:
            return Settings.from_env(self.env)
        except SettingsError as error:
            raise StackError(f"configuration error: {error}") from None

    def envoy_params(self) -> envoy_config.EnvoyParams:
        """The LOCAL rendering for these ports (and the services' JWT issuer and audience)."""
        shared = self.shared_settings()
        overrides: dict[str, Any] = {
            "jwt_issuer": shared.jwt_issuer,
            "jwt_audience": shared.jwt_audience,
            "stats_port": self.ports.envoy_stats,
        }
        if self.observe:
            host, port = envoy_config.otlp_target(self.env["OTEL_EXPORTER_OTLP_ENDPOINT"])
            overrides.update(tracing=True, otlp_host=host, otlp_port=port)
        overrides.update(self._envoy_overrides)
        return envoy_config.local_params(
            listen_port=self.ports.envoy,
            admin_port=self.ports.admin,
            auth_port=self.ports.auth,
            users_port=self.ports.users,
            data_port=self.ports.data,
            **overrides,
        )

    # ---- lifecycle

    def _new_child(self, name: str) -> Child:
        if name == MONGO:
            pid_file = self.base_dir / "nx-27017.pid"
            pid_file.unlink(missing_ok=True)  # a stale one from a killed run would block start-up
            return Child(
                MONGO,
                [
                    # Its own command line, through a wrapper that keeps only warnings in its log.
                    sys.executable,
                    "-m",
                    "devstack.nx27017",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.ports.mongo),
                    "--db",
                    str(self.base_dir / "nx-27017.db"),
                    "--pid-file",
                    str(pid_file),
                    "--log-file",
                    os.devnull,  # it logs to stderr as well, which goes to logs/nx-27017.log
                ],
                self.log_path(MONGO),
                stop_timeout=10,
            )
        if name == OTLP:
            return Child(
                OTLP,
                [
                    sys.executable,
                    "-m",
                    "devstack.otlp",
                    "--port",
                    str(self.ports.otlp),
                    "--out",
                    str(self.traces_path),
                ],
                self.log_path(OTLP),
                stop_timeout=5,
            )
        if name == "envoy":
            return envoy_child(
                self.envoy_config_path,
                self.log_path("envoy"),
                concurrency=self.envoy_concurrency,
                log_level=self._envoy_log_level,
            )
        shared = self.shared_settings()
        grace, drain = shared.shutdown_grace_seconds, shared.shutdown_drain_seconds
        return Child(
            name,
            [sys.executable, "-m", f"services.{name}"],
            self.log_path(name),
            stop_timeout=grace + drain + 5,
        )

    def _check_ports_free(self) -> None:
        wanted = {
            "envoy": self.ports.envoy,
            "envoy admin": self.ports.admin,
            "envoy stats": self.ports.envoy_stats,
        }
        wanted.update({name: self.ports.of(name) for name in self.services})
        if self.observe:
            wanted.update({f"{name} metrics": self.ports.of(f"{name}_metrics") for name in self.services})
        if self.runs_otlp:
            wanted["OTLP receiver"] = self.ports.otlp
        if self.runs_mongo:
            wanted[MONGO] = self.ports.mongo
        busy = []
        for what, port in wanted.items():
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    busy.append(f"{port} ({what})")
        if busy:
            raise StackError(
                f"port(s) already in use on 127.0.0.1: {', '.join(busy)}. "
                "Is another `make run` (or something else) running?"
            )

    def start(self) -> None:
        """Start everything and return once it is all healthy; on failure, stop what started."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._check_ports_free()
        started = False
        try:
            deadline = time.monotonic() + self._start_timeout
            if self.runs_otlp:
                self._launch(OTLP)
                self._wait(OTLP, lambda: _port_open(self.ports.otlp), deadline)
            if self.runs_mongo:
                self._launch(MONGO)
                self._wait_ready(MONGO, deadline)
            for name in self.services:
                self._launch(name)
            for name in self.services:
                self._wait_ready(name, deadline)
            envoy_config.write(self.envoy_params(), self.envoy_config_path)
            self._launch("envoy")
            self._wait_envoy(deadline)
            started = True
        finally:
            if not started:  # a failure, or Ctrl-C during start-up: leave nothing running
                self.stop()

    def _launch(self, name: str) -> Child:
        child = self._new_child(name)
        self.children[child.name] = child
        child.start({**self.env, **self._per_service_env(name)}, cwd=Path.cwd())
        return child

    def _wait(self, name: str, ready: Callable[[], bool], deadline: float) -> None:
        child = self.children[name]
        while True:
            if not child.running():
                raise StackError(
                    f"{name} exited during start-up; its log ({child.log_path}):\n{child.log_tail()}"
                )
            with contextlib.suppress(Exception):  # not up yet: connection refused, half-started...
                if ready():
                    return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{name} did not become ready in time; its log ({child.log_path}):\n{child.log_tail()}"
                )
            time.sleep(0.1)  # polling interval, not a guess at start-up time

    def _wait_ready(self, name: str, deadline: float) -> None:
        """Until a service reports SERVING, or nx-27017 answers a ping."""
        if name == MONGO:
            self._wait(name, lambda: mongo_ready(self.mongo_url), deadline)
        else:
            self._wait(name, lambda: grpc_serving(self.grpc_address(name)), deadline)

    def envoy_ready(self) -> bool:
        """Envoy answers /healthz, sees every started service as healthy and, when auth runs,
        has fetched the JWKS."""
        return envoy_ready(
            self.rest_url, self.admin_url, clusters=self.services, jwks="auth" in self.services
        )

    def _wait_envoy(self, deadline: float) -> None:
        self._wait("envoy", self.envoy_ready, deadline)

    def stop(self) -> None:
        """Envoy first (no new requests), then the services together, then nx-27017."""
        stop_children([self.children[n] for n in ("envoy",) if n in self.children])
        stop_children([self.children[n] for n in SERVICES if n in self.children])
        stop_children([self.children[n] for n in (MONGO, OTLP) if n in self.children])

    # ---- for tests

    def stop_service(self, name: str, *, sig: int = signal.SIGTERM, wait: bool = True) -> Child:
        """Signal one service (SIGTERM by default); with `wait`, until it has exited."""
        child = self.children[name]
        child.signal(sig)
        if wait and not child.wait(child.stop_timeout):
            child.kill()
        return child

    def restart_service(self, name: str, *, wait_envoy: bool = True) -> None:
        """(Re)start one service, or nx-27017, and wait until it is ready (a service: also in
        Envoy's view, unless `wait_envoy` is false: the chaos suite measures that part itself).
        nx-27017 comes back on the same port with the same data file."""
        child = self.children.get(name)
        if child is not None and child.running():
            self.stop_service(name)
        self._launch(name)
        deadline = time.monotonic() + self._start_timeout
        self._wait_ready(name, deadline)
        if name != MONGO and wait_envoy:
            self._wait_envoy(deadline)

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def describe(stack: Stack, *, stream: IO[str]) -> None:
    """The banner `make run` prints: what runs where, and how to reach it."""
    rel = _relative(stack.base_dir)
    # As a command that runs when pasted: grpcurl is in .venv/bin, which is not on PATH.
    try:
        grpcurl = shlex.quote(_relative(Path(venv_tool("grpcurl"))))
    except StackError:
        grpcurl = "grpcurl"
    rows = [
        ("REST + gRPC", stack.rest_url, f"curl {stack.rest_url}/readyz"),
        *([("Console", f"{stack.rest_url}/", "the web console (console/)")] if stack.serves_console else []),
        ("API docs", f"{stack.rest_url}/docs", f"Swagger UI on {stack.rest_url}/openapi.json"),
    ]
    for name in SERVICES:
        if name in stack.services:
            rows.append(
                (
                    f"{name} (gRPC)",
                    stack.grpc_address(name),
                    f"{grpcurl} -plaintext {stack.grpc_address(name)} list",
                )
            )
        else:
            rows.append((f"{name} (gRPC)", "not started", f"services/{name} has no __main__.py yet"))
    if stack.runs_mongo:
        rows.append(("MongoDB", stack.mongo_url, "nx-27017 (MongoDB wire protocol on SQLite)"))
    elif "data" in stack.services:
        rows.append(("MongoDB", "MONGODB_URL", "(yours, from the environment)"))
    rows.append(("Envoy admin", stack.admin_url, "stats, clusters, config_dump"))
    if stack.observe:
        for name in SERVICES:
            if name in stack.services:
                rows.append((f"{name} metrics", stack.metrics_url(name), "Prometheus text format"))
        rows.append(("Envoy metrics", stack.envoy_stats_url, "Envoy's stats for Prometheus"))
        if stack.runs_otlp:
            traces = f"{rel}/traces.jsonl"
            rows.append(
                ("Traces", f"127.0.0.1:{stack.ports.otlp}", f"OTLP receiver, one span a line in {traces}")
            )
        else:
            rows.append(
                ("Traces", stack.env["OTEL_EXPORTER_OTLP_ENDPOINT"], "(yours: OTEL_EXPORTER_OTLP_ENDPOINT)")
            )
    width = max(len(r[0]) for r in rows)
    addr_width = max(len(r[1]) for r in rows)
    out = [f"\nPinexa is up. State and logs live in {rel}/.\n"]
    out += [f"  {a.ljust(width)}  {b.ljust(addr_width)}  {c}" for a, b, c in rows]
    out += [
        "",
        "  Try:",
        f"    curl -X POST {stack.rest_url}/api/v1/users \\",
        '      -d \'{"username":"ada","email":"ada@example.com","password":"correct horse battery"}\'',
        f"    {grpcurl} -plaintext {stack.envoy_address} list",
        "",
        f"  Logs: {rel}/logs/ ({', '.join(sorted(stack.children))})  e.g. tail -f {rel}/logs/*.log",
        "  Press Ctrl-C to stop everything.\n",
    ]
    stream.write("\n".join(out) + "\n")
    stream.flush()


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)
