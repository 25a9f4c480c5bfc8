"""Renders Envoy's config from the one template, envoy/envoy.yaml.tmpl.

Two parameter sets come from the same template, so the two configs cannot drift apart:

- `local_params(...)`: what `make run` and the e2e tests use — a listener on 127.0.0.1, static
  clusters on 127.0.0.1 ports, and the descriptor set at generated/pinexa.pb (absolute path).
- `kubernetes_params()`: what `make generate` writes to k8s/base/envoy/envoy.yaml — a listener on
  0.0.0.0:8080, STRICT_DNS clusters on the headless Services `auth`, `users` and `data`, and the
  descriptor set mounted from the ConfigMap at /etc/envoy/pinexa.pb.

    python -m envoy.render local        # print the local rendering (from the repository root)
    python -m envoy.render kubernetes   # print the Kubernetes rendering
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import re
import string
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from google.api import annotations_pb2
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "envoy" / "envoy.yaml.tmpl"
DESCRIPTOR_SET = ROOT / "generated" / "pinexa.pb"
KUBERNETES_CONFIG = ROOT / "k8s" / "base" / "envoy" / "envoy.yaml"
KUBERNETES_DESCRIPTOR_SET = ROOT / "k8s" / "base" / "envoy" / "pinexa.pb"
OPENAPI = ROOT / "generated" / "openapi.json"
DOCS_DIR = ROOT / "generated" / "docs"
KUBERNETES_OPENAPI = ROOT / "k8s" / "base" / "envoy" / "openapi.json"
KUBERNETES_DOCS_DIR = ROOT / "k8s" / "base" / "envoy" / "docs"
KUBERNETES_CONSOLE_DIR = ROOT / "k8s" / "base" / "envoy" / "console"
# The web console's files Envoy serves (built by devstack/console.py into console/dist/; copied
# for the envoy-console ConfigMap by `make generate`).
CONSOLE_FILES = ["index.html", "console.js.gz"]
# The files of the /docs page (written by `make generate`, see scripts/generate.py).
DOCS_FILES = ["index.html", "swagger-ui-bundle.js.gz", "swagger-ui.css.gz", "SWAGGER-UI-LICENSE"]
# The strict-edge Lua filter: the generated table of fields per route, then the code using it.
STRICT_LUA_SOURCES = (ROOT / "generated" / "edge_schema.lua", ROOT / "envoy" / "strict.lua")
STRICT_LUA_INDENT = " " * 26  # under `inline_string: |` in the template
# Placeholders render() fills itself, and EnvoyParams fields that switch template sections.
COMPUTED_PLACEHOLDERS = frozenset(
    {
        "strict_lua",
        "cors_allow_origin_matchers",
        "method_not_allowed_mappers",
        "grpc_local_reply_mappers",
        "upstream_unavailable_message",
        "upstream_unavailable_details",
        "access_log_filter",
        "console_pages_regex",
    }
)
# Parameters the template sees only through a computed placeholder.
RENDERED_INDIRECTLY = frozenset({"cors_allowed_origins", "access_log"})
SECTION_SWITCHES = frozenset({"strict_edge", "tracing"})
# The console's pages (react-router routes in console/src/App.tsx): each is answered with its
# index.html (the SPA fallback), so a link such as /items works when opened directly. Any other
# path stays the API's 404 ROUTE_NOT_FOUND.
CONSOLE_PAGES = (
    "",
    "signin",
    "signup",
    "verify-email",
    "reset-password",
    "items",
    "profile",
    "admin/users",
    "admin/items",
    "admin/audit",
)

# ENVOY_ACCESS_LOG: which requests get Envoy's JSON access-log line on stdout.
#   errors (default)  every answer that is not a success: HTTP status >= 400, a gRPC status other
#                     than OK, or any response flag (upstream reset, no healthy upstream, ...).
#                     Envoy's own refusals (401, 404, 413, 429, 503, ...) never reach a service, so
#                     this is where they are seen; a success is logged by the service that
#                     answered it (its "rpc" line, same request_id), so a line of Envoy's for it
#                     too would only double the log volume and cost CPU per request.
#   all               every request (the access log of a proxy without services logging behind it).
#   off               none.
ACCESS_LOG_CHOICES = ("errors", "all", "off")
_ACCESS_LOG_ERRORS_FILTER = (
    "filter: { or_filter: { filters: ["
    "{ status_code_filter: { comparison: { op: GE, value: "
    "{ default_value: 400, runtime_key: access_log.min_status } } } }, "
    "{ grpc_status_filter: { statuses: [OK], exclude: true } }, "
    "{ response_flag_filter: {} } ] } }"
)

GENERATED_HEADER = "# GENERATED from envoy/envoy.yaml.tmpl by envoy/render.py: do not edit by hand.\n"

ClusterType = Literal["STATIC", "STRICT_DNS"]

# The generated modules of the public services: their http annotations give the REST paths.
PUBLIC_MODULES = ("pinexa.auth.v1.auth_pb2", "pinexa.users.v1.users_pb2", "pinexa.data.v1.data_pb2")

# Origins a browser app may call the API from under `make run` (Vite's dev server) when
# CORS_ALLOWED_ORIGINS is not set. The Kubernetes rendering allows none.
DEV_CORS_ORIGINS = ("http://localhost:5173", "http://127.0.0.1:5173")


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
    # The web console (console/, built by devstack/console.py): GET / and its pages are
    # direct responses from this folder's index.html and assets/console.js.gz. Empty: no console
    # routes at all (the e2e suites).
    console_dir: str = ""
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
    # All request headers together, the path and query included (431 past it; HTTP/1.1 and 2).
    max_request_headers_kb: int = 32
    # The path with its query string (414 past it): a long `filter` fits many times over.
    max_path_bytes: int = 8192
    # The whole request must have arrived by then (408), so a stalled client frees its stream.
    request_timeout: str = "5s"
    # Browser origins allowed by CORS (exact scheme://host[:port]); none by default.
    cors_allowed_origins: tuple[str, ...] = ()
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
    # Which requests Envoy writes an access-log line for (ACCESS_LOG_CHOICES; ENVOY_ACCESS_LOG).
    access_log: str = "errors"
    # Prometheus scrapes Envoy's stats on this port (GET /stats/prometheus only).
    stats_port: int = 9902
    # Spans over OTLP/gRPC to an OpenTelemetry collector at otlp_host:otlp_port (the tracing
    # section of the template); make run turns it on towards its own receiver.
    tracing: bool = False
    otlp_host: str = "127.0.0.1"
    otlp_port: int = 4317
    tracing_sampling_percent: float = 100.0


def local_params(
    *,
    listen_port: int = 8080,
    admin_port: int = 9901,
    auth_port: int = 50051,
    users_port: int = 50052,
    data_port: int = 50053,
    descriptor_path: Path = DESCRIPTOR_SET,
    cors_allowed_origins: Iterable[str] = DEV_CORS_ORIGINS,
    **overrides: object,
) -> EnvoyParams:
    """The rendering `make run` and the e2e tests use."""
    params = EnvoyParams(
        cors_allowed_origins=tuple(cors_allowed_origins),
        access_log=access_log_from_env(),
        listen_port=listen_port,
        admin_port=admin_port,
        auth_port=auth_port,
        users_port=users_port,
        data_port=data_port,
        descriptor_path=str(descriptor_path.resolve()),
    )
    return replace(params, **overrides)  # type: ignore[arg-type]


def kubernetes_params(*, cors_allowed_origins: Iterable[str] = ()) -> EnvoyParams:
    """The rendering shipped in the Kubernetes ConfigMap (k8s/base/envoy/envoy.yaml): no CORS
    origin unless given (`CORS_ALLOWED_ORIGINS=... python -m envoy.render kubernetes`)."""
    return EnvoyParams(
        cors_allowed_origins=tuple(cors_allowed_origins),
        listen_address="0.0.0.0",
        cluster_type="STRICT_DNS",
        auth_host="auth",
        users_host="users",
        data_host="data",
        descriptor_path="/etc/envoy/pinexa.pb",
        openapi_path="/etc/envoy-docs/openapi.json",  # in the envoy-docs ConfigMap
        docs_dir="/etc/envoy-docs",
        console_dir="/etc/envoy-console",
        health_interval="2s",
    )


def parse_origins(value: str) -> tuple[str, ...]:
    """CORS_ALLOWED_ORIGINS: comma-separated origins, each scheme://host[:port] (no path)."""
    origins = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            raise ValueError(f"CORS_ALLOWED_ORIGINS: {item!r} is not an origin like https://app.example.com")
        origins.append(item.rstrip("/"))
    return tuple(origins)


