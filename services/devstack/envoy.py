"""Renders Envoy's config from the one template, envoy/envoy.yaml.tmpl.

Two parameter sets come from the same template, so the two configs cannot drift apart:

- `local_params(...)`: what `make run` and the e2e tests use — a listener on 127.0.0.1, static
  clusters on 127.0.0.1 ports, and the descriptor set at generated/pinexa.pb (absolute path).
- `kubernetes_params()`: what `make generate` writes to k8s/base/envoy/envoy.yaml — a listener on
  0.0.0.0:8080, STRICT_DNS clusters on the headless Services `auth`, `users` and `data`, and the
  descriptor set mounted from the ConfigMap at /etc/envoy/pinexa.pb.

    python -m services.devstack.envoy local        # print the local rendering
    python -m services.devstack.envoy kubernetes   # print the Kubernetes rendering
"""

from __future__ import annotations

import string
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "envoy" / "envoy.yaml.tmpl"
DESCRIPTOR_SET = ROOT / "generated" / "pinexa.pb"
KUBERNETES_CONFIG = ROOT / "k8s" / "base" / "envoy" / "envoy.yaml"
KUBERNETES_DESCRIPTOR_SET = ROOT / "k8s" / "base" / "envoy" / "pinexa.pb"
OPENAPI = ROOT / "generated" / "openapi.json"
DOCS_DIR = ROOT / "generated" / "docs"
KUBERNETES_OPENAPI = ROOT / "k8s" / "base" / "envoy" / "openapi.json"
KUBERNETES_DOCS_DIR = ROOT / "k8s" / "base" / "envoy" / "docs"
# The files of the /docs page (written by `make generate`, see scripts/generate.py).
DOCS_FILES = ["index.html", "swagger-ui-bundle.js.gz", "swagger-ui.css.gz", "SWAGGER-UI-LICENSE"]
# The strict-edge Lua filter: the generated table of fields per route, then the code using it.
STRICT_LUA_SOURCES = (ROOT / "generated" / "edge_schema.lua", ROOT / "envoy" / "strict.lua")
STRICT_LUA_INDENT = " " * 26  # under `inline_string: |` in the template
# Placeholders render() fills itself, and EnvoyParams fields that switch template sections.
COMPUTED_PLACEHOLDERS = frozenset({"strict_lua"})
SECTION_SWITCHES = frozenset({"strict_edge"})

GENERATED_HEADER = (
    "# GENERATED from envoy/envoy.yaml.tmpl by services/devstack/envoy.py: do not edit by hand.\n"
)

ClusterType = Literal["STATIC", "STRICT_DNS"]


@dataclass(frozen=True, kw_only=True)
class EnvoyParams:
    """Every value the template needs. Defaults are the local development values."""

    listen_address: str = "127.0.0.1"
    listen_port: int = 8080
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    cluster_type: ClusterType = "STATIC"
    auth_host: str = "127.0.0.1"
    auth_port: int = 50051
    users_host: str = "127.0.0.1"
    users_port: int = 50052
    data_host: str = "127.0.0.1"
    data_port: int = 50053
    descriptor_path: str = str(DESCRIPTOR_SET)
    # GET /openapi.json and GET /docs are direct responses from these files.
    openapi_path: str = str(OPENAPI)
    docs_dir: str = str(DOCS_DIR)
    jwt_issuer: str = "pinexa-auth"
    jwt_audience: str = "pinexa"
    jwks_cache_duration: str = "30s"
    # The first line of defence on Login, refilled every second: a bucket per client address and
    # one shared by all clients. The auth service's own per-account and per-IP throttling (with
    # growing back-off) is the real brute-force limit; these only cut floods short.
    login_rate_client_burst: int = 40
    login_rate_client_per_second: int = 20
    login_rate_total_burst: int = 400
    login_rate_total_per_second: int = 200
    # The largest request body (REST JSON or a gRPC message): a data item's 1 MiB of content,
    # its attributes and the JSON escaping around them fit.
    max_request_bytes: int = 2 * 1024 * 1024
    max_response_bytes: int = 8 * 1024 * 1024
    max_downstream_connections: int = 10_000
    # Per-cluster circuit breakers, sized for ~1000 concurrent clients on one Envoy.
    max_upstream_connections: int = 1024
    max_upstream_pending: int = 1024
    max_upstream_requests: int = 2048
    route_timeout: str = "15s"
    connect_timeout: str = "1s"
    health_interval: str = "1s"
    # Proxies in front of Envoy that append x-forwarded-for and are trusted to tell the client
    # address (0: Envoy's peer is the client).
    xff_num_trusted_hops: int = 0
    jwt_leeway_seconds: int = 30
    # The strict-edge Lua filter (envoy/strict.lua). Off only to measure what it costs.
    strict_edge: bool = True


