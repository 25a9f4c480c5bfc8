"""Envoy's config: one template, two renderings (local and Kubernetes), both accepted by the real
Envoy binary (`envoy --mode validate`), and the committed Kubernetes rendering up to date."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.rpc import error_details_pb2, status_pb2

from devstack.stack import venv_tool
from envoy import render as envoy
from services.kit.server import MAX_MESSAGE_BYTES, MAX_METADATA_BYTES

ROOT = Path(__file__).resolve().parents[2]


def validate(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            venv_tool("envoy"),
            "--mode",
            "validate",
            "-c",
            str(config),
            "--disable-hot-restart",
            "-l",
            "warning",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_valid(config: Path) -> None:
    result = validate(config)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"configuration '{config}' OK" in output
    assert "deprecated" not in output.lower(), output


def test_local_rendering_is_valid(tmp_path: Path) -> None:
    config = envoy.write(envoy.local_params(listen_port=18080, admin_port=19901), tmp_path / "envoy.yaml")
    assert_valid(config)


def test_kubernetes_rendering_is_valid(tmp_path: Path) -> None:
    # The exact committed file; only the descriptor path points at this checkout instead of the
    # ConfigMap mount, which does not exist here.
    committed = envoy.KUBERNETES_CONFIG.read_text()
    assert "/etc/envoy/pinexa.pb" in committed
    config = tmp_path / "envoy.yaml"
    config.write_text(to_checkout(committed))
    assert_valid(config)


def to_checkout(kubernetes_config: str) -> str:
    """The Kubernetes rendering with the ConfigMap mounts (descriptor set, OpenAPI document, /docs
    files) pointed at their copies in this checkout, which Envoy reads at start."""
    return (
        kubernetes_config.replace("/etc/envoy-docs/openapi.json", str(envoy.KUBERNETES_OPENAPI))
        .replace("/etc/envoy-docs/", f"{envoy.KUBERNETES_DOCS_DIR}/")
        .replace("/etc/envoy-console/", f"{envoy.KUBERNETES_CONSOLE_DIR}/")
        .replace("/etc/envoy/pinexa.pb", str(envoy.DESCRIPTOR_SET))
    )


def test_committed_kubernetes_files_match_the_template() -> None:
    assert envoy.KUBERNETES_CONFIG.read_text() == envoy.render(envoy.kubernetes_params()), (
        "k8s/base/envoy/envoy.yaml is stale: run `make generate`"
    )
    assert envoy.KUBERNETES_DESCRIPTOR_SET.read_bytes() == envoy.DESCRIPTOR_SET.read_bytes(), (
        "k8s/base/envoy/pinexa.pb is stale: run `make generate`"
    )
    assert envoy.KUBERNETES_OPENAPI.read_bytes() == envoy.OPENAPI.read_bytes(), (
        "k8s/base/envoy/openapi.json is stale: run `make generate`"
    )
    for name in envoy.DOCS_FILES:
        assert (envoy.KUBERNETES_DOCS_DIR / name).read_bytes() == (envoy.DOCS_DIR / name).read_bytes(), (
            f"k8s/base/envoy/docs/{name} is stale: run `make generate`"
        )
    for name in envoy.CONSOLE_FILES:
        assert (envoy.KUBERNETES_CONSOLE_DIR / name).exists(), (
            f"k8s/base/envoy/console/{name}: run `make generate`"
        )


def test_the_two_renderings_differ_only_where_the_environments_do() -> None:
    # The console is served where it is built (make run) or mounted (envoy-console).
    local = yaml.safe_load(
        envoy.render(envoy.local_params(console_dir="CONSOLE"))
        .replace(str(envoy.OPENAPI), "OPENAPI")
        .replace(str(envoy.DOCS_DIR), "DOCS")
    )
    # Where the OpenAPI document and the /docs files are differs too (checkout or ConfigMap mount).
    kubernetes = yaml.safe_load(
        envoy.render(envoy.kubernetes_params())
        .replace("/etc/envoy-docs/openapi.json", "OPENAPI")
        .replace("/etc/envoy-docs", "DOCS")
        .replace("/etc/envoy-console", "CONSOLE")
    )

    def listener(config: dict[str, object]) -> dict[str, object]:
        return config["static_resources"]["listeners"][0]  # type: ignore[index, no-any-return]

    def clusters(config: dict[str, object]) -> dict[str, dict[str, object]]:
        return {c["name"]: c for c in config["static_resources"]["clusters"]}  # type: ignore[index]

    assert listener(local)["address"] == {"socket_address": {"address": "127.0.0.1", "port_value": 8080}}
    assert listener(kubernetes)["address"] == {"socket_address": {"address": "0.0.0.0", "port_value": 8080}}
    for config in (local, kubernetes):
        assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    for name, port in {"auth": 50051, "users": 50052, "data": 50053}.items():
        assert clusters(local)[name]["type"] == "STATIC"
        assert clusters(kubernetes)[name]["type"] == "STRICT_DNS"
        local_address = clusters(local)[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]  # type: ignore[index]
        k8s_address = clusters(kubernetes)[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]  # type: ignore[index]
        assert local_address["endpoint"]["address"]["socket_address"] == {
            "address": "127.0.0.1",
            "port_value": port,
        }
        assert k8s_address["endpoint"]["address"]["socket_address"] == {"address": name, "port_value": port}
    # The routes, filters and local replies are the same text in both, but for the CORS origins
    # (the dev default locally, none in Kubernetes).
    origins = {}
    for name, config in (("local", local), ("kubernetes", kubernetes)):
        vhost = listener(config)["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
            "virtual_hosts"
        ][0]  # type: ignore[index]
        origins[name] = vhost["typed_per_filter_config"]["envoy.filters.http.cors"].pop(
            "allow_origin_string_match"
        )
    assert origins == {"local": [{"exact": o} for o in envoy.DEV_CORS_ORIGINS], "kubernetes": []}
    assert (
        listener(local)["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
        == (  # type: ignore[index]
            listener(kubernetes)["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]  # type: ignore[index]
        )
    )


def test_internal_services_have_no_route_and_no_transcoding() -> None:
    text = envoy.render(envoy.local_params())
    assert "Internal" not in "".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ), "an internal service is named in the config"
    config = yaml.safe_load(text)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    upstream = {
        r["match"].get("prefix") or r["match"].get("path"): r["route"]
        for r in routes
        if r.get("route", {}).get("cluster") not in (None, "unrouted")
    }
    assert set(upstream) == {
        "/grpc.reflection.v1alpha.ServerReflection/",
        "/pinexa.auth.v1.AuthService/Login",
        "/pinexa.auth.v1.AuthService/",
        "/pinexa.users.v1.UserService/",
        "/pinexa.data.v1.DataService/",
    }
    # Reflection reaches only the edge reflection (public services), never a service's own.
    assert upstream["/grpc.reflection.v1alpha.ServerReflection/"]["prefix_rewrite"] == (
        "/pinexa.edge.v1alpha.ServerReflection/"
    )
    direct = [r["match"] for r in routes if "direct_response" in r]
    paths = [m["path"] for m in direct if "path" in m]
    assert paths == list(envoy.EDGE_PATHS)
    # Each answers GET and HEAD; one regex route after them answers every other method (405).
    for match in direct:
        if "path" in match:
            assert match["headers"] == [
                {"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}
            ]
    others = re.compile(next(m["safe_regex"]["regex"] for m in direct if "safe_regex" in m))
    assert all(others.fullmatch(path) for path in envoy.EDGE_PATHS)
    assert not others.fullmatch("/docsx") and not others.fullmatch("/api/v1/users")
    assert [m.get("prefix") for m in direct if "prefix" in m] == ["/"]
    unrouted = next(c for c in config["static_resources"]["clusters"] if c["name"] == "unrouted")
    assert unrouted["load_assignment"] == {"cluster_name": "unrouted"}  # no endpoints
    transcoder = next(
        f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.grpc_json_transcoder"
    )
    assert transcoder["typed_config"]["services"] == [
        "pinexa.auth.v1.AuthService",
        "pinexa.users.v1.UserService",
        "pinexa.data.v1.DataService",
    ]


def test_rendering_refuses_an_unfilled_placeholder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    template = tmp_path / "t.tmpl"
    template.write_text("## a comment\nport: ${listen_port}\nother: ${not_a_parameter}\n")
    monkeypatch.setattr(envoy, "TEMPLATE", template)
    with pytest.raises(KeyError, match="not_a_parameter"):
        envoy.render(envoy.local_params())


def test_every_parameter_is_used_by_the_template() -> None:
    used = set(re.findall(r"\$\{(\w+)\}", envoy.TEMPLATE.read_text()))
    declared = set(envoy.EnvoyParams.__dataclass_fields__)
    assert declared - used == envoy.SECTION_SWITCHES | envoy.RENDERED_INDIRECTLY, "parameters never used"
    assert used - declared == envoy.COMPUTED_PLACEHOLDERS, "placeholders no parameter fills"


def test_the_strict_edge_filter_runs_before_the_transcoder_in_both_renderings() -> None:
    for params in (envoy.local_params(), envoy.kubernetes_params()):
        config = yaml.safe_load(envoy.render(params))
        hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        names = [f["name"] for f in hcm["http_filters"]]
        assert names.index("envoy.filters.http.lua") < names.index("envoy.filters.http.grpc_json_transcoder")
        lua = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.lua")
        code = lua["typed_config"]["default_source_code"]["inline_string"]
        assert (
            code.startswith("-- GENERATED by scripts/edge_schema.py") and "function envoy_on_request" in code
        )
    off = yaml.safe_load(envoy.render(envoy.local_params(strict_edge=False)))
    assert "envoy.filters.http.lua" not in str(off)


def test_the_committed_edge_schema_matches_the_descriptor_set() -> None:
    sys.path.insert(0, str(envoy.ROOT / "scripts"))
    try:
        import edge_schema
    finally:
        sys.path.pop(0)
    committed = (envoy.ROOT / "generated" / "edge_schema.lua").read_text()
    assert edge_schema.render(envoy.DESCRIPTOR_SET) == committed, "run make generate"


def test_the_services_accept_every_request_envoy_forwards() -> None:
    """Envoy's limits are below the services': what Envoy accepts is never refused upstream
    for its size. Upstream metadata is the client's headers (path and query included) plus a
    copy of the path in x-envoy-original-path plus what Envoy adds (a few hundred bytes)."""
    for params in (envoy.local_params(), envoy.kubernetes_params()):
        forwarded = params.max_request_headers_kb * 1024 + params.max_path_bytes + 4096
        assert forwarded <= MAX_METADATA_BYTES
        assert params.max_path_bytes < params.max_request_headers_kb * 1024
        assert params.max_request_bytes + 5 <= MAX_MESSAGE_BYTES


def test_envoys_grpc_errors_are_statuses_with_the_rest_reason() -> None:
    for reason, (code, message) in envoy.GRPC_ERRORS.items():
        raw = base64.b64decode(envoy.grpc_status_details(reason))
        status = status_pb2.Status.FromString(raw)
        assert (status.code, status.message) == (code, message)
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info)
        assert (info.reason, info.domain) == (reason, "envoy")
    # Every reason a gRPC caller can get is one REST callers get too (in a JSON mapper).
    rendered = envoy.render(envoy.local_params())
    for reason in envoy.GRPC_ERRORS:
        assert f"reason: {reason}, domain: envoy" in rendered, reason


def test_cors_origins_come_from_the_environment_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    assert envoy.kubernetes_params().cors_allowed_origins == ()
    assert envoy.local_params().cors_allowed_origins == envoy.DEV_CORS_ORIGINS
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", "https://app.example.com, http://localhost:3000")
    assert envoy.origins_from_env(()) == ("https://app.example.com", "http://localhost:3000")
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", "")
    assert envoy.origins_from_env(envoy.DEV_CORS_ORIGINS) == ()
    for bad in ("app.example.com", "https://app.example.com/path", "ftp://x"):
        with pytest.raises(ValueError, match="CORS_ALLOWED_ORIGINS"):
            envoy.parse_origins(bad)
    assert '{ exact: "https://a.example" }' in envoy.render(
        envoy.kubernetes_params(cors_allowed_origins=["https://a.example"])
    )


@pytest.mark.parametrize("choice", envoy.ACCESS_LOG_CHOICES)
def test_every_access_log_choice_renders_a_valid_config(choice: str, tmp_path: Path) -> None:
    params = envoy.local_params(listen_port=18080, admin_port=19901, access_log=choice)
    assert_valid(envoy.write(params, tmp_path / "envoy.yaml"))


def test_the_access_log_choice_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENVOY_ACCESS_LOG", raising=False)
    assert envoy.local_params().access_log == "errors"  # the default: failures only
    assert "grpc_status_filter: { statuses: [OK], exclude: true }" in envoy.render(envoy.local_params())
    monkeypatch.setenv("ENVOY_ACCESS_LOG", "ALL")
    assert envoy.local_params().access_log == "all"
    assert "filter: null" in envoy.render(envoy.local_params())
    monkeypatch.setenv("ENVOY_ACCESS_LOG", "verbose")
    with pytest.raises(ValueError, match="ENVOY_ACCESS_LOG"):
        envoy.local_params()


SYNTHETIC_PROTO = """
syntax = "proto3";
package t.v1;
import "google/api/annotations.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
service TService {
  rpc Put(PutRequest) returns (Thing) {
    option (google.api.http) = {
      patch: "/v1/things/{thing.id}/x.y" body: "thing"
      additional_bindings { post: "/v1/{name=things/**}:put" body: "*" }
    };
  }
  rpc Get(GetRequest) returns (Thing) { option (google.api.http) = { get: "/v1/things/{id}" }; }
}
message Inner { string some_name = 1; repeated Inner children = 2; }
message Thing {
  string id = 1;
  Inner inner = 2;
  repeated Inner inners = 3;
  map<string, Inner> by_key = 4;
  map<string, string> labels = 5;
  google.protobuf.Struct free = 6;
  google.protobuf.Timestamp when = 7;
  repeated string tags = 8;
}
message PutRequest { Thing thing = 1; string name = 2; bool validate_only = 3; Inner filter = 4; }
message GetRequest { string id = 1; Inner view = 2; repeated Inner many = 3; }
"""


def test_the_edge_schema_covers_what_the_http_annotations_can_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shapes the Pinexa protos do not use yet: sub-template variables, verbs, maps of messages,
    self-referencing and repeated messages, nested query parameters."""
    import google.api.annotations_pb2 as annotations
    import grpc_tools
    from grpc_tools import protoc

    sys.path.insert(0, str(envoy.ROOT / "scripts"))
    try:
        import edge_schema
    finally:
        sys.path.pop(0)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "t.proto").write_text(SYNTHETIC_PROTO)
    includes = [Path(annotations.__file__).resolve().parents[2], Path(grpc_tools.__file__).parent / "_proto"]
    out = tmp_path / "t.pb"
    argv = ["protoc", f"-I{tmp_path}", *(f"-I{p}" for p in includes), "--include_imports"]
    assert protoc.main([*argv, f"--descriptor_set_out={out}", "t/t.proto"]) == 0
    monkeypatch.setattr(edge_schema, "PUBLIC_SERVICES", ("t.v1.TService",))
    lua = edge_schema.render(out)

    thing = re.search(r'\["t\.v1\.Thing"\] = \{([^}]*)\}', lua)
    assert thing is not None
    assert '["byKey"] = "map:t.v1.Inner"' in thing[1] and '["labels"] = 0' in thing[1]
    assert (
        '["free"] = 0' in thing[1] and '["when"] = 1' in thing[1] and '["inners"] = "t.v1.Inner"' in thing[1]
    )
    assert '["children"] = "t.v1.Inner"' in lua
    assert 'pattern = "^/v1/things/[^/]+/x%.y$"' in lua and 'pattern = "^/v1/things/.+:put$"' in lua
    patch = re.search(r'method = "PATCH".*?query = \{([^}]*)\}', lua, re.S)
    assert patch is not None
    assert set(re.findall(r'\["([^"]+)"\]', patch[1])) == {
        "name",
        "validate_only",
        "validateOnly",
        "filter.some_name",
        "filter.someName",
    }
    post = re.search(r'method = "POST".*?body = "t\.v1\.PutRequest", prefix = "", query = \{ *\}', lua, re.S)
    assert post is not None, "body * takes no query parameter"
    get = re.search(r'method = "GET".*?body = nil.*?query = \{([^}]*)\}', lua, re.S)
    assert get is not None and set(re.findall(r'\["([^"]+)"\]', get[1])) == {
        "view.some_name",
        "view.someName",
    }