def access_log_from_env() -> str:
    """ENVOY_ACCESS_LOG (default `errors`): one of ACCESS_LOG_CHOICES."""
    value = os.environ.get("ENVOY_ACCESS_LOG", "").strip().lower() or "errors"
    if value not in ACCESS_LOG_CHOICES:
        raise ValueError(f"ENVOY_ACCESS_LOG: {value!r} is not one of {', '.join(ACCESS_LOG_CHOICES)}")
    return value


def origins_from_env(default: Iterable[str]) -> tuple[str, ...]:
    value = os.environ.get("CORS_ALLOWED_ORIGINS")
    return tuple(default) if value is None else parse_origins(value)


# ---- values derived from the parameters and the descriptors (rendered into the template)

# Envoy's own errors, for native gRPC callers: reason -> (gRPC code, message). The same reasons and
# domain as the JSON bodies REST callers get; the code is the same too, except ROUTE_NOT_FOUND,
# which is UNIMPLEMENTED over gRPC (what gRPC clients and tools expect for an unknown method).
# The message is fixed (grpc-message must equal the Status's message).
GRPC_ERRORS: dict[str, tuple[int, str]] = {
    "TOKEN_MISSING": (16, "a bearer access token is required"),
    "TOKEN_INVALID": (16, "the access token was refused"),
    "INVALID_REQUEST": (3, "the request is not valid"),
    "ROUTE_NOT_FOUND": (12, "no such service or method at this address"),
    "METHOD_NOT_ALLOWED": (12, "no such service or method at this address"),
    "REQUEST_TIMEOUT": (4, "the request did not arrive in time"),
    "REQUEST_TOO_LARGE": (3, "the request message is too large"),
    "URI_TOO_LONG": (3, "the request path is too long"),
    "HEADERS_TOO_LARGE": (3, "the request metadata is too large"),
    "RATE_LIMITED": (8, "too many requests; slow down"),
    "UPSTREAM_TIMEOUT": (4, "the service did not answer in time"),
    "UPSTREAM_UNAVAILABLE": (14, "the service is unavailable; try again shortly"),
    "GATEWAY_ERROR": (2, "the gateway could not handle the request"),
}

