"""Structured logging: one JSON object a line on stderr, tagged with service, request id, and the
trace and span ids of the current OpenTelemetry span (`-` outside one, or with tracing off)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from services.kit.context import current_request_id
from services.kit.tracing import current_ids


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self._service
        record.request_id = current_request_id()
        record.trace_id, record.span_id = current_ids()
        return True


class JsonFormatter(logging.Formatter):
    """Renders a record and its `extra` fields as JSON. Callers never pass secrets as extras."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, *, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter(service))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(service)s [%(request_id)s trace=%(trace_id)s span=%(span_id)s] "
                "%(name)s: %(message)s"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
