"""`make bench-smoke` works: every side of `make bench` runs for about a second and comes back clean.

Benchmarks are not timed tests: nothing here looks at a figure beyond "it was measured". What is
checked is that the harness starts the real stack, the peers and h2load, that every side was
answered by the server side with 0 errors, that each of issue 11's targets gets a ratio, and that
the scratch PostgreSQL database is dropped and no process is left behind.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]

SIDES = {
    "Pinexa REST GetUser, through Envoy",
    "Pinexa GetUser, direct gRPC",
    "Pinexa REST, Envoy on the other core",
    "FastAPI + PyJWT + SQLAlchemy ORM",
    "FastAPI + PyJWT + raw psycopg pool",
    "bare grpc.aio echo",
    "Pinexa REST ListItems (page of 20)",
    "Pinexa REST CreateItem (1 KiB)",
    "Pinexa CreateUser, direct gRPC (cheap argon2)",
}


def test_make_bench_smoke_runs_the_smoke_mode() -> None:
    shown = subprocess.run(
        ["make", "-n", "--no-print-directory", "bench-smoke"], cwd=ROOT, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert "scripts/bench.py --smoke" in shown.stdout


@pytest.mark.timeout(300)
def test_bench_smoke_measures_every_side_cleanly(tmp_path: Path, postgres_server_url: str) -> None:
    out = tmp_path / "bench.json"
    process = subprocess.Popen(
        [sys.executable, "scripts/bench.py", "--smoke", "--json", str(out)],
        cwd=ROOT,
        env={**os.environ, "BENCH_PG_URL": postgres_server_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=280)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output

    results = json.loads(out.read_text())
    assert set(results["sides"]) == SIDES, output
    for label, side in results["sides"].items():
        assert side["server_ok"] > 0 and side["rps"] > 0, (label, side)
        assert side["server_errors"] == 0 and side["failed"] == 0, (label, side)
        assert side["server_ok"] >= side["succeeded"], (label, side)
    assert set(results["p5"]) == {"PostgreSQL", "SQLite"}, output
    for label, p5 in results["p5"].items():
        assert p5["server_ok"] > 0 and p5["server_errors"] == 0 and p5["failed"] == 0, (label, p5)
    assert set(results["ratios"]) == {"P1", "P2", "P3", "P4"}
    assert all(math.isfinite(v) and v > 0 for v in results["ratios"].values()), results["ratios"]
    for key in ("P1", "P2", "P3", "P4", "P5", "P6"):
        assert f"  {key}  " in output, output

    # The scratch database is gone, and so is every process the run started.
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"pinexa_bench_{process.pid}_%",)
        ).fetchall()
    assert left == []
    # Envoy and nx-27017 name the run's directory on their command lines.
    workdirs = re.findall(r"starting the stack in (\S+) \.\.\.", output)
    assert len(workdirs) == 2, output
    left_running = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if any(workdir in text for workdir in workdirs):
            left_running.append(text.replace("\0", " "))
    assert left_running == []
