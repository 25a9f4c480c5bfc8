"""The OpenAPI 3.1 document (generated/openapi.json, from the protos by `make generate`), served by
the real Envoy at GET /openapi.json with a Swagger UI page at GET /docs, and the REST API fuzzed
against it by schemathesis through the whole stack (issue 8)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from devstack.stack import Stack, venv_tool
from envoy import render as envoy
from services.data.domain import MAX_ATTRIBUTES_DEPTH
from tests.e2e.conftest import Account, error_reason, status_of

REPO = Path(__file__).resolve().parents[2]
DOCUMENT = REPO / "generated" / "openapi.json"
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")
PUBLIC_SERVICES = ["pinexa.auth.v1.AuthService", "pinexa.users.v1.UserService", "pinexa.data.v1.DataService"]
VERBS = {"get", "put", "post", "delete", "patch"}


def document() -> dict[str, Any]:
    return dict(json.loads(DOCUMENT.read_text()))


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The API's operations (each an RPC); Envoy's own health endpoints are not among them."""
    return {
        (verb, path): op
        for path, item in doc["paths"].items()
        for verb, op in item.items()
        if verb in VERBS and "x-grpc-method" in op
    }


def test_envoys_health_endpoints_are_listed_public_with_get_and_head() -> None:
    doc = document()
    edge = {
        (verb, path): op
        for path, item in doc["paths"].items()
        for verb, op in item.items()
        if "x-grpc-method" not in op
    }
    assert set(edge) == {(verb, path) for path in ("/healthz", "/readyz") for verb in ("get", "head")}
    assert set(edge) == {
        (verb.lower(), path)
        for path, verbs in envoy.EDGE_PATHS.items()
        for verb in verbs
        if path in ("/healthz", "/readyz")
    }
    for op in edge.values():
        assert op["security"] == []
    readiness = doc["components"]["schemas"]["pinexa.edge.Readiness"]
    assert set(readiness["properties"]["upstreams"]["properties"]) == {"auth", "users", "data"}
    assert set(edge[("get", "/readyz")]["responses"]) >= {"200", "503"}


def http_bindings() -> set[tuple[str, str, str]]:
    """(verb, OpenAPI path, gRPC method path) of every google.api.http binding Envoy transcodes."""
    fds = descriptor_pb2.FileDescriptorSet.FromString((REPO / "generated" / "pinexa.pb").read_bytes())
    found = set()
    for file in fds.file:
        for service in file.service:
            name = f"{file.package}.{service.name}"
            if name not in PUBLIC_SERVICES:
                continue
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                for binding in [rule, *rule.additional_bindings]:
                    verb = binding.WhichOneof("pattern")
                    path = re.sub(r"\{(?:[^}.]+\.)*([^}.]+)\}", r"{\1}", getattr(binding, verb))
                    found.add((verb, path, f"/{name}/{method.name}"))
    return found


# -- the document ------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    validate(doc, cls=OpenAPIV31SpecValidator)


def test_every_http_binding_is_an_operation_and_nothing_else_is() -> None:
    ops = operations(document())
    bindings = http_bindings()
    assert {(verb, path) for verb, path, _ in bindings} == set(ops)
    for verb, path, rpc in bindings:
        assert ops[(verb, path)]["x-grpc-method"] == rpc
    text = DOCUMENT.read_text()
    assert "InternalService" not in text and "VerifyCredentials" not in text and "PurgeUserData" not in text


