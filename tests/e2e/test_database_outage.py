"""Through Envoy, a PostgreSQL outage is a 503 with a JSON google.rpc.Status naming it, and the
stack recovers by itself when PostgreSQL is back (users and auth on a scratch cluster of this
test's own, stopped with an immediate shutdown while every process keeps running)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from devstack.stack import Ports, Stack, grpc_serving
from tests.e2e.conftest import error_info, make_client, sign_up_and_log_in, status_of, unique_name
from tests.pgcluster import PgCluster

pytestmark = pytest.mark.e2e


def test_a_postgresql_outage_is_503_json_through_envoy_and_heals(tmp_path: Path) -> None:
    with PgCluster() as pg:
        env = {
            "DATABASE_URL": pg.create_database("pinexa"),
            "HEALTH_CHECK_INTERVAL_SECONDS": "0.5",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
        }
        with (
            Stack(tmp_path, Ports.free(), env=env, services=("auth", "users")) as stack,
            make_client(stack.rest_url) as client,
        ):
            account = sign_up_and_log_in(client)
            probes: dict[str, tuple[Callable[[], httpx.Response], str]] = {
                "login": (
                    lambda: client.post(
                        "/api/v1/auth/login",
                        json={"username": account.username, "password": account.password},
                    ),
                    "pinexa.auth",
                ),
                "sign-up": (
                    lambda: client.post(
                        "/api/signup",
                        json={
                            "username": (name := unique_name("u")),
                            "email": f"{name}@example.com",
                            "password": "correct horse battery",
                        },
                    ),
                    "pinexa.users",
                ),
                "profile": (lambda: client.get("/api/profile", headers=account.headers), "pinexa.users"),
                "refresh": (
                    lambda: client.post(
                        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
                    ),
                    "pinexa.auth",
                ),
            }

            pg.stop("immediate")
            for _ in range(3):
                for name, (probe, domain) in probes.items():
                    response = probe()
                    assert response.status_code == 503, (name, response.status_code, response.text)
                    info = error_info(status_of(response))
                    assert (info["reason"], info["domain"]) == ("DATABASE_UNAVAILABLE", domain), name
                    assert "Traceback" not in response.text and "psycopg" not in response.text
                time.sleep(0.3)

            pg.start()
            back = time.monotonic()
            pending = dict(probes)
            while pending and time.monotonic() - back < 15:
                for name, (probe, _) in list(pending.items()):
                    response = probe()
                    if response.status_code == 200:
                        del pending[name]
                    else:  # a 503 until the pool has reconnected; a refused refresh spends nothing
                        assert response.status_code == 503, (name, response.text)
                time.sleep(0.1)
            recovered_in = time.monotonic() - back
            assert not pending, f"still failing after {recovered_in:.1f} s: {sorted(pending)}"
            assert recovered_in < 5.0, recovered_in
            # Health follows within a health-check interval (0.5 s here), logging "up".
            deadline = time.monotonic() + 5
            while not all(grpc_serving(stack.grpc_address(name)) for name in ("users", "auth")):
                assert time.monotonic() < deadline, "health did not return to SERVING"
                time.sleep(0.1)

        for service in ("users", "auth"):
            lines = [
                json.loads(line)
                for line in stack.log_path(service).read_text().splitlines()
                if line.startswith("{")
            ]
            events = [e.get("outage") for e in lines if e.get("dependency") == "database"]
            assert events == ["down", "up"], (service, events)
            assert not [e for e in lines if e["level"] in ("error", "critical") or "exc" in e], service
