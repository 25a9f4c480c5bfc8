"""NetworkPolicies, evaluated: who may open a connection to whom, in each overlay.

A small evaluator applies the Kubernetes NetworkPolicy semantics (a pod selected by no policy of a
direction is open in that direction; otherwise a connection needs a matching egress rule at the
source AND a matching ingress rule at the destination) to the rendered policies, and the test
compares the result with the complete list of paths Pinexa needs. Anything more is a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.deploy.conftest import of_kind, pod_labels, rendered, workloads


@dataclass(frozen=True)
class Peer:
    """One end of a connection: a pod (labels, namespace) or an address outside the cluster."""

    name: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    namespace: str | None = None  # None: outside the cluster
    namespace_labels: dict[str, str] = field(default_factory=dict, hash=False)


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _peer_matches(peers: list[dict[str, Any]] | None, peer: Peer, policy_namespace: str) -> bool:
    if not peers:  # an omitted or empty from/to matches everything
        return True
    for entry in peers:
        if "ipBlock" in entry:
            if peer.namespace is None:  # coarse: any ipBlock covers the outside addresses used here
                return True
            continue
        if peer.namespace is None:
            continue
        if "namespaceSelector" in entry:
            if not _matches(entry["namespaceSelector"], peer.namespace_labels):
                continue
        elif peer.namespace != policy_namespace:
            continue
        if "podSelector" in entry and not _matches(entry["podSelector"], peer.labels):
            continue
        return True
    return False


def _port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports)


class Policies:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.policies = of_kind(docs, "NetworkPolicy")

    def _selecting(self, peer: Peer, direction: str) -> list[dict[str, Any]]:
        if peer.namespace is None:
            return []
        return [
            p
            for p in self.policies
            if p["metadata"]["namespace"] == peer.namespace
            and direction in p["spec"].get("policyTypes", ["Ingress"])
            and _matches(p["spec"]["podSelector"], peer.labels)
        ]

    def allows(self, source: Peer, destination: Peer, port: int, protocol: str = "TCP") -> bool:
        egress = self._selecting(source, "Egress")
        if egress and not any(
            _peer_matches(rule.get("to"), destination, p["metadata"]["namespace"])
            and _port_matches(rule.get("ports"), port, protocol)
            for p in egress
            for rule in p["spec"].get("egress", [])
        ):
            return False
        ingress = self._selecting(destination, "Ingress")
        return not ingress or any(
            _peer_matches(rule.get("from"), source, p["metadata"]["namespace"])
            and _port_matches(rule.get("ports"), port, protocol)
            for p in ingress
            for rule in p["spec"].get("ingress", [])
        )


def _pods(docs: list[dict[str, Any]]) -> dict[str, Peer]:
    (namespace,) = of_kind(docs, "Namespace")
    ns = namespace["metadata"]["name"]
    ns_labels = {"kubernetes.io/metadata.name": ns, **namespace["metadata"].get("labels", {})}
    return {
        w["metadata"]["name"]: Peer(w["metadata"]["name"], pod_labels(w), ns, ns_labels)
        for w in workloads(docs)
    }


DNS = Peer("dns", {"k8s-app": "kube-dns"}, "kube-system", {"kubernetes.io/metadata.name": "kube-system"})
PROMETHEUS = Peer(
    "prometheus", {"app": "prometheus"}, "monitoring", {"kubernetes.io/metadata.name": "monitoring"}
)
OTHER_POD = Peer("other", {"app": "other"}, "elsewhere", {"kubernetes.io/metadata.name": "elsewhere"})
INTERNET = Peer("internet")

PORTS = {
    "envoy": 8080,
    "auth": 50051,
    "users": 50052,
    "data": 50053,
    "postgres": 5432,
    "mongodb": 27017,
    "mailpit": 1025,  # dev: the mail catcher's SMTP port
}
SMTP_SUBMISSION_PORTS = (587, 465)  # prod: a mail server outside, STARTTLS or implicit TLS

# Every connection Pinexa needs, and nothing else.
COMMON = {
    ("internet", "envoy", 8080),
    ("other", "envoy", 8080),
    ("prometheus", "envoy", 8080),
    ("envoy", "auth", 50051),
    ("envoy", "users", 50052),
    ("envoy", "data", 50053),
    ("auth", "users", 50052),  # VerifyCredentials
    ("users", "data", 50053),  # PurgeUserData
    ("users", "auth", 50051),  # GetJwks
    ("data", "auth", 50051),  # GetJwks
    ("prometheus", "auth", 9090),
    ("prometheus", "users", 9090),
    ("prometheus", "data", 9090),
}
EXPECTED = {
    "dev": COMMON
    | {
        ("users", "postgres", 5432),
        ("auth", "postgres", 5432),
        ("data", "mongodb", 27017),
        ("users", "mailpit", 1025),  # mail, to the dev overlay's Mailpit
    },
    # The databases are outside the namespace (a managed service, or an operator's namespace):
    # each service may reach its own database's port outside, and nothing else there.
    "prod": COMMON
    | {
        (service, outside, port)
        for service, port in (
            ("users", 5432),
            ("auth", 5432),
            ("data", 27017),
            *(("users", smtp) for smtp in SMTP_SUBMISSION_PORTS),  # mail, to the mail server
        )
        for outside in ("internet", "other", "prometheus")
    },
}


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_only_the_needed_connections_are_allowed(overlay: str) -> None:
    docs = rendered(overlay)
    policies = Policies(docs)
    pods = _pods(docs)
    everyone = [*pods.values(), PROMETHEUS, OTHER_POD, INTERNET]
    ports = sorted({*PORTS.values(), 9090, 443, 25, 8025, *SMTP_SUBMISSION_PORTS})
    allowed = set()
    for source in everyone:
        for destination in everyone:
            if source is destination:
                continue
            for port in ports:
                if policies.allows(source, destination, port):
                    allowed.add((source.name, destination.name, port))
    # Traffic among outside peers is not ours to police.
    outside = {"prometheus", "other", "internet"}
    allowed = {(s, d, p) for s, d, p in allowed if not (s in outside and d in outside)}
    assert allowed == EXPECTED[overlay], (
        f"unexpected: {sorted(allowed - EXPECTED[overlay])}; missing: {sorted(EXPECTED[overlay] - allowed)}"
    )


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_pod_resolves_dns_and_nothing_else_leaves(overlay: str) -> None:
    docs = rendered(overlay)
    policies = Policies(docs)
    for pod in _pods(docs).values():
        assert policies.allows(pod, DNS, 53, "UDP"), pod.name
        assert policies.allows(pod, DNS, 53, "TCP"), pod.name
        assert not policies.allows(pod, INTERNET, 443), pod.name
        assert not policies.allows(pod, OTHER_POD, 53, "UDP"), pod.name


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_default_deny_covers_every_pod(overlay: str) -> None:
    docs = rendered(overlay)
    deny = [p for p in of_kind(docs, "NetworkPolicy") if p["spec"]["podSelector"] == {}]
    assert any(
        set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in deny
    )
