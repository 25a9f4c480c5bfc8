"""Writes the JSON schemas of the Prometheus Operator kinds k8s/components/monitoring uses
(PodMonitor, PrometheusRule) into k8s/components/monitoring/schemas/, so tests/deploy validates them
offline.

    .venv/bin/pip install cloudcoil-models-prometheus-operator==0.80.1.0
    .venv/bin/python scripts/monitoring_schemas.py

The schemas come from the `cloudcoil-models-prometheus-operator` models on PyPI (generated from the
operator's CRDs; its version is the operator's, 0.80.1). It is not a dev dependency: the schemas
are committed, and the package installs a pytest plugin that needs more packages still. Objects are
made strict (`additionalProperties: false` wherever the CRD lists the properties), as an API
server with field validation `Strict` would treat them, so a misspelled field fails. Generated
here rather than downloaded: the tests never fetch anything at run time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cloudcoil.models.prometheus_operator import v1

OUT = Path(__file__).resolve().parents[1] / "k8s" / "components" / "monitoring" / "schemas"
KINDS = {"podmonitor_v1.json": v1.PodMonitor, "prometheusrule_v1.json": v1.PrometheusRule}


def strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {key: strict(value) for key, value in node.items()}
        pattern = node.get("pattern")
        if isinstance(pattern, str) and pattern.startswith("^(?i)"):
            node["pattern"] = "(?i)^" + pattern[5:]  # Go's RE2 takes the flag anywhere; Python first
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
    elif isinstance(node, list):
        node = [strict(item) for item in node]
    return node


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, model in KINDS.items():
        schema = strict(model.model_json_schema(by_alias=True, mode="validation"))
        (OUT / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
