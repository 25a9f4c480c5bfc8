"""`make bench`: GetUser over direct gRPC and over REST through Envoy, side by side, in one run.

    python scripts/bench.py                      # ~45 s: 15 s per side, 50 concurrent streams
    python scripts/bench.py --duration 60 --clients 100 --streams 10

It starts its own stack (the same one `make run` starts) on free ports in a temporary directory,
signs up a user, logs in, and loads the same GetUser call two ways with h2load (Debian package
nghttp2-client):

- gRPC: POST /pinexa.users.v1.UserService/GetUser straight to the users service, a 5-byte
  length prefix plus the serialized request, content-type application/grpc, te: trailers;
- REST: GET /api/v1/users/{id} through Envoy (strict edge, jwt_authn, transcoder, router);
- REST with a body: POST /api/v1/data with about 1 KiB of JSON (checked by HTTP status only).

For the REST sides it also reports Envoy's CPU time per request (from /proc), which shows what
Envoy itself costs even when the services are the bottleneck; `--no-strict-edge` renders Envoy
without the strict-edge Lua filter (envoy/strict.lua), so two runs show what the filter costs.

Both carry the same real bearer token. h2load counts HTTP statuses only, and a gRPC error is
still HTTP 200, so every run is also checked against the users service's own Prometheus
counters: the number of GetUser calls answered OK must grow by the number h2load counted as
successful, and no call may have failed. The stack is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# The dev stack lives at the repository root, outside the installed package (it is not shipped).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from devstack.stack import Ports, Stack


@dataclass
class Result:
    name: str
    url: str
    requests: int
    succeeded: int
    failed: int
    non_2xx: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    verified_ok: int
    verified_errors: int
    envoy_cpu_us: float = 0.0  # Envoy's CPU time (user + system) per request, when it was in the path

    def row(self) -> str:
        return (
            f"{self.name:<22} {self.rps:>10.0f} {self.p50_ms:>9.2f} {self.p99_ms:>9.2f} {self.mean_ms:>9.2f}"
            f" {self.succeeded:>9} {self.failed + self.non_2xx:>7}"
            + (f" {self.envoy_cpu_us:>10.0f}" if self.envoy_cpu_us else "")
        )


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def die(text: str) -> None:
    sys.stderr.write(f"\nbench: {text}\n")
    sys.exit(2)


def http_json(
    method: str, url: str, body: dict[str, object] | None = None, token: str = ""
) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (local URL)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (local URL)
        return dict(json.loads(response.read()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def getuser_counts(metrics_url: str) -> tuple[int, int]:
    """(OK, not OK) GetUser calls the users service has answered so far."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:  # noqa: S310 (local URL)
        text = response.read().decode()
    ok = errors = 0
    for line in text.splitlines():
        match = re.match(r"pinexa_grpc_requests_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$", line)
        if not match or 'method="GetUser"' not in match["labels"]:
            continue
        if 'code="OK"' in match["labels"]:
            ok += int(float(match["value"]))
        else:
            errors += int(float(match["value"]))
    return ok, errors


