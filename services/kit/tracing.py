"""Traces with OpenTelemetry: set up once per process by the shared start-up (services/kit/cli.py).

Off unless an OTLP endpoint is configured, with the standard variables of the OpenTelemetry SDK:

- `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`): where spans go, over
  OTLP/gRPC (`http://collector:4317`; `OTEL_EXPORTER_OTLP_INSECURE`, `..._HEADERS`, `..._TIMEOUT`
  and the `OTEL_BSP_*` batch settings are read by the SDK itself);
- `OTEL_SERVICE_NAME` (default `pinexa-<service>`), `OTEL_RESOURCE_ATTRIBUTES`;
- `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default: parentbased_always_on, so a sampled
  `traceparent` from Envoy is always followed);
- `OTEL_PROPAGATORS` (default `tracecontext,baggage`: the W3C `traceparent`);
- `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off again.

What emits spans, all through the maintained instrumentation packages (no hand-written spans):
the gRPC aio server (`server_interceptors()`, installed by ServiceHost) and the client channels
(`client_interceptors()`, installed by services/kit/channels.py), both passing `traceparent` on;
the database drivers themselves — psycopg (PostgreSQL), sqlite3 (under aiosqlite) and PyMongo — so
the spans do not depend on whether a store goes through SQLAlchemy or the driver directly.
Health checks and reflection are not traced (Envoy and Kubernetes probe health every second).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from opentelemetry import trace

from services.kit.settings import SettingsError

log = logging.getLogger(__name__)

_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
_UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")

# The span attribute holding the request id (x-request-id), set by the kit's interceptor on the
# server span, so a trace is found from the id a client saw. OpenTelemetry has no convention for it.
REQUEST_ID_ATTRIBUTE = "pinexa.request_id"

_active = False


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """True when the OTEL_* variables ask for spans to be exported."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in _ENDPOINT_VARS)


def check(env: Mapping[str, str] | None = None) -> None:
    """Refuse what this build cannot export (so a typo is an error at start-up, not silence)."""
    env = os.environ if env is None else env
    exporter = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter not in ("otlp", "none"):
        raise SettingsError(f"OTEL_TRACES_EXPORTER must be 'otlp' or 'none', got {exporter!r}")
    for name in _PROTOCOL_VARS:
        protocol = env.get(name, "").strip()
        if protocol and protocol != "grpc":
            raise SettingsError(f"{name} must be 'grpc' (OTLP over gRPC), got {protocol!r}")


def active() -> bool:
    """Whether `configure` turned tracing on in this process."""
    return _active


def configure(service: str, env: Mapping[str, str] | None = None) -> bool:
    """Install the tracer provider, the OTLP exporter and the driver instrumentations when the
    environment asks for traces; returns whether it did. Call once, before any server, channel or
    database client is made."""
    global _active
    env = os.environ if env is None else env
    check(env)
    if _active or not enabled(env):
        return _active
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME (which wins).
    name = env.get("OTEL_SERVICE_NAME", "").strip() or f"pinexa-{service}"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    SQLite3Instrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    PymongoInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    _carry_context_into_aiosqlite()
    _active = True
    log.info("tracing on", extra={"otel_service_name": name})
    return True


def shutdown() -> None:
    """Export the spans still buffered (at process exit)."""
    provider = trace.get_tracer_provider()
    flush: Callable[[], Any] | None = getattr(provider, "shutdown", None)
    if _active and flush is not None:
        flush()


def _traced(details: Any) -> bool:
    method = str(getattr(details, "method", ""))
    return not method[1:].startswith(_UNTRACED_SERVICES)


def server_interceptors() -> list[Any]:
    """The OpenTelemetry aio server interceptor (outermost), or none when tracing is off."""
    if not _active:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(filter_=_traced)]  # type: ignore[no-untyped-call]


def client_interceptors() -> list[Any]:
    """The OpenTelemetry aio client interceptors for a channel, or none when tracing is off."""
    if not _active:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())  # type: ignore[no-untyped-call]


def set_request_id(request_id: str) -> None:
    """Put the request id on the current (server) span; nothing when tracing is off."""
    if _active:
        trace.get_current_span().set_attribute(REQUEST_ID_ATTRIBUTE, request_id)


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """No spans for what runs inside (the health monitor's database pings every few seconds)."""
    if not _active:
        yield
        return
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield


# Codes that make a server span an error (OpenTelemetry's RPC conventions); client errors do not.
_SERVER_ERRORS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)


def record_code(code: str) -> None:
    """Put the RPC's status code on the current server span (the kit answers errors with
    abort_with_status, which the gRPC instrumentation does not see), and mark server errors."""
    if not _active or code == "OK":
        return
    import grpc
    from opentelemetry.trace import Status, StatusCode

    span = trace.get_current_span()
    status = getattr(grpc.StatusCode, code, None)
    if status is not None:
        span.set_attribute("rpc.grpc.status_code", status.value[0])
    if code in _SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, code))


def current_ids() -> tuple[str, str]:
    """(trace id, span id) of the current span in W3C hex, or ("-", "-") outside any span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "-", "-"
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def _carry_context_into_aiosqlite() -> None:
    """aiosqlite runs each sqlite3 call on its own thread, which does not see the caller's context,
    so the sqlite3 instrumentation's spans would start new traces. Run each queued call in a copy
    of the caller's context instead. (No maintained aiosqlite instrumentation exists; this is the
    one hand-written piece, a few lines around aiosqlite's own queueing method.)"""
    try:
        from aiosqlite.core import Connection
    except ImportError:  # pragma: no cover - aiosqlite is a dependency
        return
    original = Connection._execute
    if getattr(original, "_pinexa_context", False):
        return

    @functools.wraps(original)
    async def _execute(self: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await original(self, contextvars.copy_context().run, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    _execute._pinexa_context = True  # type: ignore[attr-defined]
    Connection._execute = _execute  # type: ignore[method-assign]