# Which local replies each reason is (first match wins), as a filter in flow style.
_GRPC_ERROR_FILTERS: tuple[tuple[str, str], ...] = (
    ("TOKEN_MISSING", "response.code_details == 'jwt_authn_access_denied{Jwt_is_missing}'"),
    ("TOKEN_INVALID", "response.code_details.startsWith('jwt_authn_access_denied')"),
    ("INVALID_REQUEST", "EQ 400"),
    ("ROUTE_NOT_FOUND", "EQ 404"),
    ("METHOD_NOT_ALLOWED", "EQ 405"),
    ("REQUEST_TIMEOUT", "EQ 408"),
    ("REQUEST_TOO_LARGE", "EQ 413"),
    ("URI_TOO_LONG", "EQ 414"),
    ("HEADERS_TOO_LARGE", "EQ 431"),
    ("RATE_LIMITED", "EQ 429"),
    ("UPSTREAM_TIMEOUT", "EQ 504"),
    ("UPSTREAM_UNAVAILABLE", "GE 502"),
    ("GATEWAY_ERROR", "GE 400"),
)


def grpc_status_details(reason: str) -> str:
    """grpc-status-details-bin for `reason`: a google.rpc.Status, base64 (gRPC's binary header)."""
    code, message = GRPC_ERRORS[reason]
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="envoy"))
    details = [info]
    if reason == "RATE_LIMITED":
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1)))
        details.append(retry)
    status = status_pb2.Status(code=code, message=message, details=details)
    return base64.b64encode(status.SerializeToString()).decode()


def _grpc_local_reply_mappers() -> str:
    indent = " " * 20
    out = []
    for reason, match in _GRPC_ERROR_FILTERS:
        code, message = GRPC_ERRORS[reason]
        if match.startswith(("EQ ", "GE ")):
            op, value = match.split()
            kind = (
                f"{{ status_code_filter: {{ comparison: {{ op: {op}, value: "
                f"{{ default_value: {value}, runtime_key: local_reply.grpc.{op.lower()}{value} }} }} }} }}"
            )
        else:
            kind = (
                "{ extension_filter: { name: envoy.access_loggers.extension_filters.cel, typed_config: "
                '{ "@type": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.'
                f"ExpressionFilter, expression: {json.dumps(match)} }} }} }}"
            )
        out += [
            f"- filter:  # {reason}",
            "    and_filter:",
            "      filters:",
            "        - { header_filter: { header: "
            "{ name: content-type, string_match: { prefix: application/grpc } } } }",
            "        - { header_filter: { header: "
            "{ name: x-envoy-original-path, present_match: true, invert_match: true } } }",
            f"        - {kind}",
            "  headers_to_add:",
            f'    - {{ header: {{ key: grpc-status, value: "{code}" }}, '
            "append_action: OVERWRITE_IF_EXISTS_OR_ADD }",
            f'    - {{ header: {{ key: grpc-status-details-bin, value: "{grpc_status_details(reason)}" }}, '
            "append_action: OVERWRITE_IF_EXISTS_OR_ADD }",
            "  body_format_override:",
            f"    text_format_source: {{ inline_string: {json.dumps(message)} }}",
        ]
    return "\n".join(indent + line for line in out)


