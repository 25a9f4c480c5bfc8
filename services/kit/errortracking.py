"""Unexpected errors to Sentry, with Sentry's SDK, when SENTRY_DSN is set (off otherwise).

What is reported: every log record at ERROR or above — an RPC's unhandled exception (the
interceptor's `log.exception`, which clients see as 500 INTERNAL), a background worker's failure —
through the SDK's logging integration. Each event is tagged with the service, the request id and
the trace id of the request it happened in, so it is found from the `x-request-id` a client saw.
No request bodies, headers or user data are sent (the SDK's default; gRPC has no integration that
would collect them, and log extras never hold secrets). `SENTRY_ENVIRONMENT` and `SENTRY_RELEASE`
are read by the SDK itself.
"""

from __future__ import annotations

import logging
from typing import Any

from services.kit.context import current_request_id
from services.kit.settings import Settings
from services.kit.tracing import current_ids

_active = False


def configure(service: str, settings: Settings) -> bool:
    """Start the Sentry client when SENTRY_DSN is set; returns whether it did."""
    global _active
    if not settings.sentry_dsn or _active:
        return _active
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    def tag(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        # Runs where the error is captured, so the request's context is still current.
        trace_id, _span = current_ids()
        tags = event.setdefault("tags", {})
        tags.setdefault("service", service)
        tags.setdefault("request_id", current_request_id())
        if trace_id != "-":
            tags.setdefault("trace_id", trace_id)
        return event

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.environment,
        server_name=service,
        traces_sample_rate=None,  # errors only; traces go to OpenTelemetry
        before_send=tag,  # type: ignore[arg-type]
        integrations=[LoggingIntegration(level=None, event_level=logging.ERROR)],
    )
    _active = True
    return True


def shutdown() -> None:
    """Send what is still queued and stop the client (at process exit)."""
    global _active
    if not _active:
        return
    import sentry_sdk

    sentry_sdk.get_client().close(timeout=2)
    _active = False
