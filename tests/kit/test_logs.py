"""Every log line, in either format, carries the current span's trace and span ids."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from services.kit import logs


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_line_logged_inside_a_span_names_its_trace_and_span(fmt: str) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure_logging("users", fmt=fmt)
        out = io.StringIO()
        root.handlers[0].setStream(out)  # type: ignore[attr-defined]
        tracer = TracerProvider().get_tracer(__name__)
        with tracer.start_as_current_span("work") as span:
            logging.getLogger("pinexa.test").info("inside")
            context = span.get_span_context()
        logging.getLogger("pinexa.test").info("outside")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    inside, outside = out.getvalue().splitlines()
    trace_id, span_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
    if fmt == "json":
        entry = json.loads(inside)
        assert (entry["trace_id"], entry["span_id"]) == (trace_id, span_id)
        assert (json.loads(outside)["trace_id"], json.loads(outside)["span_id"]) == ("-", "-")
    else:
        assert f"trace={trace_id} span={span_id}]" in inside
        assert "trace=- span=-]" in outside