def rest_paths() -> dict[str, list[str]]:
    """Every REST path of the public services (variables written `{}`) -> its HTTP methods, in
    annotation order."""
    paths: dict[str, list[str]] = {}
    for name in PUBLIC_MODULES:
        for service in importlib.import_module(name).DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                rule = method.GetOptions().Extensions[annotations_pb2.http]
                for binding in (rule, *rule.additional_bindings):
                    verb = binding.WhichOneof("pattern")
                    if verb and verb != "custom":
                        # /users/{id} and /users/{user.id} are one path: key by the shape.
                        shape = re.sub(r"\{[^}]*\}", "{}", getattr(binding, verb))
                        methods = paths.setdefault(shape, [])
                        if verb.upper() not in methods:
                            methods.append(verb.upper())
    return paths


# The paths Envoy answers itself (direct routes in envoy/envoy.yaml.tmpl) and their methods; any
# other method on them is routed to a 405.
EDGE_PATHS: dict[str, list[str]] = {
    path: ["GET", "HEAD"]
    for path in (
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/docs",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
    )
}

# What a wrong method on a known path can get before the mapper: the transcoder's 404, the edge
# paths' 405 route, or (method QUERY without a content-type) the HTTP codec's own 400, which Envoy
# gives before any route is chosen.
_WRONG_METHOD = (
    "{ or_filter: { filters: ["
    "{ status_code_filter: { comparison: { op: EQ, "
    "value: { default_value: 404, runtime_key: local_reply.405 } } } }, "
    "{ status_code_filter: { comparison: { op: EQ, "
    "value: { default_value: 405, runtime_key: local_reply.405 } } } }, "
    "{ extension_filter: { name: envoy.access_loggers.extension_filters.cel, typed_config: "
    '{ "@type": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter, '
    "expression: \"response.code_details == 'query_missing_content_type'\" } } } ] } }"
)


def _method_not_allowed_mappers() -> str:
    """One local-reply mapper per REST path and per path Envoy answers itself: a wrong method on
    a path that exists becomes 405 with Allow (and the JSON error METHOD_NOT_ALLOWED)."""
    indent = " " * 20
    out = []
    for template, methods in {**EDGE_PATHS, **rest_paths()}.items():
        parts = re.split(r"(\{[^}]*\})", template)
        # A variable ends at a ':' too, so /users/{id}:verb is not also /users/{id}.
        regex = "".join("[^/?:]+" if part.startswith("{") else re.escape(part) for part in parts) + r"(\?.*)?"
        out += [
            f"- filter:  # {template}",
            "    and_filter:",
            "      filters:",
            f"        - {_WRONG_METHOD}",
            '        - { header_filter: { header: { name: ":path", string_match: '
            f"{{ safe_regex: {{ regex: {json.dumps(regex)} }} }} }} }} }}",
            "  status_code: 405",
            f'  headers_to_add: [{{ header: {{ key: allow, value: "{", ".join(methods)}" }} }}]',
            "  body_format_override:",
            "    content_type: application/json",
            "    json_format:",
            "      code: 12",
            '      message: "%REQ(:METHOD)% is not allowed on this path; see the Allow header"',
            "      details:",
            '        - { "@type": type.googleapis.com/google.rpc.ErrorInfo, '
            "reason: METHOD_NOT_ALLOWED, domain: envoy }",
        ]
    return "\n".join(indent + line for line in out)


def _cors_matchers(origins: Iterable[str]) -> str:
    return "[" + ", ".join(f"{{ exact: {json.dumps(origin)} }}" for origin in origins) + "]"


