"""The monitoring component (k8s/components/monitoring) as the tests read it: its rules, the
dashboard's queries, and the metric names both use."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "k8s" / "components" / "monitoring"
SCHEMAS = MONITORING / "schemas"
RULE_TESTS = MONITORING / "tests" / "alerts.test.yaml"
DASHBOARD = MONITORING / "dashboards" / "pinexa.json"

# Series Prometheus makes itself rather than scraping them.
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
_PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
)


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((MONITORING / name).read_text()) if d]


def rule_groups() -> list[dict[str, Any]]:
    (rule,) = documents("prometheusrule.yaml")
    return list(rule["spec"]["groups"])


def rules_file(path: Path, *, for_overrides: dict[str, str] | None = None) -> Path:
    """The PrometheusRule's groups as a plain Prometheus rules file (what promtool and Prometheus
    read). `for_overrides` changes the `for` of named alerts (the e2e test shortens one)."""
    groups = rule_groups()
    for group in groups:
        for rule in group["rules"]:
            if for_overrides and rule.get("alert") in for_overrides:
                rule["for"] = for_overrides[rule["alert"]]
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def rule_expressions() -> list[str]:
    return [rule["expr"] for group in rule_groups() for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panel_expressions() -> list[str]:
    return [
        target["expr"]
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, keywords,
    label names (in `{...}` and `by (...)` lists) or strings."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end() :].lstrip()
        if word in _PROMQL_WORDS or following.startswith("(") or word.startswith("$"):
            continue
        if text[max(0, match.start() - 1)] == "$":  # $__rate_interval
            continue
        names.add(word)
    return names


def exposed_names(exposition: str) -> set[str]:
    """Every metric name in a Prometheus text exposition: the samples' and those a # TYPE line
    declares (a labelled counter no one has incremented yet has no sample, only its TYPE)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind == "histogram":
                names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names
