"""Prometheus metrics, served on METRICS_PORT when it is set (`make run` sets it for every service).

Per-RPC metrics use the names of grpc-ecosystem/go-grpc-prometheus (what the common gRPC Grafana
dashboards and alerts read), with its labels `grpc_type`, `grpc_service` (the full service name,
`pinexa.users.v1.UserService`), `grpc_method` and `grpc_code` (`OK`, `NOT_FOUND`, ...):

- `grpc_server_started_total`: RPCs started;
- `grpc_server_handled_total`: RPCs finished, by status code;
- `grpc_server_handling_seconds`: a histogram of the time to handle them.

Health checks and reflection are not counted. The business metrics (`pinexa_*`) are defined here
too, so their names are in one place for the alerts and the dashboard in k8s/ (tests/deploy checks
that every name used there is one a running service exposes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, start_http_server

# The `_created` series double every counter's output and nothing here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_RPC_LABELS = ["grpc_type", "grpc_service", "grpc_method"]

STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", _RPC_LABELS)
HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, whatever their status code.",
    [*_RPC_LABELS, "grpc_code"],
)
HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Time taken by the server to handle an RPC, until its response or error.",
    _RPC_LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

SERVING = Gauge(
    "pinexa_service_serving",
    "1 while the service reports SERVING on its gRPC health (its own database reachable), else 0.",
    ["service"],
)

# -- business metrics ------------------------------------------------------------------------------

LOGIN_OUTCOMES = ("succeeded", "failed", "throttled")
LOGINS = Counter(
    "pinexa_logins_total",
    "Login attempts by outcome: succeeded, failed (wrong name or password), throttled (429).",
    ["outcome"],
)
REFRESH_REUSE = Counter(
    "pinexa_refresh_reuse_detected_total",
    "Spent refresh tokens presented again outside the grace window (the session is revoked).",
)
SIGNUPS = Counter("pinexa_signups_total", "Accounts created (sign-ups and accounts made by admins).")
MAIL_SENT = Counter("pinexa_mail_sent_total", "Mails handed to the SMTP server.", ["service"])
MAIL_FAILED = Counter(
    "pinexa_mail_failed_total", "Mail delivery attempts that failed (each retry counts).", ["service"]
)
OUTBOX_DEPTH = Gauge("pinexa_outbox_depth", "Rows waiting in a durable outbox.", ["service", "outbox"])
OUTBOX_OLDEST_AGE = Gauge(
    "pinexa_outbox_oldest_age_seconds",
    "Age of the oldest row waiting in a durable outbox (0 when empty).",
    ["service", "outbox"],
)
SQL_POOL_IN_USE = Gauge(
    "pinexa_sql_pool_connections_in_use", "SQL connections checked out of the pool.", ["service"]
)
SQL_POOL_SIZE = Gauge("pinexa_sql_pool_size", "SQL connections the pool may hold.", ["service"])
READ_BATCH_SIZE = Histogram(
    "pinexa_read_batch_size",
    "Reads answered by one statement of a request coalescer (services/kit/coalesce.py).",
    ["service", "read"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 100),
)
MONGODB_ERRORS = Counter(
    "pinexa_mongodb_errors_total",
    "MongoDB operations that failed, by kind: unavailable (unreachable or timed out) or error.",
    ["kind"],
)

# Every outcome and kind is exposed from the start, at 0, so rates and alerts see them.
for _outcome in LOGIN_OUTCOMES:
    LOGINS.labels(_outcome)
for _kind in ("unavailable", "error"):
    MONGODB_ERRORS.labels(_kind)


class MethodMetrics:
    """The metric children of one RPC method, bound once (the interceptor keeps one per method)."""

    __slots__ = ("_handled", "_key", "_latency", "_started")

    def __init__(self, full_method: str, grpc_type: str = "unary") -> None:
        service, _, method = full_method.lstrip("/").partition("/")
        self._key = (grpc_type, service, method)
        self._started = STARTED.labels(*self._key)
        self._latency = HANDLING.labels(*self._key)
        self._handled: dict[str, Counter] = {}

    def started(self) -> None:
        self._started.inc()

    def handled(self, code: str, seconds: float) -> None:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = HANDLED.labels(*self._key, code)
        child.inc()
        self._latency.observe(seconds)


def set_serving(service: str, serving: bool) -> None:
    SERVING.labels(service).set(1 if serving else 0)


def login(outcome: str) -> None:
    LOGINS.labels(outcome).inc()


def outbox(service: str, name: str, *, depth: int, oldest_age_seconds: float) -> None:
    """Report a durable outbox's backlog (its worker calls this after each pass)."""
    OUTBOX_DEPTH.labels(service, name).set(depth)
    OUTBOX_OLDEST_AGE.labels(service, name).set(max(0.0, oldest_age_seconds))


def sql_pool(service: str, *, in_use: Callable[[], float], size: Callable[[], float]) -> None:
    """Expose a SQL pool's connections in use and its size, read at each scrape."""
    SQL_POOL_IN_USE.labels(service).set_function(in_use)
    SQL_POOL_SIZE.labels(service).set_function(size)


def sql_database_pool(service: str, database: Any) -> None:
    """`sql_pool` for the kit's executor (services/kit/db.py's Database: psycopg_pool's
    statistics plus direct connections, or aiosqlite's reader and writer connections)."""
    sql_pool(
        service,
        in_use=lambda: float(database.pool_stats()[0]),
        size=lambda: float(database.pool_stats()[1]),
    )


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Start the /metrics HTTP endpoint in a daemon thread; port 0 means metrics are off."""
    if port:
        start_http_server(port, addr=host)