def test_proto_json_mapping() -> None:
    schemas = document()["components"]["schemas"]
    user = schemas["pinexa.users.v1.User"]["properties"]
    # Proto field names, as Envoy prints them (preserve_proto_field_names).
    assert {"display_name", "created_at", "updated_at"} <= set(user)
    assert user["created_at"]["type"] == "string" and user["created_at"]["format"] == "date-time"
    assert user["created_at"]["readOnly"] is True and user["password"]["writeOnly"] is True
    assert user["display_name"]["description"].startswith("A free-form name")  # the proto comment
    assert schemas["pinexa.users.v1.User.Role"]["enum"] == ["USER", "ADMIN"]
    item = schemas["pinexa.data.v1.Item"]["properties"]
    assert item["attributes"]["type"] == "object"  # google.protobuf.Struct
    assert schemas["pinexa.data.v1.ListItemsResponse"]["properties"]["items"]["type"] == "array"
    login = schemas["pinexa.auth.v1.LoginRequest"]
    assert login["required"] == ["username", "password"] and login["additionalProperties"] is False
    assert schemas["pinexa.auth.v1.LoginResponse"]["properties"]["expires_in"]["type"] == "integer"


def test_security_follows_the_jwt_authn_rules() -> None:
    ops = operations(document())
    public = {key for key, op in ops.items() if op["security"] == []}
    optional = {key for key, op in ops.items() if op["security"] == [{}, {"bearerAuth": []}]}
    assert public == {
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/login:mfa"),
        ("post", "/api/v1/auth/refresh"),
        ("get", "/.well-known/jwks.json"),
        ("post", "/api/v1/users"),
        ("post", "/api/signup"),
        ("post", "/api/v1/auth/email:verify"),
        ("post", "/api/v1/auth/password:reset"),
        ("post", "/api/v1/auth/password:confirmReset"),
    }
    assert optional == {("post", "/api/v1/auth/logout")}
    for key, op in ops.items():
        if key not in public | optional:
            assert op["security"] == [{"bearerAuth": []}], key


def test_errors_are_google_rpc_status_with_their_reasons() -> None:
    doc = document()
    status = doc["components"]["schemas"]["google.rpc.Status"]
    details = status["properties"]["details"]["items"]["oneOf"]
    assert [d["$ref"].rsplit("/", 1)[1] for d in details] == [
        "google.rpc.ErrorInfo",
        "google.rpc.BadRequest",
        "google.rpc.RetryInfo",
    ]
    info = doc["components"]["schemas"]["google.rpc.ErrorInfo"]
    assert info["properties"]["@type"] == {"const": "type.googleapis.com/google.rpc.ErrorInfo"}
    responses = doc["components"]["responses"]
    assert "`ETAG_MISMATCH`" in responses["Error409"]["description"]
    assert "`TOKEN_MISSING`" in responses["Error401"]["description"]
    assert "Retry-After" in responses["Error429"]["headers"]
    # Envoy's limits, with the values it enforces (read from its config, not restated).
    assert "larger than 2 MiB" in responses["Error413"]["description"]
    assert "longer than 8 KiB" in responses["Error414"]["description"]
    assert "larger than 32 KiB" in responses["Error431"]["description"]
    timeout = envoy.kubernetes_params().request_timeout.removesuffix("s")
    assert f"within {timeout} s" in responses["Error408"]["description"]
    assert "`METHOD_NOT_ALLOWED`" in responses["Error"]["description"]
    for op in operations(doc).values():
        for code in ("400", "408", "413", "414", "431"):
            assert op["responses"][code] == {"$ref": f"#/components/responses/Error{code}"}
        assert "default" in op["responses"]


def test_every_error_reason_the_code_can_give_is_listed() -> None:
    """A reason added to a service or to Envoy's local replies must reach the document (the
    internal services' INTERNAL_ONLY is never seen at the edge)."""
    sources = [*sorted((REPO / "services").rglob("*.py")), *sorted((REPO / "envoy").iterdir())]
    pattern = re.compile(r'(?:reason=|default_reason = |reason: |"reason":|_reject\()\s*"?([A-Z][A-Z_]+)"?')
    raised = {reason for source in sources for reason in pattern.findall(source.read_text())}
    assert {"ETAG_MISMATCH", "TOKEN_EXPIRED", "ROUTE_NOT_FOUND", "INVALID_FILTER"} <= raised
    listed = set(re.findall(r"`([A-Z][A-Z_]+)`", json.dumps(document()["components"]["responses"])))
    assert raised - {"INTERNAL_ONLY"} <= listed, raised - listed


