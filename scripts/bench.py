"""`make bench`: Pinexa against its peers, side by side in one run, with issue 11's targets.

    python scripts/bench.py                 # ~9 min: 3 interleaved rounds of 10 s per side
    python scripts/bench.py --p5            # + 1000 REST clients at 1 req/s for 60 s, PostgreSQL and SQLite
    python scripts/bench.py --smoke         # every side for about a second, 60 users (what `make test` runs)

What runs (everything on 127.0.0.1, on free ports, in a temporary directory):
- the Pinexa stack (auth, users, data, nx-27017, Envoy with one worker) on a scratch PostgreSQL
  database created on --pg-url's server and dropped at the end; users runs with a cheap argon2
  hasher (benchmarks/cheap_hash_users.py) so CreateUser and the seeding measure the service;
- the peers of benchmarks/peers/ under uvicorn (one worker): FastAPI + PyJWT + SQLAlchemy ORM,
  FastAPI + PyJWT + raw psycopg pool, reading the same users table; and a bare grpc.aio echo.

Pinning (when the machine has two cores or more): the server side (every Pinexa process, Envoy,
the peers, and the PostgreSQL backends of the scratch database) on core 0; this script and the
load generator on core 1. For the "Envoy on its own core" side, Envoy moves to core 1 for that
side only (it shares it with the load generator, as in the issue's measurement).

Load: h2load (Debian nghttp2-client). gRPC sides use HTTP/2 with a 5-byte prefix plus the
serialized message; REST sides use HTTP/1.1 (`--h1`: uvicorn speaks only HTTP/1.1, so Envoy is
loaded the same way). h2load sends one body for all requests of a process, so each connection
is its own h2load process: REST connections each walk their own random order of all seeded
users, gRPC connections each ask for a different random user, in every round. CreateUser is
measured while seeding (a grpc.aio client here, on the load core, every request a new user).

Rounds: every side once per round, the order rotated between rounds; h2load's warm-up (thrown
away) before each measurement; the medians of the rounds are reported. After every measurement
the server side's own counters are read (the services' Prometheus counters, Envoy's
downstream_rq_4xx/5xx, the peers' /_bench/counters, the echo's Count call): the run fails
unless they show 0 errors and at least as many answers as h2load counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python scripts/bench.py` puts scripts/, not the root, on sys.path
    sys.path.insert(0, str(ROOT))

from devstack.stack import Child, Ports, Stack, stop_children, venv_tool  # noqa: E402

SERVER_CORE = "0"
LOAD_CORE = "1"
TWO_CORES = (os.cpu_count() or 1) >= 2
ADMIN_USER = "benchadmin"
BENCH_PASSWORD = "bench-password-1"  # noqa: S105 (the seeded users' throwaway password)

# (key, what, target as (op, value), how the issue measured it today)
TARGETS = [
    ("P1", "REST GetUser through Envoy / FastAPI + PyJWT + SQLAlchemy ORM", (">=", 1.5), "0.77"),
    ("P2", "REST GetUser through Envoy / FastAPI + PyJWT + raw psycopg", (">=", 1.0), "0.55"),
    ("P3", "direct gRPC GetUser / bare grpc.aio echo", (">=", 0.5), "0.15"),
    ("P4", "REST, Envoy on its own core / direct gRPC GetUser", (">=", 1.0), "1.00"),
]


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class BenchError(RuntimeError):
    pass


def die(text: str) -> None:
    raise BenchError(text)


# ---------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    method: str, url: str, body: object | None = None, token: str = "", timeout: float = 10
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (local URL)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (local URL)
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CpuSnapshot = dict[str, dict[int, float]]


def cpu_snapshot(groups: dict[str, list[int]]) -> CpuSnapshot:
    """CPU seconds so far of every process of every component (component -> pid -> seconds)."""
    return {name: {pid: cpu_seconds(pid) for pid in pids} for name, pids in groups.items()}


def cpu_us_per_request(before: CpuSnapshot, after: CpuSnapshot, answered: int) -> dict[str, float]:
    """CPU µs per answered request of each component, per process: a process born meanwhile (a
    PostgreSQL backend of a pool's new connection) counts in full; one that exited meanwhile is
    lost (its time can no longer be read), so a figure can only be an underestimate."""
    return {
        name: sum(max(0.0, now - before.get(name, {}).get(pid, 0.0)) for pid, now in pids.items())
        * 1e6
        / max(1, answered)
        for name, pids in after.items()
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pin(pid: int, core: str) -> None:
    """Move a running process, every thread of it, to `core` (no-op on a one-core machine)."""
    if TWO_CORES:
        subprocess.run(["taskset", "-a", "-p", "-c", core, str(pid)], capture_output=True, check=False)


def wait_http(url: str, child: Child, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.running():
            die(f"{child.name} exited during start-up; its log:\n{child.log_tail()}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 (local URL)
            return
        time.sleep(0.1)  # polling interval
    die(f"{child.name} did not answer {url} in time; its log:\n{child.log_tail()}")


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------- the stack and the peers


class BenchStack(Stack):
    """The devstack, with users on a cheap argon2 hasher (bench only; see cheap_hash_users.py)."""

    def _new_child(self, name: str) -> Child:
        child = super()._new_child(name)
        if name == "users":
            child.argv = [sys.executable, "-m", "benchmarks.cheap_hash_users"]
        return child


@dataclass
class Env:
    """Everything one prepared stack offers the sides."""

    stack: BenchStack
    label: str  # "PostgreSQL" / "SQLite"
    token: str
    admin_id: str
    user_ids: list[str]
    users_metrics: str
    data_metrics: str
    pg_dsn: str  # the scratch database (libpq form), "" on SQLite
    workdir: Path
    peers: dict[str, Child] = field(default_factory=dict)
    peer_ports: dict[str, int] = field(default_factory=dict)
    create_user: Sample | None = None
    pg_url_part: str = ""  # user@host:port/dbname of the scratch database, for the peers' URLs
    rss_start: dict[str, float] = field(default_factory=dict)

    def server_pids(self) -> dict[str, int]:
        return {name: c.pid for name, c in self.stack.children.items() if c.pid is not None}

    def pg_backends(self) -> list[int]:
        if not self.pg_dsn:
            return []
        import psycopg

        dbname = psycopg.conninfo.conninfo_to_dict(self.pg_dsn)["dbname"]
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)
            ).fetchall()
        return [int(r[0]) for r in rows]

    def pin_server_side(self) -> None:
        for pid in [*self.server_pids().values(), *(c.pid for c in self.peers.values() if c.pid)]:
            pin(pid, SERVER_CORE)
        for pid in self.pg_backends():  # only our scratch database's backends; best effort
            pin(pid, SERVER_CORE)


def metric_counts(url: str, method: str) -> tuple[int, int]:
    """(OK, not OK) calls of `method` a service has answered so far (its Prometheus counters)."""
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (local URL)
        text = response.read().decode()
    ok = errors = 0
    for line in text.splitlines():
        match = re.match(r"grpc_server_handled_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$", line)
        if not match or f'grpc_method="{method}"' not in match["labels"]:
            continue
        if 'grpc_code="OK"' in match["labels"]:
            ok += int(float(match["value"]))
        elif 'grpc_code="CANCELLED"' in match["labels"]:
            continue  # the load generator hung up at the end of a timed round: not a server error
        else:
            errors += int(float(match["value"]))
    return ok, errors


def mail_backlog(url: str) -> int | None:
    """The users service's mail outbox depth (pinexa_outbox_depth), None before its first pass."""
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (local URL)
        text = response.read().decode()
    for line in text.splitlines():
        match = re.match(r"pinexa_outbox_depth\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$", line)
        if match and 'outbox="mail"' in match["labels"]:
            return int(float(match["value"]))
    return None


def wait_mail_drained(env: Env, timeout: float = 600) -> None:
    """Every seeded account queued a verification mail; wait until users has sent them all, so
    no side is measured while the service also drains thousands of mails (the peers send none)."""
    started = time.monotonic()
    depth = mail_backlog(env.users_metrics)
    while depth is None or depth > 0:
        if time.monotonic() - started > timeout:
            die(f"the users mail outbox still holds {depth} mails after {timeout:.0f} s")
        time.sleep(0.5)  # polling interval
        depth = mail_backlog(env.users_metrics)
    say(f"[{env.label}] users' mail outbox drained in {time.monotonic() - started:.1f} s")


def envoy_errors(stack: Stack) -> int:
    """4xx + 5xx Envoy has answered downstream so far (its own replies and the services')."""
    url = f"{stack.admin_url}/stats?filter=^http\\.pinexa\\.downstream_rq_[45]xx$"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (local URL)
        lines = [line for line in response.read().decode().splitlines() if ":" in line]
    if len(lines) != 2:  # the check must not pass because the stats were renamed
        die(f"Envoy's stats have no http.pinexa.downstream_rq_4xx/5xx: {lines}")
    return sum(int(line.rsplit(":", 1)[1]) for line in lines)


def start_peers(env: Env, args: argparse.Namespace) -> None:
    base_env = {
        **os.environ,
        "PEER_JWKS_URL": f"{env.stack.rest_url}/.well-known/jwks.json",
        "PEER_JWT_ISSUER": env.stack.env.get("JWT_ISSUER") or "pinexa-auth",
        "PEER_JWT_AUDIENCE": env.stack.env.get("JWT_AUDIENCE") or "pinexa",
    }
    apps = {
        "fastapi-orm": ("benchmarks.peers.orm_app:app", f"postgresql+psycopg://{env.pg_url_part}"),
        "fastapi-psycopg": ("benchmarks.peers.psycopg_app:app", f"postgresql://{env.pg_url_part}"),
    }
    for name, (app, url) in apps.items():
        port = free_port()
        child = Child(
            name,
            [
                sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1", "--no-access-log", "--log-level", "warning",
            ],
            env.workdir / "logs" / f"{name}.log",
            stop_timeout=10,
        )  # fmt: skip
        child.start({**base_env, "PEER_DATABASE_URL": url}, cwd=ROOT)
        env.peers[name], env.peer_ports[name] = child, port
    port = free_port()
    echo = Child(
        "grpc-echo",
        [sys.executable, "-m", "benchmarks.peers.echo", str(port)],
        env.workdir / "logs" / "grpc-echo.log",
        stop_timeout=10,
    )
    echo.start(dict(os.environ), cwd=ROOT)
    env.peers["grpc-echo"], env.peer_ports["grpc-echo"] = echo, port
    for name in ("fastapi-orm", "fastapi-psycopg"):
        wait_http(f"http://127.0.0.1:{env.peer_ports[name]}/_bench/counters", env.peers[name])
    deadline = time.monotonic() + 30
    while echo_count(port) is None:
        if time.monotonic() > deadline or not echo.running():
            die(f"the echo server did not start; its log:\n{echo.log_tail()}")
        time.sleep(0.1)  # polling interval


def echo_count(port: int) -> int | None:
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = channel.unary_unary("/bench.Echo/Count")(b"", timeout=2)
        except grpc.RpcError:
            return None
    return int(reply)


# ---------------------------------------------------------------- seeding (and CreateUser)


@dataclass
class Sample:
    """One measurement of one side."""

    rps: float
    p50_ms: float
    p99_ms: float
    succeeded: int
    failed: int
    server_ok: int
    server_errors: int
    cpu_us: dict[str, float]


async def _create_users(
    address: str, count: int, concurrency: int, prefix: str
) -> tuple[list[str], list[float], int]:
    import grpc

    from pinexa.users.v1 import users_pb2, users_pb2_grpc

    ids: list[str] = []
    latencies: list[float] = []
    failures = 0
    counter = iter(range(count))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = users_pb2_grpc.UserServiceStub(channel)

        async def worker() -> None:
            nonlocal failures
            for n in counter:
                name = f"{prefix}{n}"
                request = users_pb2.CreateUserRequest(
                    user=users_pb2.User(username=name, email=f"{name}@example.com", password=BENCH_PASSWORD)
                )
                started = time.perf_counter()
                try:
                    user = await stub.CreateUser(request, timeout=30)
                except grpc.RpcError:
                    failures += 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                ids.append(user.id)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids, latencies, failures


def seed_users(env: Env, count: int, rounds: int, concurrency: int) -> Sample:
    """Create `count` users over direct gRPC in `rounds` timed chunks after a thrown-away warm-up;
    returns the median chunk as the CreateUser measurement."""
    address = env.stack.grpc_address("users")
    users_pid = env.stack.children["users"].pid or 0
    warm = min(100, max(5, count // 50))
    tag = secrets.token_hex(3)
    ids, _, failures = asyncio.run(_create_users(address, warm, concurrency, f"w{tag}_"))
    samples = []
    chunk = max(1, count // rounds)
    for r in range(rounds):
        env.pin_server_side()
        before, cpu_before, started = (
            metric_counts(env.users_metrics, "CreateUser"),
            cpu_seconds(users_pid),
            time.perf_counter(),
        )
        new_ids, latencies, failed = asyncio.run(_create_users(address, chunk, concurrency, f"b{tag}r{r}_"))
        elapsed = time.perf_counter() - started
        after, cpu_after = metric_counts(env.users_metrics, "CreateUser"), cpu_seconds(users_pid)
        ids += new_ids
        failures += failed
        ok = after[0] - before[0]
        samples.append(
            Sample(
                rps=len(new_ids) / elapsed,
                p50_ms=quantile(latencies, 0.50),
                p99_ms=quantile(latencies, 0.99),
                succeeded=len(new_ids),
                failed=failed,
                server_ok=ok,
                server_errors=after[1] - before[1],
                cpu_us={"users": (cpu_after - cpu_before) * 1e6 / max(1, ok)},
            )
        )
    if failures:
        die(f"seeding: {failures} CreateUser calls failed")
    env.user_ids = ids
    return median_sample(samples)


def median_sample(samples: Sequence[Sample]) -> Sample:
    def med(values: Sequence[float]) -> float:
        return float(statistics.median(values))

    return Sample(
        rps=med([s.rps for s in samples]),
        p50_ms=med([s.p50_ms for s in samples]),
        p99_ms=med([s.p99_ms for s in samples]),
        succeeded=sum(s.succeeded for s in samples),
        failed=sum(s.failed for s in samples),
        server_ok=sum(s.server_ok for s in samples),
        server_errors=sum(s.server_errors for s in samples),
        cpu_us={k: med([s.cpu_us.get(k, 0.0) for s in samples]) for k in samples[0].cpu_us},
    )


# ---------------------------------------------------------------- sides and the load generator


@dataclass
class Side:
    key: str
    label: str
    env: Env
    grpc: bool  # HTTP/2 gRPC (else REST over HTTP/1.1)
    base: str  # scheme://host:port
    path: Callable[[str], str]  # the path for one user id (REST); the gRPC method path
    payload: Callable[[str], bytes] | None  # the body for one user id (gRPC), or a fixed body
    headers: list[str]
    counters: Callable[[], tuple[int, int]]  # server-side (ok, errors) so far
    cpu: Callable[[], dict[str, list[int]]]  # component -> pids whose CPU time counts
    spread: bool = True  # different users per connection (GetUser); else one fixed request
    envoy_own_core: bool = False


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def getuser_payload(user_id: str) -> bytes:
    from pinexa.users.v1 import users_pb2

    return grpc_frame(users_pb2.GetUserRequest(id=user_id).SerializeToString())


def parse_h2load(out: str, name: str) -> tuple[float, int, int, int]:
    """(req/s, requests done, 2xx, failed + non-2xx) from h2load's summary."""
    finished = re.search(r"finished in [^,]+, ([0-9.]+) req/s", out)
    req = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not finished or not req or not codes:
        die(f"could not read h2load's output for {name}:\n{out}")
    assert finished and req and codes
    non_2xx = int(codes[2]) + int(codes[3]) + int(codes[4])
    return float(finished[1]), int(req[2]), int(codes[1]), int(req[4]) + non_2xx


def run_side(side: Side, args: argparse.Namespace, round_no: int) -> Sample:
    """One measurement: `args.clients` h2load processes of one connection each, on the load core."""
    work = side.env.workdir / "load" / f"{side.key}-{round_no}"
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{side.key}-{round_no}-{args.seed}")  # noqa: S311 (not security)
    ids = side.env.user_ids
    argvs = []
    for n in range(args.clients):
        argv = [
            "h2load", "--duration", str(args.duration), "--warm-up-time", str(args.warm_up),
            "--clients", "1", "--threads", "1", "--max-concurrent-streams", "1",
            "--log-file", str(work / f"{n}.tsv"),
        ]  # fmt: skip
        if not side.grpc:
            argv.append("--h1")
        for header in side.headers:
            argv += ["--header", header]
        if side.grpc:
            body = work / f"{n}.bin"
            body.write_bytes(side.payload(rng.choice(ids)) if side.payload else b"")
            argv += ["--data", str(body), f"{side.base}{side.path('')}"]
        elif side.payload is not None:  # a fixed body (CreateItem)
            body = work / f"{n}.json"
            body.write_bytes(side.payload(""))
            argv += ["--data", str(body), f"{side.base}{side.path('')}"]
        elif side.spread:
            order = rng.sample(ids, min(len(ids), args.urls_per_client))
            urls = work / f"{n}.urls"
            urls.write_text("".join(f"{side.base}{side.path(i)}\n" for i in order))
            argv += ["--input-file", str(urls)]
        else:
            argv.append(f"{side.base}{side.path('')}")
        argvs.append(argv)
    side.env.pin_server_side()
    envoy = side.env.stack.children["envoy"].pid
    if side.envoy_own_core and envoy:
        pin(envoy, LOAD_CORE)
    try:
        cpu_before = cpu_snapshot(side.cpu())
        before = side.counters()
        envoy_before = envoy_errors(side.env.stack)
        procs = [
            subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for a in argvs
        ]
        outs = [p.communicate()[0] for p in procs]
        after = side.counters()
        envoy_after = envoy_errors(side.env.stack)
        cpu_after = cpu_snapshot(side.cpu())
    finally:
        if side.envoy_own_core and envoy:
            pin(envoy, SERVER_CORE)
    rps = done = ok = failed = 0.0
    for proc, out in zip(procs, outs, strict=True):
        if proc.returncode != 0:
            die(f"h2load failed for {side.label}:\n{out}")
        r, d, s, f = parse_h2load(out, side.label)
        rps, done, ok, failed = rps + r, done + d, ok + s, failed + f
    latencies = []
    for log in work.glob("*.tsv"):
        for line in log.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[1].startswith("2"):
                latencies.append(int(parts[2]) / 1000.0)
    server_ok, server_errors = after[0] - before[0], after[1] - before[1]
    if side.base == side.env.stack.rest_url:
        server_errors += envoy_after - envoy_before
    shutil.rmtree(work, ignore_errors=True)
    return Sample(
        rps=rps,
        p50_ms=quantile(latencies, 0.50),
        p99_ms=quantile(latencies, 0.99),
        succeeded=int(ok),
        failed=int(failed),
        server_ok=server_ok,
        server_errors=server_errors,
        # warm-up included on both sides of the division (server-side answers over the whole run)
        cpu_us=cpu_us_per_request(cpu_before, cpu_after, server_ok),
    )


def make_sides(env: Env) -> list[Side]:
    stack = env.stack
    auth = f"authorization: Bearer {env.token}"
    grpc_headers = ["content-type: application/grpc", "te: trailers", auth]
    rest_headers = [auth, "accept: application/json"]
    children = stack.children

    def pids(*names: str, pg: bool = True) -> Callable[[], dict[str, list[int]]]:
        def collect() -> dict[str, list[int]]:
            found: dict[str, list[int]] = {}
            for name in names:
                child = children.get(name) or env.peers.get(name)
                if child is not None and child.pid:
                    found[name] = [child.pid]
            if pg and env.pg_dsn:
                found["postgres"] = env.pg_backends()
            return found

        return collect

    users = lambda: metric_counts(env.users_metrics, "GetUser")  # noqa: E731
    item = {
        "title": "bench item",
        "content": "lorem ipsum dolor sit amet " * 24,
        "status": "PUBLISHED",
        "attributes": {"color": "red", "n": 3, "tags": ["a", "b", "c"], "nested": {"k": "v", "x": [1, 2]}},
    }

    def peer(name: str) -> Callable[[], tuple[int, int]]:
        def read() -> tuple[int, int]:
            _, body = http("GET", f"http://127.0.0.1:{env.peer_ports[name]}/_bench/counters")
            return int(body["ok"]), int(body["errors"])

        return read

    def peer_side(key: str, label: str, name: str) -> Side:
        return Side(
            key=key,
            label=label,
            env=env,
            grpc=False,
            base=f"http://127.0.0.1:{env.peer_ports[name]}",
            path=lambda i: f"/api/v1/users/{i}",
            payload=None,
            headers=rest_headers,
            counters=peer(name),
            cpu=pids(name),
        )

    def rest_getuser(key: str, label: str, *, own_core: bool) -> Side:
        return Side(
            key=key,
            label=label,
            env=env,
            grpc=False,
            base=stack.rest_url,
            path=lambda i: f"/api/v1/users/{i}",
            payload=None,
            headers=rest_headers,
            counters=users,
            cpu=pids("users", "envoy"),
            envoy_own_core=own_core,
        )

    echo_port = env.peer_ports["grpc-echo"]
    getuser_path = "/pinexa.users.v1.UserService/GetUser"
    item_body = json.dumps(item).encode()
    data_pids = pids("data", "envoy", "nx-27017", pg=False)
    return [
        rest_getuser("rest", "Pinexa REST GetUser, through Envoy", own_core=False),
        Side(
            key="grpc",
            label="Pinexa GetUser, direct gRPC",
            env=env,
            grpc=True,
            base=f"http://{stack.grpc_address('users')}",
            path=lambda i: getuser_path,
            payload=getuser_payload,
            headers=grpc_headers,
            counters=users,
            cpu=pids("users"),
        ),
        rest_getuser("rest-own", "Pinexa REST, Envoy on the other core", own_core=True),
        peer_side("orm", "FastAPI + PyJWT + SQLAlchemy ORM", "fastapi-orm"),
        peer_side("psycopg", "FastAPI + PyJWT + raw psycopg pool", "fastapi-psycopg"),
        Side(
            key="echo",
            label="bare grpc.aio echo",
            env=env,
            grpc=True,
            base=f"http://127.0.0.1:{echo_port}",
            path=lambda i: "/bench.Echo/Echo",
            payload=getuser_payload,  # the same bytes GetUser gets, echoed back unparsed
            headers=["content-type: application/grpc", "te: trailers"],
            counters=lambda: (echo_count(echo_port) or 0, 0),
            cpu=pids("grpc-echo", pg=False),
        ),
        Side(
            key="list",
            label="Pinexa REST ListItems (page of 20)",
            env=env,
            grpc=False,
            base=stack.rest_url,
            path=lambda i: "/api/v1/data?page_size=20",
            payload=None,
            headers=rest_headers,
            counters=lambda: metric_counts(env.data_metrics, "ListItems"),
            cpu=data_pids,
            spread=False,
        ),
        Side(
            key="create",
            label="Pinexa REST CreateItem (1 KiB)",
            env=env,
            grpc=False,
            base=stack.rest_url,
            path=lambda i: "/api/v1/data",
            payload=lambda i: item_body,
            headers=[*rest_headers, "content-type: application/json"],
            counters=lambda: metric_counts(env.data_metrics, "CreateItem"),
            cpu=data_pids,
            spread=False,
        ),
    ]


def run_p5(env: Env, clients: int, duration: int, args: argparse.Namespace) -> Sample:
    """`clients` REST clients through Envoy, each at 1 request/s, for `duration` seconds: one
    h2load process (--rps 1), every client walking its own share of the seeded users."""
    work = env.workdir / "load" / f"p5-{env.label}"
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"p5-{args.seed}")  # noqa: S311 (not security)
    order = rng.sample(env.user_ids, len(env.user_ids))
    urls = work / "urls"
    urls.write_text("".join(f"{env.stack.rest_url}/api/v1/users/{i}\n" for i in order))
    log = work / "p5.tsv"
    argv = [
        "h2load", "--h1", "--clients", str(clients), "--rps", "1", "--duration", str(duration),
        "--warm-up-time", str(args.warm_up), "--threads", "1", "--log-file", str(log),
        "--header", f"authorization: Bearer {env.token}", "--header", "accept: application/json",
        "--input-file", str(urls),
    ]  # fmt: skip
    env.pin_server_side()

    def side_pids() -> dict[str, list[int]]:
        found = {
            "users": [env.stack.children["users"].pid or 0],
            "envoy": [env.stack.children["envoy"].pid or 0],
        }
        if env.pg_dsn:
            found["postgres"] = env.pg_backends()
        return found

    cpu_before = cpu_snapshot(side_pids())
    before, envoy_before = metric_counts(env.users_metrics, "GetUser"), envoy_errors(env.stack)
    completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    after, envoy_after = metric_counts(env.users_metrics, "GetUser"), envoy_errors(env.stack)
    cpu_after = cpu_snapshot(side_pids())
    if completed.returncode != 0:
        die(f"h2load failed for P5:\n{completed.stdout}\n{completed.stderr}")
    rps, _, ok, failed = parse_h2load(completed.stdout, "P5")
    latencies = [
        int(p[2]) / 1000.0
        for p in (line.split("\t") for line in log.read_text().splitlines())
        if len(p) >= 3 and p[1].startswith("2")
    ]
    server_ok = after[0] - before[0]
    shutil.rmtree(work, ignore_errors=True)
    return Sample(
        rps=rps,
        p50_ms=quantile(latencies, 0.5),
        p99_ms=quantile(latencies, 0.99),
        succeeded=ok,
        failed=failed,
        server_ok=server_ok,
        server_errors=after[1] - before[1] + envoy_after - envoy_before,
        cpu_us=cpu_us_per_request(cpu_before, cpu_after, server_ok),
    )


# ---------------------------------------------------------------- set-up and tear-down


@contextlib.contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of `admin_url` (libpq form), dropped after."""
    import psycopg

    name = f"pinexa_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = psycopg.conninfo.conninfo_to_dict(admin_url)
    params["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo("", **params)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def dsn_as_url(dsn: str) -> str:
    """`user@host:port/dbname` from a libpq DSN (trust auth: no password in the bench's URLs)."""
    import psycopg

    p = psycopg.conninfo.conninfo_to_dict(dsn)
    user = p.get("user", "postgres")
    password = f":{p['password']}" if p.get("password") else ""
    return f"{user}{password}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{p['dbname']}"


@contextlib.contextmanager
def prepared(label: str, pg_dsn: str, workdir: Path, args: argparse.Namespace, peers: bool) -> Iterator[Env]:
    """A started stack on the given database, an admin token, `args.users` seeded users, and
    (with `peers`) the peers; everything is stopped on the way out."""
    users_metrics, data_metrics = free_port(), free_port()
    admin_password = secrets.token_urlsafe(18)
    env_vars = {
        "LOG_LEVEL": "WARNING",
        "ADMIN_USERNAME": ADMIN_USER,
        "ADMIN_EMAIL": f"{ADMIN_USER}@example.com",
        "ADMIN_PASSWORD": admin_password,
    }
    if pg_dsn:
        env_vars["DATABASE_URL"] = f"postgresql://{dsn_as_url(pg_dsn)}"
    base = workdir / label.lower()
    stack = BenchStack(
        base / "stack",
        Ports.free(),
        env=env_vars,
        service_env={
            "users": {"METRICS_PORT": str(users_metrics)},
            "data": {"METRICS_PORT": str(data_metrics)},
        },
        envoy_concurrency=1,
        envoy_overrides={"strict_edge": not args.no_strict_edge},
    )
    if not {"users", "auth", "data"} <= set(stack.services):
        die(f"the benchmark needs the auth, users and data services; found only {stack.services}")
    env = Env(
        stack=stack, label=label, token="", admin_id="", user_ids=[],
        users_metrics=f"http://127.0.0.1:{users_metrics}/metrics",
        data_metrics=f"http://127.0.0.1:{data_metrics}/metrics", pg_dsn=pg_dsn, workdir=base,
    )  # fmt: skip
    env.pg_url_part = dsn_as_url(pg_dsn) if pg_dsn else ""
    say(f"[{label}] starting the stack in {base} ...")
    try:
        stack.start()
        status, tokens = http(
            "POST",
            f"{stack.rest_url}/api/v1/auth/login",
            {"username": ADMIN_USER, "password": admin_password},
        )
        if status != 200:
            die(f"admin login failed: {status} {tokens}")
        env.token = str(tokens["access_token"])
        status, me = http("GET", f"{stack.rest_url}/api/profile", token=env.token)
        if status != 200:
            die(f"GET /api/profile failed: {status} {me}")
        env.admin_id = str(me["id"])
        item = {"title": "seed", "content": "x" * 200, "status": "PUBLISHED"}
        for _ in range(25):  # ListItems reads a full page of 20
            status, body = http("POST", f"{stack.rest_url}/api/v1/data", item, token=env.token)
            if status != 200:
                die(f"POST /api/v1/data failed: {status} {body}")
        env.pin_server_side()
        env.rss_start = {n: rss_mb(p) for n, p in env.server_pids().items()}
        say(f"[{label}] seeding {args.users} users over gRPC CreateUser ({args.rounds} timed chunks) ...")
        env.create_user = seed_users(env, args.users, args.rounds, args.clients)
        wait_mail_drained(env)
        if peers:
            start_peers(env, args)
        # Every GetUser side reads all seeded users: check the token reads one of them everywhere.
        probe = random.choice(env.user_ids)  # noqa: S311
        status, body = http("GET", f"{stack.rest_url}/api/v1/users/{probe}", token=env.token)
        if status != 200 or body.get("id") != probe:
            die(f"GET /api/v1/users/{{id}} through Envoy: {status} {body}")
        for name in ("fastapi-orm", "fastapi-psycopg") if peers else ():
            status, body = http(
                "GET", f"http://127.0.0.1:{env.peer_ports[name]}/api/v1/users/{probe}", token=env.token
            )
            if status != 200 or body.get("id") != probe:
                die(f"{name}: GET /api/v1/users/{{id}}: {status} {body}")
        yield env
    finally:
        stop_children(env.peers.values())
        stack.stop()


# ---------------------------------------------------------------- report


def ratio_line(key: str, what: str, target: tuple[str, float], today: str, value: float) -> str:
    op, bound = target
    met = value >= bound if op == ">=" else value < bound
    verdict = "MET" if met else "not met"
    return f"  {key}  {what:<62} {value:>6.2f}   target {op} {bound:<4}  (issue: {today})  {verdict}"


def table(rows: list[tuple[str, Sample]]) -> list[str]:
    out = [
        f"  {'side':<46} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'answered':>8} {'errors':>6}"
        "  CPU µs per request"
    ]
    for label, s in rows:
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in s.cpu_us.items())
        out.append(
            f"  {label:<46} {s.rps:>8.0f} {s.p50_ms:>8.1f} {s.p99_ms:>8.1f} {s.server_ok:>8} "
            f"{s.server_errors + s.failed:>6}  {cpu}"
        )
    return out


def check_clean(label: str, s: Sample, problems: list[str]) -> None:
    if s.failed or s.server_errors:
        problems.append(
            f"{label}: {s.failed} failed requests (load side), {s.server_errors} errors (server side)"
        )
    if s.server_ok < s.succeeded:
        problems.append(
            f"{label}: the server side answered {s.server_ok} OK, fewer than the {s.succeeded} counted"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per side and round (10)")
    parser.add_argument(
        "--warm-up", type=int, default=2, help="seconds of warm-up, thrown away, per side (2)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument(
        "--clients", type=int, default=50, help="connections, each its own h2load process (50)"
    )
    parser.add_argument("--users", type=int, default=10_000, help="users seeded and read in random order")
    parser.add_argument(
        "--urls-per-client", type=int, default=2000, help="users in each REST connection's walk"
    )
    parser.add_argument(
        "--p5", action="store_true", help="the full P5: 1000 clients x 60 s on PostgreSQL and SQLite"
    )
    parser.add_argument(
        "--p5-clients", type=int, default=None, help="P5's clients (1000 with --p5, else 200)"
    )
    parser.add_argument("--p5-duration", type=int, default=None, help="P5's seconds (60 with --p5, else 10)")
    parser.add_argument("--smoke", action="store_true", help="every side for about a second, few users")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server where a scratch database may be created (BENCH_PG_URL)",
    )
    parser.add_argument(
        "--no-strict-edge",
        action="store_true",
        help="render Envoy without the strict-edge Lua filter (envoy/strict.lua), to measure its cost",
    )
    parser.add_argument("--seed", type=int, default=11, help="the seed of the random orders")
    parser.add_argument("--json", type=Path, help="also write the results to this file as JSON")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.warm_up, args.rounds, args.clients, args.users = 1, 0, 1, 4, 60
        args.urls_per_client = 60
        args.p5 = True
        args.p5_clients, args.p5_duration = args.p5_clients or 20, args.p5_duration or 2
    p5_clients = args.p5_clients or (1000 if args.p5 else 200)
    p5_duration = args.p5_duration or (60 if args.p5 else 10)

    if shutil.which("h2load") is None:
        sys.stderr.write(
            "bench: h2load is not installed (Debian package nghttp2-client; .ci/run installs it)\n"
        )
        return 2
    venv_tool("envoy")
    os.chdir(ROOT)  # the stack's children run `python -m benchmarks...` / `services...` from here
    if TWO_CORES:
        os.sched_setaffinity(0, {int(LOAD_CORE)})  # this script and every h2load it starts
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="pinexa-bench-"))
    results: dict[str, Any] = {"date": started, "cpus": os.cpu_count(), "loadavg_before": load}
    problems: list[str] = []
    rows: list[tuple[str, Sample]] = []
    p5_rows: list[tuple[str, Sample]] = []
    lines: list[str] = []
    try:
        with (
            scratch_database(args.pg_url) as dsn,
            prepared("PostgreSQL", dsn, workdir, args, peers=True) as env,
        ):
            sides = make_sides(env)
            samples: dict[str, list[Sample]] = {s.key: [] for s in sides}
            say(
                f"Measuring {len(sides)} sides x {args.rounds} rounds, {args.duration} s each "
                f"(+{args.warm_up} s warm-up), {args.clients} connections, {len(env.user_ids)} users; "
                f"pinned: "
                f"{'server side on core 0, load on core 1' if TWO_CORES else 'no (one core)'}"
            )
            for r in range(args.rounds):
                for side in sides[r % len(sides) :] + sides[: r % len(sides)]:
                    sample = run_side(side, args, r)
                    samples[side.key].append(sample)
                    say(
                        f"  round {r + 1}: {side.label:<40} {sample.rps:>7.0f} req/s"
                        f"  p99 {sample.p99_ms:.1f} ms"
                    )
            med = {k: median_sample(v) for k, v in samples.items()}
            for side in sides:
                rows.append((side.label, med[side.key]))
                for s in samples[side.key]:
                    check_clean(side.label, s, problems)
            assert env.create_user is not None
            rows.append(("Pinexa CreateUser, direct gRPC (cheap argon2)", env.create_user))
            check_clean("CreateUser", env.create_user, problems)
            say(f"[PostgreSQL] P5: {p5_clients} REST clients at 1 req/s for {p5_duration} s ...")
            p5_rows.append(("PostgreSQL", run_p5(env, p5_clients, p5_duration, args)))
            rss_end = {n: rss_mb(p) for n, p in env.server_pids().items()}
            rss_start = env.rss_start
        if args.p5:
            with prepared("SQLite", "", workdir, args, peers=False) as lite:
                say(f"[SQLite] P5: {p5_clients} REST clients at 1 req/s for {p5_duration} s ...")
                p5_rows.append(("SQLite", run_p5(lite, p5_clients, p5_duration, args)))
    except BenchError as error:
        sys.stderr.write(f"\nbench: {error}\n")
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    load_after = os.getloadavg()

    def ratio(a: str, b: str) -> float:
        """The median over the rounds of a/b within each round: two sides measured minutes apart
        on a shared machine differ by the load as much as by themselves."""
        return float(statistics.median(x.rps / y.rps for x, y in zip(samples[a], samples[b], strict=True)))

    lines.append(
        f"make bench, {started}, {os.cpu_count()} CPUs, load average {load[0]:.1f} before, "
        f"{load_after[0]:.1f} after; {args.rounds} rounds x {args.duration} s, {args.clients} connections, "
        f"{len(env.user_ids)} users, PostgreSQL; medians of the rounds"
    )
    lines += table(rows)
    lines.append("")
    lines.append("  Targets (issue 11): req/s ratios, each the median of the rounds' own ratios")
    values = [
        ratio("rest", "orm"),
        ratio("rest", "psycopg"),
        ratio("grpc", "echo"),
        ratio("rest-own", "grpc"),
    ]
    for (key, what, target, today), value in zip(TARGETS, values, strict=True):
        lines.append(ratio_line(key, what, target, today, value))
    for label, s in p5_rows:
        met = s.p99_ms < 250 and not (s.failed or s.server_errors)
        lines.append(
            f"  P5  {p5_clients} REST clients x 1 req/s, {p5_duration} s, {label:<10}"
            f" {s.rps:>6.0f} req/s  p99 {s.p99_ms:.0f} ms  errors {s.failed + s.server_errors}"
            f"   target p99 < 250 ms, 0 errors  {'MET' if met else 'not met'}"
            + ("" if args.p5 else "  (short version; --p5 for 1000 x 60 s on both databases)")
        )
        check_clean(f"P5 {label}", s, problems)
    for name in ("auth", "users", "data"):
        peak = max(rss_start.get(name, 0.0), rss_end.get(name, 0.0))
        lines.append(
            f"  P6  idle RSS {name:<6} {rss_start.get(name, 0):>5.0f} MB at start, "
            f"{rss_end.get(name, 0):>5.0f} MB"
            f" after the load   target < 120 MB  {'MET' if peak < 120 else 'not met'}"
        )
    say("")
    for line in lines:
        say(line)
    if args.json:
        results["sides"] = {label: s.__dict__ for label, s in rows}
        results["p5"] = {label: s.__dict__ for label, s in p5_rows}
        results["ratios"] = dict(zip([t[0] for t in TARGETS], values, strict=True))
        args.json.write_text(json.dumps(results, indent=2))
    if problems:
        sys.stderr.write("\nbench: the run was not clean:\n  " + "\n  ".join(problems) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
