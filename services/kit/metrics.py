"""Prometheus metrics for every RPC, served on METRICS_PORT when it is set."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Histogram, start_http_server

REQUESTS = Counter(
    "pinexa_grpc_requests_total", "RPCs handled, by method and status code.", ["service", "method", "code"]
)
LATENCY = Histogram(
    "pinexa_grpc_request_duration_seconds",
    "Time to handle an RPC, by method.",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def recorder(service: str, method: str) -> Callable[[str, float], None]:
    """`observe` for one method, with its label children bound once: a call costs the two
    updates, not two label lookups (the child per status code is bound on first use)."""
    latency = LATENCY.labels(service, method)
    counters: dict[str, Counter] = {}

    def record(code: str, seconds: float) -> None:
        counter = counters.get(code)
        if counter is None:
            counter = counters[code] = REQUESTS.labels(service, method, code)
        counter.inc()
        latency.observe(seconds)

    return record


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Start the /metrics HTTP endpoint in a daemon thread; port 0 means metrics are off."""
    if port:
        start_http_server(port, addr=host)