def template_values(params: EnvoyParams) -> dict[str, str]:
    """Every placeholder's text: the parameters, and what is derived from them and the protos."""
    values = {key: str(value) for key, value in asdict(params).items() if key not in SECTION_SWITCHES}
    del values["cors_allowed_origins"]
    values["strict_lua"] = strict_lua()
    values["cors_allow_origin_matchers"] = _cors_matchers(params.cors_allowed_origins)
    values["method_not_allowed_mappers"] = _method_not_allowed_mappers()
    values["grpc_local_reply_mappers"] = _grpc_local_reply_mappers()
    values["upstream_unavailable_message"] = GRPC_ERRORS["UPSTREAM_UNAVAILABLE"][1]
    values["upstream_unavailable_details"] = grpc_status_details("UPSTREAM_UNAVAILABLE")
    del values["access_log"]
    values["access_log_filter"] = {
        "errors": _ACCESS_LOG_ERRORS_FILTER,
        "all": "filter: null",
        # never true: no HTTP status reaches 1000
        "off": "filter: { status_code_filter: { comparison: { op: GE, value: "
        "{ default_value: 1000, runtime_key: access_log.off } } } }",
    }[params.access_log]
    values["console_pages_regex"] = json.dumps("/(" + "|".join(re.escape(p) for p in CONSOLE_PAGES) + ")")
    return values


def render(params: EnvoyParams) -> str:
    """The config text for `params`; fails on any placeholder the parameters do not fill."""
    lines, dropping = [], False
    sections = {
        "strict-edge": params.strict_edge,
        "tracing": params.tracing,
        "console": bool(params.console_dir),
    }
    for line in TEMPLATE.read_text().splitlines(keepends=True):
        marker = re.match(r"## ([a-z-]+):(begin|end)", line)
        if marker and marker.group(1) in sections:
            dropping = marker.group(2) == "begin" and not sections[marker.group(1)]
        elif not line.startswith("##") and not dropping:
            lines.append(line)
    body = string.Template("".join(lines)).substitute(template_values(params))
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
    descriptor_set: Path = DESCRIPTOR_SET,
    openapi: Path = OPENAPI,
    docs_dir: Path = DOCS_DIR,
    console_dir: Path | None = None,
) -> list[Path]:
    """What `make generate` writes for kustomize's Envoy ConfigMaps: the KUBERNETES rendering and
    copies of the descriptor set and the OpenAPI document, side by side in k8s/base/envoy/, and
    the /docs page in k8s/base/envoy/docs/, and the web console in k8s/base/envoy/console/ (CI
    checks them for drift)."""
    config = write(kubernetes_params(), KUBERNETES_CONFIG)
    KUBERNETES_DESCRIPTOR_SET.write_bytes(descriptor_set.read_bytes())
    KUBERNETES_OPENAPI.write_bytes(openapi.read_bytes())
    KUBERNETES_DOCS_DIR.mkdir(parents=True, exist_ok=True)
    docs = []
    for name in DOCS_FILES:
        target = KUBERNETES_DOCS_DIR / name
        target.write_bytes((docs_dir / name).read_bytes())
        docs.append(target)
    if console_dir is not None:  # the web console, for the envoy-console ConfigMap
        KUBERNETES_CONSOLE_DIR.mkdir(parents=True, exist_ok=True)
        for name in CONSOLE_FILES:
            target = KUBERNETES_CONSOLE_DIR / name
            target.write_bytes((console_dir / name).read_bytes())
            docs.append(target)
    return [config, KUBERNETES_DESCRIPTOR_SET, KUBERNETES_OPENAPI, *docs]


def main(argv: list[str]) -> None:
    which = argv[0] if argv else "local"
    if which not in ("local", "kubernetes"):
        sys.exit("usage: python -m envoy.render [local|kubernetes]")
    if which == "local":
        params = local_params(cors_allowed_origins=origins_from_env(DEV_CORS_ORIGINS))
    else:
        params = replace(
            kubernetes_params(cors_allowed_origins=origins_from_env(())), access_log=access_log_from_env()
        )
    sys.stdout.write(render(with_tracing_from_env(params)))


def with_tracing_from_env(params: EnvoyParams) -> EnvoyParams:
    """`params` with Envoy's spans sent to OTEL_EXPORTER_OTLP_ENDPOINT (http://host:port, OTLP/gRPC)
    when that variable is set, as the services read it; unchanged otherwise."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not endpoint:
        return params
    host, port = otlp_target(endpoint)
    return replace(params, tracing=True, otlp_host=host, otlp_port=port)


def otlp_target(endpoint: str) -> tuple[str, int]:
    """(host, port) of an OTLP/gRPC endpoint such as http://collector:4317."""
    parts = urlsplit(endpoint.strip() if "://" in endpoint else f"http://{endpoint.strip()}")
    if not parts.hostname:
        raise ValueError(f"OTEL_EXPORTER_OTLP_ENDPOINT: {endpoint!r} is not like http://collector:4317")
    return parts.hostname, parts.port or 4317


if __name__ == "__main__":
    main(sys.argv[1:])