def _load_generator() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("pinexa_openapi_generator", REPO / "scripts" / "openapi.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROBE_PROTO = """
syntax = "proto3";
package probe.v1;
import "google/api/annotations.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

// ProbeService exercises the mapping.
service ProbeService {
  // Put stores a thing.
  rpc Put(Thing) returns (Thing) {
    option (google.api.http) = {post: "/v1/things/{name}" body: "*"};
  }
  // Find looks things up.
  rpc Find(FindRequest) returns (Thing) {
    option (google.api.http) = {get: "/v1/things"};
  }
}

// Thing has one field of every kind.
message Thing {
  // Its name.
  string name = 1;
  int64 big = 2;
  uint32 small = 3;
  double ratio = 4;
  bytes blob = 5;
  google.protobuf.Duration ttl = 6;
  google.protobuf.Timestamp at = 7;
  google.protobuf.FieldMask mask = 8;
  google.protobuf.Struct doc = 9;
  google.protobuf.Value any_json = 10;
  google.protobuf.Int64Value maybe_big = 11;
  map<string, int64> counts = 12;
  repeated string tags = 13;
  oneof choice {
    string text = 14;
    Inner inner = 15;
  }
  Kind kind = 16;
}

// Inner is nested.
message Inner {
  int32 n = 1;
}

// Kind of thing.
enum Kind {
  KIND_UNSPECIFIED = 0;
  // A small one.
  SMALL = 1;
}

message FindRequest {
  Inner where = 1;
  repeated Kind kinds = 2;
}
"""


def test_the_documented_attribute_nesting_is_what_the_data_service_takes(
    client: httpx.Client, account: Account
) -> None:
    # JSON Schema has no depth limit, so the document unrolls the attribute value schema; it must
    # stop where the service does (schemathesis once sent a valid-looking 9-deep body and got 400).
    item = Draft202012Validator({**document(), "$ref": "#/components/schemas/pinexa.data.v1.Item"})

    def nested(depth: int, *, arrays: bool) -> dict[str, Any]:
        """Attributes whose deepest object or array is at `depth` (the attributes are level 1)."""
        value: Any = "leaf"
        for level in range(depth, 1, -1):
            value = [value] if arrays and level % 2 == 0 else {"k": value}
        return {"k": value}

    for depth in (1, 2, MAX_ATTRIBUTES_DEPTH, MAX_ATTRIBUTES_DEPTH + 1):
        for arrays in (False, True):
            body = {"title": "nested", "attributes": nested(depth, arrays=arrays)}
            fits = depth <= MAX_ATTRIBUTES_DEPTH
            assert item.is_valid(body) is fits, body
            response = client.post("/api/v1/data", json=body, headers=account.headers)
            assert response.status_code == (200 if fits else 400), (body, response.text)


def test_the_generator_maps_every_proto3_json_form(tmp_path: Path) -> None:
    """Types the Pinexa protos do not use yet, through a probe proto."""
    generator = _load_generator()
    import grpc_tools

    (tmp_path / "probe.proto").write_text(PROBE_PROTO)
    googleapis = Path(annotations_pb2.__file__).resolve().parents[2]
    includes = [f"-I{tmp_path}", f"-I{googleapis}", f"-I{Path(grpc_tools.__file__).parent / '_proto'}"]
    desc = generator.Descriptors(
        generator.compile_descriptors(includes, ["probe.proto", "google/rpc/error_details.proto"])
    )
    generator.PUBLIC_SERVICES = ["probe.v1.ProbeService"]  # a module of its own: nothing to restore
    doc = generator.build(desc, yaml.safe_load(envoy.render(envoy.kubernetes_params())), version="0")
    validate(doc, cls=OpenAPIV31SpecValidator)
    thing = doc["components"]["schemas"]["probe.v1.Thing"]
    props = thing["properties"]
    assert props["name"]["description"] == "Its name."
    assert props["big"]["type"] == "string" and props["big"]["format"] == "int64"
    assert props["small"] == {"type": "integer", "format": "uint32", "minimum": 0}
    assert props["ratio"]["type"] == "number"
    assert props["blob"] == {"type": "string", "contentEncoding": "base64"}
    assert props["ttl"]["type"] == "string" and re.fullmatch(props["ttl"]["pattern"], "1.5s")
    assert props["at"]["format"] == "date-time"
    assert props["mask"]["type"] == "string"
    assert props["doc"] == {"type": "object", "additionalProperties": True}
    assert props["any_json"] == {}
    assert props["maybe_big"]["type"] == ["string", "null"]
    assert props["counts"]["type"] == "object"
    assert props["counts"]["additionalProperties"]["format"] == "int64"
    # Strings in requests refuse C0 controls and DEL, as the services do.
    assert props["tags"] == {"type": "array", "items": {"type": "string", "pattern": generator._TEXT}}
    assert props["counts"]["propertyNames"] == {"pattern": generator._TEXT}
    assert props["inner"] == {"$ref": "#/components/schemas/probe.v1.Inner"}
    assert thing["allOf"] == [{"not": {"required": ["text", "inner"]}}]
    assert doc["components"]["schemas"]["probe.v1.Kind"]["enum"] == ["SMALL"]
    put = doc["paths"]["/v1/things/{name}"]["post"]
    assert [(p["name"], p["in"]) for p in put["parameters"]] == [("name", "path")]
    # body "*" minus the path field
    assert "name" not in put["requestBody"]["content"]["application/json"]["schema"]["properties"]
    find = doc["paths"]["/v1/things"]["get"]
    assert [(p["name"], p["in"]) for p in find["parameters"]] == [("where.n", "query"), ("kinds", "query")]
    assert "requestBody" not in find


# -- served by Envoy ---------------------------------------------------------------------------


@pytest.mark.e2e
def test_envoy_serves_the_committed_document_without_a_token(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == DOCUMENT.read_bytes()


@pytest.mark.e2e
def test_the_paths_envoy_answers_itself_take_get_and_head_only(client: httpx.Client) -> None:
    """Another method is 405 with Allow, as on the API's own paths (schemathesis's
    unsupported_method check holds the API to it); HEAD is the GET without a body."""
    for path in envoy.EDGE_PATHS:
        for method in ("POST", "DELETE", "OPTIONS", "PROPFIND"):
            response = client.request(method, path)
            assert response.status_code == 405, (method, path)
            assert response.headers["allow"] == "GET, HEAD", (method, path)
            assert error_reason(status_of(response)) == "METHOD_NOT_ALLOWED", (method, path)
            assert "x-request-id" in response.headers
        head = client.head(path)
        assert head.status_code == 200 and head.content == b"", path
        assert "x-request-id" in head.headers
    # The document is public and the same for everyone: it is not behind CORS, and not exposed to
    # other origins either (the CORS filter ignores direct responses; README "Browsers").
    cross = client.get("/openapi.json", headers={"origin": "http://localhost:5173"})
    assert cross.status_code == 200 and "access-control-allow-origin" not in cross.headers


@pytest.mark.e2e
def test_methods_the_http_parser_does_not_know_get_405_on_a_known_path(client: httpx.Client) -> None:
    """QUERY (which Envoy refuses without a content-type before routing) and a made-up method reach
    the 405 mappers like any other; on an unknown path QUERY gets a clear 400."""
    for method, headers in (("QUERY", {}), ("QUERY", {"content-type": "application/json"}), ("FROB", {})):
        for path, allow in (("/api/profile", "GET"), ("/openapi.json", "GET, HEAD")):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 405, (method, headers, path)
            assert response.headers["allow"] == allow
            assert error_reason(status_of(response)) == "METHOD_NOT_ALLOWED"
    response = client.request("QUERY", "/no/such/path")
    assert response.status_code == 400
    body = status_of(response)
    assert (
        error_reason(body) == "INVALID_REQUEST" and body["message"] == "a QUERY request needs a content-type"
    )


@pytest.mark.e2e
def test_docs_page_loads_only_packaged_files(client: httpx.Client) -> None:
    import swagger_ui

    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in page.text and '"/openapi.json"' in page.text
    references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(references) == ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"]
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    static = Path(swagger_ui.__file__).resolve().parent / "static"
    for reference in references:
        asset = client.get(reference, headers={"accept-encoding": "gzip"})
        assert asset.status_code == 200, reference
        assert asset.headers["content-encoding"] == "gzip"
        assert asset.content == (static / reference.rsplit("/", 1)[1]).read_bytes()  # httpx un-gzips
    assert client.get("/docs/swagger-ui-bundle.js").headers["content-type"].startswith("text/javascript")


@pytest.mark.e2e
def test_every_operation_that_needs_a_token_is_refused_without_one(client: httpx.Client) -> None:
    """The document's security is what Envoy enforces: each bearer-only operation, called without
    a token, is 401 TOKEN_MISSING; public ones never are."""
    doc = document()
    fill = {"id": "00000000-0000-4000-8000-000000000000"}
    for (verb, path), op in operations(doc).items():
        url = path.format(**fill)
        body = {} if "requestBody" in op else None
        response = client.request(verb.upper(), url, json=body)
        if op["security"] == [{"bearerAuth": []}]:
            assert response.status_code == 401, (verb, path, response.text)
            assert error_reason(status_of(response)) == "TOKEN_MISSING", (verb, path)
        else:
            assert response.status_code != 401 or error_reason(status_of(response)) != "TOKEN_MISSING"


# -- schemathesis through the real stack -------------------------------------------------------


def _schemathesis(
    stack: Stack, account: Account, *selection: str, max_examples: int, max_time: int, cwd: Path
) -> None:
    """One bounded schemathesis run against the served document, as `account`. Every check runs
    except, with their reasons:

    - negative_data_rejection: the proto3 JSON mapping accepts `null` for every field (and a null
      body) as "not set", so a request with a null where the document says string is rightly
      accepted (with the strict edge in, that is all this check still finds).

    unsupported_method runs: a method a documented path lacks must be 405 with Allow.
    """
    argv = [
        venv_tool("st"),
        "--config-file",
        str(SCHEMATHESIS_CONFIG),
        "run",
        f"{stack.rest_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {account.access_token}",
        "--checks",
        "all",
        "--exclude-checks",
        "negative_data_rejection",
        "--max-examples",
        str(max_examples),
        "--max-time",
        str(max_time),
        "--request-timeout",
        "6",
        "--max-response-time",
        "6",
        "--seed",
        "8",
        "--no-color",
        "--warnings",
        "off",
        *selection,
    ]
    # In a scratch folder: a schemathesis run writes nothing into the work tree.
    result = subprocess.run(argv, capture_output=True, text=True, timeout=150, check=False, cwd=cwd)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:]
    assert re.search(r"Tested: [1-9]", output), output[-4000:]


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_schemathesis_finds_no_5xx_and_no_reply_outside_the_document(
    stack: Stack, new_account: Any, tmp_path: Path
) -> None:
    """No 5xx, every status, content type, header and body as documented, every reply within
    6 s; at most 10 examples per operation and a time budget, so the run stays near a minute even
    on a loaded machine. Deleting the account is fuzzed apart (below), so it cannot cut this short."""
    selection = ["--exclude-operation-id", "UserService_DeleteUser"]
    _schemathesis(stack, new_account(), *selection, max_examples=10, max_time=75, cwd=tmp_path)


@pytest.mark.e2e
def test_schemathesis_on_deleting_an_account(stack: Stack, new_account: Any, tmp_path: Path) -> None:
    selection = ["--include-operation-id", "UserService_DeleteUser"]
    _schemathesis(stack, new_account(), *selection, max_examples=10, max_time=30, cwd=tmp_path)
