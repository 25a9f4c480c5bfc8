"""services/kit/tracing.py's reading of the OTEL_* variables: off unless an endpoint is set, off
again with the SDK's switches, and a clear start-up error for what it cannot export. (Spans
themselves are checked end to end in tests/e2e/test_observability.py, through a real Envoy and the
real services.)"""

from __future__ import annotations

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
