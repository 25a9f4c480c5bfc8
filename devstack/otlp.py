"""The dev stack's trace receiver: OTLP over gRPC in, one JSON object per span out (var/traces.jsonl).

    python -m devstack.otlp --port 4317 --out var/traces.jsonl

`make run` starts it and points Envoy and every service at it, so a request's spans — Envoy's,
each service's server and client spans, and the database spans — land in one file, one line each:

    {"trace_id": "4bf9…", "span_id": "00f0…", "parent_span_id": "…", "service": "pinexa-users",
     "name": "pinexa.users.v1.UserService/GetMe", "kind": "server", "start": "…", "duration_ms": 1.9,
     "status": "unset", "attributes": {"rpc.method": "GetMe", "pinexa.request_id": "…", …}}

Hand-written on purpose: the OpenTelemetry Collector is a Go binary, not installable from the
registries this project uses (PyPI, Debian). This is only its OTLP/gRPC trace endpoint, built on
the protobufs of `opentelemetry-proto` and grpcio; anything richer (Jaeger, Tempo) takes the same
OTLP if you point OTEL_EXPORTER_OTLP_ENDPOINT at it instead.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from concurrent import futures
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

_KINDS = {
    trace_pb2.Span.SPAN_KIND_INTERNAL: "internal",
    trace_pb2.Span.SPAN_KIND_SERVER: "server",
    trace_pb2.Span.SPAN_KIND_CLIENT: "client",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "producer",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "consumer",
}
_STATUS = {
    trace_pb2.Status.STATUS_CODE_UNSET: "unset",
    trace_pb2.Status.STATUS_CODE_OK: "ok",
    trace_pb2.Status.STATUS_CODE_ERROR: "error",
}


def _value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _time(nanos: int) -> str:
    return datetime.fromtimestamp(nanos / 1e9, UTC).isoformat(timespec="microseconds")


def span_records(request: trace_service_pb2.ExportTraceServiceRequest) -> list[dict[str, Any]]:
    """Every span of an export request as a flat JSON-ready record."""
    records = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                records.append(
                    {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "service": resource.get("service.name", ""),
                        "name": span.name,
                        "kind": _KINDS.get(span.kind, "unspecified"),
                        "start": _time(span.start_time_unix_nano),
                        "duration_ms": round((span.end_time_unix_nano - span.start_time_unix_nano) / 1e6, 3),
                        "status": _STATUS.get(span.status.code, "unset"),
                        "status_message": span.status.message,
                        "attributes": attributes(span.attributes),
                        "scope": scope_spans.scope.name,
                    }
                )
    return records


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Appends each exported span to `out` as one line of JSON."""

    def __init__(self, out: Path) -> None:
        self._out = out
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        lines = "".join(json.dumps(record) + "\n" for record in span_records(request))
        with self._lock, self._out.open("a") as out:
            out.write(lines)
        return trace_service_pb2.ExportTraceServiceResponse()


def serve(port: int, out: Path, host: str = "127.0.0.1") -> tuple[grpc.Server, int]:
    out.parent.mkdir(parents=True, exist_ok=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceReceiver(out), server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.otlp", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=4317)
    parser.add_argument("--out", type=Path, default=Path("var/traces.jsonl"))
    args = parser.parse_args(argv)
    server, port = serve(args.port, args.out)
    sys.stderr.write(f"OTLP trace receiver on 127.0.0.1:{port}, writing {args.out}\n")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
