"""services/kit/tracing.py's reading of the OTEL_* variables: off unless an endpoint is set, off
again with the SDK's switches, and a clear start-up error for what it cannot export; the kit's SQL
executor seen by the driver instrumentations on both databases. (Spans are checked end to end in
tests/e2e/test_observability.py, through a real Envoy and the real services.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.kit import tracing
from services.kit.settings import SettingsError


def test_off_unless_an_otlp_endpoint_is_set() -> None:
    assert not tracing.enabled({})
    assert tracing.enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert tracing.enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"})
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    assert not tracing.enabled({**endpoint, "OTEL_SDK_DISABLED": "true"})
    assert not tracing.enabled({**endpoint, "OTEL_TRACES_EXPORTER": "none"})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
    ],
)
def test_what_cannot_be_exported_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        tracing.check({variable: value})
    with pytest.raises(SettingsError, match=variable):
        tracing.configure("users", {variable: value})


def test_with_tracing_off_nothing_is_installed() -> None:
    assert not tracing.configure("users", {})
    assert tracing.server_interceptors() == [] and tracing.client_interceptors() == []
    assert tracing.current_ids() == ("-", "-")
    tracing.set_request_id("r1")  # no-ops
    tracing.record_code("INTERNAL")
    with tracing.untraced():
        pass


async def test_the_kits_sql_executor_is_traced_by_the_driver_instrumentations(sql_url: str) -> None:
    """kit/db.py runs SQL on psycopg_pool's AsyncConnections and aiosqlite's thread directly: the
    maintained psycopg and sqlite3 instrumentations (as tracing.configure installs them) see each
    statement, as a child of the caller's span, pooled connections included. Exported to memory
    here instead of OTLP; the instrumentations are removed again at the end."""
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from sqlalchemy import text

    from services.kit import sql

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    SQLite3Instrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    tracing._carry_context_into_aiosqlite()
    engine = sql.create_engine(sql_url, pool_size=1)
    try:
        with provider.get_tracer("test").start_as_current_span("request") as request:
            for _ in range(2):  # the second one on a pooled connection
                async with engine.connect() as connection:
                    assert await connection.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()
        PsycopgInstrumentor().uninstrument()
        SQLite3Instrumentor().uninstrument()
    statements = [s for s in exporter.get_finished_spans() if s.attributes and "db.system" in s.attributes]
    assert len(statements) >= 2, [s.name for s in exporter.get_finished_spans()]
    assert all(
        s.parent is not None and s.parent.span_id == request.get_span_context().span_id for s in statements
    )


async def test_a_server_stream_still_streams_under_the_grpc_instrumentation() -> None:
    """The kit serves a server-streaming method (auth's WatchRevocations) as a bidirectional
    one that reads the request first (kit/request_stream.py). OpenTelemetry's aio server
    interceptor, installed when tracing is on (`make run` turns it on), iterates such a
    behavior with `async for`: it must be an async generator, not a coroutine writing to the
    context, or every stream fails with UNKNOWN (users and data then never learn of a
    revoked session). A real server with the real interceptor, over TCP."""
    import grpc
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    from services.kit.request_stream import complete_request

    async def count(request: bytes, context: object) -> AsyncIterator[bytes]:
        for i in range(int(request or b"0")):
            yield str(i).encode()

    handler = complete_request(
        grpc.unary_stream_rpc_method_handler(count, request_deserializer=bytes, response_serializer=bytes),
        domain="pinexa.test",
    )
    server = grpc.aio.server(interceptors=[aio_server_interceptor()])  # type: ignore[no-untyped-call]
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Stream", {"Count": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_stream("/test.Stream/Count")(b"3", timeout=10)
            assert [bytes(r) async for r in call] == [b"0", b"1", b"2"]
            empty = channel.stream_stream("/test.Stream/Count")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in empty(iter(()), timeout=10):
                    pass
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # INCOMPLETE_REQUEST
    finally:
        await server.stop(0)