def local_params(
    *,
    listen_port: int = 8080,
    admin_port: int = 9901,
    auth_port: int = 50051,
    users_port: int = 50052,
    data_port: int = 50053,
    descriptor_path: Path = DESCRIPTOR_SET,
    **overrides: object,
) -> EnvoyParams:
    """The rendering `make run` and the e2e tests use."""
    params = EnvoyParams(
        listen_port=listen_port,
        admin_port=admin_port,
        auth_port=auth_port,
        users_port=users_port,
        data_port=data_port,
        descriptor_path=str(descriptor_path.resolve()),
    )
    return replace(params, **overrides)  # type: ignore[arg-type]


def kubernetes_params() -> EnvoyParams:
    """The rendering shipped in the Kubernetes ConfigMap (k8s/base/envoy/envoy.yaml)."""
    return EnvoyParams(
        listen_address="0.0.0.0",
        cluster_type="STRICT_DNS",
        auth_host="auth",
        users_host="users",
        data_host="data",
        descriptor_path="/etc/envoy/pinexa.pb",
        openapi_path="/etc/envoy/openapi.json",
        docs_dir="/etc/envoy-docs",
        health_interval="2s",
    )


def render(params: EnvoyParams) -> str:
    """The config text for `params`; fails on any placeholder the parameters do not fill."""
    lines, dropping = [], False
    for line in TEMPLATE.read_text().splitlines(keepends=True):
        if line.startswith("## strict-edge:"):
            dropping = not params.strict_edge and line.startswith("## strict-edge:begin")
        elif not line.startswith("##") and not dropping:
            lines.append(line)
    values = {key: str(value) for key, value in asdict(params).items() if key not in SECTION_SWITCHES}
    values["strict_lua"] = strict_lua()
    body = string.Template("".join(lines)).substitute(values)
    return GENERATED_HEADER + body


def strict_lua() -> str:
    """The Lua filter's source, indented for the template's block scalar."""
    code = "\n".join(path.read_text() for path in STRICT_LUA_SOURCES)
    return "\n".join(STRICT_LUA_INDENT + line if line else "" for line in code.splitlines())


def write(params: EnvoyParams, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(params))
    return path


def write_kubernetes_files(
    descriptor_set: Path = DESCRIPTOR_SET, openapi: Path = OPENAPI, docs_dir: Path = DOCS_DIR
) -> list[Path]:
    """What `make generate` writes for kustomize's Envoy ConfigMaps: the KUBERNETES rendering and
    copies of the descriptor set and the OpenAPI document, side by side in k8s/base/envoy/, and
    the /docs page in k8s/base/envoy/docs/ (CI checks them for drift)."""
    config = write(kubernetes_params(), KUBERNETES_CONFIG)
    KUBERNETES_DESCRIPTOR_SET.write_bytes(descriptor_set.read_bytes())
    KUBERNETES_OPENAPI.write_bytes(openapi.read_bytes())
    KUBERNETES_DOCS_DIR.mkdir(parents=True, exist_ok=True)
    docs = []
    for name in DOCS_FILES:
        target = KUBERNETES_DOCS_DIR / name
        target.write_bytes((docs_dir / name).read_bytes())
        docs.append(target)
    return [config, KUBERNETES_DESCRIPTOR_SET, KUBERNETES_OPENAPI, *docs]


def main(argv: list[str]) -> None:
    which = argv[0] if argv else "local"
    if which not in ("local", "kubernetes"):
        sys.exit("usage: python -m services.devstack.envoy [local|kubernetes]")
    sys.stdout.write(render(local_params() if which == "local" else kubernetes_params()))


if __name__ == "__main__":
    main(sys.argv[1:])