def check_grpc_once(address: str, user_id: str, token: str) -> None:
    """One real gRPC call with grpcio: the payload h2load sends is a valid, authorized call."""
    import grpc

    from pinexa.users.v1 import users_pb2, users_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        user = users_pb2_grpc.UserServiceStub(channel).GetUser(
            users_pb2.GetUserRequest(id=user_id), metadata=(("authorization", f"Bearer {token}"),), timeout=5
        )
    if user.id != user_id:
        die(f"GetUser over gRPC returned {user.id!r}, expected {user_id!r}")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_h2load(
    name: str,
    url: str,
    headers: list[str],
    *,
    args: argparse.Namespace,
    data: Path | None,
    workdir: Path,
    metrics_url: str | None,
    envoy_pid: int | None = None,
) -> Result:
    log = workdir / f"{name.split()[0].lower()}.tsv"
    argv = [
        "h2load",
        "--duration",
        str(args.duration),
        "--warm-up-time",
        str(args.warm_up),
        "--clients",
        str(args.clients),
        "--max-concurrent-streams",
        str(args.streams),
        "--threads",
        str(args.threads),
        "--log-file",
        str(log),
    ]
    for header in headers:
        argv += ["--header", header]
    if data is not None:
        argv += ["--data", str(data)]
    argv.append(url)
    before = getuser_counts(metrics_url) if metrics_url else (0, 0)
    cpu_before = cpu_seconds(envoy_pid)
    completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    cpu_after = cpu_seconds(envoy_pid)
    after = getuser_counts(metrics_url) if metrics_url else (0, 0)
    if completed.returncode != 0:
        die(f"h2load failed for {name}:\n{completed.stdout}\n{completed.stderr}")
    out = completed.stdout
    rps = float(re.search(r"finished in [^,]+, ([0-9.]+) req/s", out)[1])  # type: ignore[index]
    req = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not req or not codes:
        die(f"could not read h2load's output for {name}:\n{out}")
    latencies = []
    for line in log.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1] == "200":
            latencies.append(int(parts[2]) / 1000.0)
    if not latencies:
        die(f"{name}: no successful request; h2load said:\n{out}")
    latencies.sort()
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return Result(
        name=name,
        url=url,
        requests=int(req[1]),
        succeeded=int(codes[1]),
        failed=int(req[3]),
        non_2xx=int(codes[2]) + int(codes[3]) + int(codes[4]),
        rps=rps,
        p50_ms=quantiles[49],
        p99_ms=quantiles[98],
        mean_ms=statistics.fmean(latencies),
        verified_ok=after[0] - before[0],
        verified_errors=after[1] - before[1],
        # Over the whole h2load run, warm-up included, divided by the requests it completed.
        envoy_cpu_us=(cpu_after - cpu_before) * 1e6 / max(1, int(req[2])) if envoy_pid else 0.0,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds measured per side (default 15)")
    parser.add_argument("--warm-up", type=int, default=2, help="seconds of warm-up per side (default 2)")
    parser.add_argument("--clients", type=int, default=50, help="h2load connections (default 50)")
    parser.add_argument(
        "--streams", type=int, default=1, help="concurrent streams per connection (default 1)"
    )
    parser.add_argument("--threads", type=int, default=1, help="h2load threads (default 1)")
    parser.add_argument("--envoy-concurrency", type=int, default=None, help="Envoy worker threads")
    parser.add_argument("--log-level", default="WARNING", help="the services' LOG_LEVEL (default WARNING)")
    parser.add_argument("--json", type=Path, help="also write the results to this file as JSON")
    parser.add_argument(
        "--no-strict-edge",
        action="store_true",
        help="render Envoy without the strict-edge Lua filter (envoy/strict.lua), to measure its cost",
    )
    args = parser.parse_args()

    if shutil.which("h2load") is None:
        die(
            "h2load is not installed. It comes with the Debian/Ubuntu package nghttp2-client:\n"
            "    sudo apt-get install nghttp2-client\n"
            "(.ci/run installs it in CI). Nothing was measured."
        )

    metrics_port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pinexa-bench-"))
    stack = Stack(
        workdir / "stack",
        Ports.free(),
        env={"LOG_LEVEL": args.log_level},
        service_env={"users": {"METRICS_PORT": str(metrics_port)}},
        envoy_concurrency=args.envoy_concurrency,
        envoy_overrides={"strict_edge": not args.no_strict_edge},
    )
    if not {"users", "auth"} <= set(stack.services):
        die(f"the benchmark needs the users and auth services; found only {stack.services}")
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    say(f"Starting the stack in {workdir} ...")
    try:
        stack.start()
        name = f"bench_{os.getpid()}_{int(time.time())}"
        password = secrets.token_urlsafe(16)
        user = http_json(
            "POST",
            f"{stack.rest_url}/api/v1/users",
            {"username": name, "email": f"{name}@example.com", "password": password},
        )
        tokens = http_json(
            "POST", f"{stack.rest_url}/api/v1/auth/login", {"username": name, "password": password}
        )
        user_id, token = str(user["id"]), str(tokens["access_token"])
        check_grpc_once(stack.grpc_address("users"), user_id, token)
        if http_json("GET", f"{stack.rest_url}/api/v1/users/{user_id}", token=token).get("id") != user_id:
            die("GET /api/v1/users/{id} through Envoy did not return the user")

        from pinexa.users.v1 import users_pb2

        message = users_pb2.GetUserRequest(id=user_id).SerializeToString()
        payload = workdir / "getuser.bin"
        payload.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
        auth_header = f"authorization: Bearer {token}"
        concurrency = args.clients * args.streams
        say(
            f"Measuring GetUser for {args.duration}s per side (+{args.warm_up}s warm-up), "
            f"{args.clients} connections x {args.streams} streams = {concurrency} in flight, "
            f"on {os.cpu_count()} CPUs; Envoy workers: {stack.envoy_concurrency}; "
            f"services' LOG_LEVEL={args.log_level}; strict edge {'off' if args.no_strict_edge else 'on'}."
        )
        grpc_result = run_h2load(
            "gRPC direct (users)",
            f"http://{stack.grpc_address('users')}/pinexa.users.v1.UserService/GetUser",
            ["content-type: application/grpc", "te: trailers", auth_header],
            args=args,
            data=payload,
            workdir=workdir,
            metrics_url=metrics_url,
        )
        envoy_pid = stack.children["envoy"].pid
        rest_result = run_h2load(
            "REST through Envoy",
            f"{stack.rest_url}/api/v1/users/{user_id}",
            [auth_header, "accept: application/json"],
            args=args,
            data=None,
            workdir=workdir,
            metrics_url=metrics_url,
            envoy_pid=envoy_pid,
        )
        # A write with a JSON body, to show what the strict edge's body scan costs: CreateItem with
        # about 1 KiB of JSON (title, content, nested attributes). Its answers are checked by
        # status only (h2load counts 2xx); the items land in the throwaway stack.
        item = {
            "title": "bench item",
            "content": "lorem ipsum dolor sit amet " * 24,
            "status": "PUBLISHED",
            "attributes": {
                "color": "red",
                "n": 3,
                "tags": ["a", "b", "c"],
                "nested": {"k": "v", "x": [1, 2]},
            },
        }
        body = workdir / "item.json"
        body.write_text(json.dumps(item))
        if (
            http_json("POST", f"{stack.rest_url}/api/v1/data", item, token=token).get("title")
            != item["title"]
        ):
            die("POST /api/v1/data through Envoy did not create the item")
        body_result = run_h2load(
            "REST CreateItem (1 KiB)",
            f"{stack.rest_url}/api/v1/data",
            [auth_header, "accept: application/json", "content-type: application/json"],
            args=args,
            data=body,
            workdir=workdir,
            metrics_url=None,
            envoy_pid=envoy_pid,
        )
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # its SQLite files and dev keys, even on failure

    results = [grpc_result, rest_result, body_result]
    say("")
    say(
        f"{'GetUser':<22} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9} {'ok':>9} {'errors':>7}"
        f" {'Envoy µs/req':>10}"
    )
    for result in results:
        say(result.row())
    say(f"{'REST / gRPC':<22} {rest_result.rps / grpc_result.rps:>10.2f}x")
    say("")
    problems = []
    if body_result.failed or body_result.non_2xx:
        problems.append(f"{body_result.name}: {body_result.failed + body_result.non_2xx} failed requests")
    for result in (grpc_result, rest_result):
        say(
            f"{result.name}: the users service answered {result.verified_ok} GetUser calls OK and "
            f"{result.verified_errors} with an error during the run; "
            f"h2load counted {result.succeeded} HTTP 2xx."
        )
        if result.verified_errors or result.failed or result.non_2xx:
            problems.append(
                f"{result.name}: {result.verified_errors} gRPC errors, "
                f"{result.failed + result.non_2xx} failed requests"
            )
        if result.verified_ok < result.succeeded:
            problems.append(f"{result.name}: fewer OK answers ({result.verified_ok}) than h2load successes")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    if problems:
        die("the run was not clean:\n  " + "\n  ".join(problems))
    return 0


if __name__ == "__main__":
    sys.exit(main())
