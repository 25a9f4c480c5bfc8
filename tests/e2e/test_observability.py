"""Issue 14 end to end, on a stack started as `make run` starts it (Stack(observe=True): every
service's /metrics, Envoy's stats listener, traces to the dev OTLP receiver in traces.jsonl):

- one REST call with a chosen `traceparent` is one trace: Envoy's span, then the service's server
  span, its database spans, and the service-to-service calls with the callee's spans;
- the request id is on Envoy's span and the services' server spans, and log lines carry the trace
  and span ids;
- the metrics endpoints serve the per-RPC and business metrics after a login;
- every metric name used by a rule or a dashboard panel in k8s/components/monitoring is one the
  running services or Envoy expose;
- a real Prometheus (Debian's) scrapes the stack with the component's rules, and when the data
  store (nx-27017) stops, PinexaServiceNotServing fires for data.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from devstack.stack import MONGO, Ports, Stack
from tests.deploy.monitoring import (
    SYNTHETIC,
    exposed_names,
    metric_names,
    panel_expressions,
    rule_expressions,
    rules_file,
)
from tests.e2e.conftest import make_client, unique_name
from tests.support import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("observed")
    # JSON logs, to read their fields; the rest as `make run` has it.
    with Stack(base, Ports.free(), env={"LOG_FORMAT": "json"}, observe=True) as running:
        yield running


@pytest.fixture(scope="module")
def http(observed: Stack) -> Iterator[httpx.Client]:
    with make_client(observed.rest_url) as client:
        yield client


def _sign_up(http: httpx.Client) -> tuple[str, str]:
    username, password = unique_name("obs"), secrets.token_urlsafe(16)
    created = http.post(
        "/api/v1/users", json={"username": username, "email": f"{username}@example.com", "password": password}
    )
    assert created.status_code == 200, created.text
    return username, password


def _spans(
    stack: Stack, trace_id: str, ready: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The spans of `trace_id` in traces.jsonl, once `ready` says all expected have arrived."""
    deadline = time.monotonic() + 20  # Envoy flushes its spans every 5 s, the services every 0.5 s
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if stack.traces_path.exists():
            lines = stack.traces_path.read_text().splitlines()
            spans = [s for s in map(json.loads, lines) if s["trace_id"] == trace_id]
            if ready(spans):
                return spans
        time.sleep(0.2)  # polling interval
    raise AssertionError(f"incomplete trace {trace_id}: {[(s['service'], s['name']) for s in spans]}")


def _traceparent() -> tuple[str, str, str]:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent, f"00-{trace_id}-{parent}-01"


def _server(spans: list[dict[str, Any]], service: str, method: str) -> dict[str, Any]:
    found = [
        s for s in spans if s["service"] == service and s["kind"] == "server" and s["name"].endswith(method)
    ]
    assert len(found) == 1, (service, method, [(s["service"], s["name"]) for s in spans])
    return found[0]


def test_a_rest_login_is_one_trace_from_envoy_through_auth_and_users_to_their_databases(
    observed: Stack, http: httpx.Client
) -> None:
    username, password = _sign_up(http)
    trace_id, parent, traceparent = _traceparent()
    request_id = f"obs-{secrets.token_hex(4)}"  # a client's own id, not a UUID
    response = http.post(
        "/api/v1/auth/login",
        json={"username": username, "password": password},
        headers={"traceparent": traceparent, "x-request-id": request_id},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == request_id

    def complete(spans: list[dict[str, Any]]) -> bool:
        # Each service exports in batches: wait for the server spans checked below too, not only
        # for the first users span (ResolveLogin's can arrive before VerifyCredentials' ends).
        services = {s["service"] for s in spans}
        servers = {(s["service"], s["name"].rsplit("/", 1)[-1]) for s in spans if s["kind"] == "server"}
        return (
            {"envoy", "pinexa-auth", "pinexa-users"} <= services
            and {("pinexa-auth", "Login"), ("pinexa-users", "VerifyCredentials")} <= servers
            and any(
                s["service"] == "pinexa-users" and s["attributes"].get("db.system") == "sqlite" for s in spans
            )
        )

    spans = _spans(observed, trace_id, complete)
    by_id = {s["span_id"]: s for s in spans}
    (envoy,) = [s for s in spans if s["service"] == "envoy"]
    assert envoy["parent_span_id"] == parent  # the client's traceparent was continued
    assert envoy["attributes"]["guid:x-request-id"] == request_id
    login = _server(spans, "pinexa-auth", "AuthService/Login")
    assert login["parent_span_id"] == envoy["span_id"]
    assert login["attributes"]["pinexa.request_id"] == request_id
    # auth -> users: a client span in auth, the server span in users under it, same request id.
    verify = _server(spans, "pinexa-users", "UsersInternalService/VerifyCredentials")
    caller = by_id[verify["parent_span_id"]]
    assert caller["service"] == "pinexa-auth" and caller["kind"] == "client"
    assert caller["parent_span_id"] == login["span_id"]
    assert verify["attributes"]["pinexa.request_id"] == request_id
    # Each service's database spans hang under one of its server spans (SQLite under `make run`;
    # users serves two calls of this login: ResolveLogin and VerifyCredentials).
    for service in ("pinexa-auth", "pinexa-users"):
        servers = {s["span_id"] for s in spans if s["service"] == service and s["kind"] == "server"}
        sql = [s for s in spans if s["service"] == service and s["attributes"].get("db.system") == "sqlite"]
        assert sql, service
        assert all(servers & set(_ancestors(s, by_id)) for s in sql), service
    assert any(s["parent_span_id"] == login["span_id"] for s in spans if s["attributes"].get("db.system"))
    # Every span of the request descends from Envoy's: one trace, no orphans.
    assert all(s is envoy or _ancestors(s, by_id)[-1] == envoy["span_id"] for s in spans)


def _ancestors(span: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> list[str]:
    chain = []
    while span["parent_span_id"] in by_id:
        span = by_id[span["parent_span_id"]]
        chain.append(span["span_id"])
    return chain


def test_a_rest_call_to_data_traces_its_mongodb_operations(observed: Stack, http: httpx.Client) -> None:
    username, password = _sign_up(http)
    token = http.post("/api/v1/auth/login", json={"username": username, "password": password}).json()
    trace_id, _parent, traceparent = _traceparent()
    created = http.post(
        "/api/v1/data",
        json={"title": "traced", "content": "hello"},
        headers={"authorization": f"Bearer {token['access_token']}", "traceparent": traceparent},
    )
    assert created.status_code == 200, created.text

    def complete(spans: list[dict[str, Any]]) -> bool:
        return any(s["service"] == "envoy" for s in spans) and any(
            s["attributes"].get("db.system") == "mongodb" for s in spans
        )

    spans = _spans(observed, trace_id, complete)
    create = _server(spans, "pinexa-data", "DataService/CreateItem")
    mongo = [s for s in spans if s["attributes"].get("db.system") == "mongodb"]
    assert all(s["parent_span_id"] == create["span_id"] for s in mongo)
    assert {s["name"].rsplit(".", 1)[-1] for s in mongo} >= {"insert"}


def test_log_lines_carry_the_trace_and_span_ids(observed: Stack, http: httpx.Client) -> None:
    trace_id, _parent, traceparent = _traceparent()
    request_id = f"logs-{secrets.token_hex(4)}"
    http.post(
        "/api/v1/auth/login",
        json={"username": unique_name("nobody"), "password": "wrong password 1"},
        headers={"traceparent": traceparent, "x-request-id": request_id},
    )
    deadline = time.monotonic() + 10
    while True:
        lines = [
            json.loads(line)
            for line in observed.log_path("auth").read_text().splitlines()
            if line.startswith("{") and request_id in line
        ]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # polling interval
    assert lines
    for entry in lines:
        assert entry["trace_id"] == trace_id
        assert len(entry["span_id"]) == 16 and entry["span_id"] != "-"
    # The refusal is on the server span as its code; a client error is not a server error.
    spans = _spans(
        observed,
        trace_id,
        lambda found: any(x["service"] == "pinexa-auth" and x["kind"] == "server" for x in found),
    )
    login = _server(spans, "pinexa-auth", "AuthService/Login")
    assert login["attributes"]["rpc.grpc.status_code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert login["status"] != "error"
    # Outside any request, the fields are there too.
    startup = json.loads(
        next(line for line in observed.log_path("auth").read_text().splitlines() if '"serving"' in line)
    )
    assert startup["trace_id"] == "-" and startup["span_id"] == "-"


def _scrape(url: str) -> str:
    response = httpx.get(url, timeout=5)
    assert response.status_code == 200, url
    return response.text


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{labels}")


def test_metrics_endpoints_serve_per_rpc_and_business_metrics_after_a_login(
    observed: Stack, http: httpx.Client
) -> None:
    username, password = _sign_up(http)
    assert (
        http.post("/api/v1/auth/login", json={"username": username, "password": password}).status_code == 200
    )
    wrong = http.post("/api/v1/auth/login", json={"username": username, "password": "not the password"})
    assert wrong.status_code == 401
    auth = _scrape(observed.metrics_url("auth"))
    login = {"grpc_service": "pinexa.auth.v1.AuthService", "grpc_method": "Login", "grpc_type": "unary"}
    assert _sample(auth, "grpc_server_handled_total", **login, grpc_code="OK") >= 1
    assert _sample(auth, "grpc_server_handled_total", **login, grpc_code="UNAUTHENTICATED") >= 1
    assert _sample(auth, "grpc_server_started_total", **login) >= 2
    assert _sample(auth, "grpc_server_handling_seconds_count", **login) >= 2
    assert _sample(auth, "grpc_server_handling_seconds_bucket", **login, le="+Inf") >= 2
    assert _sample(auth, "pinexa_logins_total", outcome="succeeded") >= 1
    assert _sample(auth, "pinexa_logins_total", outcome="failed") >= 1
    assert _sample(auth, "pinexa_logins_total", outcome="throttled") >= 0
    assert _sample(auth, "pinexa_service_serving", service="auth") == 1
    assert _sample(auth, "pinexa_sql_pool_size", service="auth") >= 1
    users = _scrape(observed.metrics_url("users"))
    assert _sample(users, "pinexa_signups_total") >= 1
    assert _sample(users, "pinexa_outbox_depth", service="users", outbox="purge") >= 0
    assert _sample(users, "pinexa_outbox_oldest_age_seconds", service="users", outbox="purge") >= 0
    data = _scrape(observed.metrics_url("data"))
    assert _sample(data, "pinexa_mongodb_errors_total", kind="unavailable") >= 0
    envoy = _scrape(observed.envoy_stats_url)
    rq_2xx = {"envoy_http_conn_manager_prefix": "pinexa", "envoy_response_code_class": "2"}
    assert _sample(envoy, "envoy_http_downstream_rq_xx", **rq_2xx) >= 1
    # The stats listener serves the stats only: not the admin interface's other pages.
    assert httpx.get(observed.envoy_stats_url.replace("/stats/prometheus", "/clusters")).status_code == 404
    assert (
        httpx.post(observed.envoy_stats_url.replace("/stats/prometheus", "/quitquitquit")).status_code == 404
    )


def test_every_metric_a_rule_or_a_panel_uses_is_exposed_by_the_running_stack(observed: Stack) -> None:
    exposed = set(SYNTHETIC)
    for service in observed.services:
        exposed |= exposed_names(_scrape(observed.metrics_url(service)))
    exposed |= exposed_names(_scrape(observed.envoy_stats_url))
    used = {name for expr in [*rule_expressions(), *panel_expressions()] for name in metric_names(expr)}
    assert used, "no metric names were read"
    assert used <= exposed, sorted(used - exposed)


class Prometheus:
    """Debian's prometheus, scraping the stack every second with the component's rules."""

    def __init__(self, stack: Stack, base: Path) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: install Debian's prometheus package (.ci/run does)"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The alert's expression as shipped; its `for` shortened from 1m so the test is quick.
        rules = rules_file(base / "rules.yaml", for_overrides={"PinexaServiceNotServing": "3s"})
        targets = [observed_target(stack.metrics_url(s)) for s in stack.services]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": "pinexa-services", "static_configs": [{"targets": targets}]},
                {
                    "job_name": "pinexa-envoy",
                    "metrics_path": "/stats/prometheus",
                    "static_configs": [{"targets": [observed_target(stack.envoy_stats_url)]}],
                },
            ],
        }
        (base / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (base / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={base / 'prometheus.yml'}",
                f"--storage.tsdb.path={base / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def query(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=5)
        response.raise_for_status()
        return response.json()["data"]

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "prometheus exited"
            try:
                if check():
                    return
            except httpx.HTTPError:
                pass  # not up yet
            time.sleep(0.5)  # polling interval
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.log.close()


def observed_target(url: str) -> str:
    return httpx.URL(url).netloc.decode()


def test_prometheus_scrapes_the_stack_and_fires_service_not_serving_when_the_data_store_stops(
    observed: Stack, tmp_path: Path
) -> None:
    prometheus = Prometheus(observed, tmp_path)
    try:
        prometheus.wait(
            "every target up",
            lambda: (
                len([t for t in prometheus.query("/api/v1/targets")["activeTargets"] if t["health"] == "up"])
                == len(observed.services) + 1
            ),
        )
        prometheus.wait(
            "the RPC metrics in Prometheus",
            lambda: bool(prometheus.query("/api/v1/query", query="grpc_server_handled_total")["result"]),
        )

        def firing() -> list[dict[str, Any]]:
            return [
                a
                for a in prometheus.query("/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == "PinexaServiceNotServing" and a["state"] == "firing"
            ]

        assert firing() == []
        observed.stop_service(MONGO)
        try:
            prometheus.wait("PinexaServiceNotServing to fire", lambda: bool(firing()))
            assert {a["labels"]["service"] for a in firing()} == {"data"}
        finally:
            observed.restart_service(MONGO)
        prometheus.wait("the alert to resolve", lambda: not firing())
    finally:
        prometheus.stop()
