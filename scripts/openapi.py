"""The OpenAPI 3.1 document of Pinexa's REST API, built from the protos (run by `make generate`).

Hand-written on purpose: no maintained generator of OpenAPI 3.1 from `google.api.http` annotations
is installable here. The Go `protoc-gen-openapiv2` (Swagger 2.0) and gnostic's `protoc-gen-openapi`
(3.0) need a Go toolchain; Debian's `protoc-gen-swagger` emits Swagger 2.0 and fails on proto3
`optional`. This module reads the same descriptors Envoy transcodes with (compiled once more with
source info, for the comments) and follows the transcoder's own rules:

- paths and verbs from `google.api.http` (additional bindings too); a `{field.path}` template
  variable becomes a path parameter; `body: "*"` sends the request message, `body: "field"` that
  field; every remaining scalar field is a query parameter (nested ones dotted: `a.b`);
- schemas follow the proto3 JSON mapping as Envoy prints it (`preserve_proto_field_names`), so the
  property names are the proto names (`user_id`). Input also accepts the lowerCamel JSON names
  (`userId`); the document says so in its description;
- 64-bit integers are strings, enums are their value names, the well-known types have their JSON
  forms (Timestamp and Duration strings, FieldMask a comma-separated string, Struct an object,
  Value anything, wrappers their primitive or null), maps are objects, repeated fields arrays, and a
  oneof allows at most one of its fields;
- security per route from the jwt_authn rules of envoy/envoy.yaml.tmpl (public, optional or
  required bearer JWT);
- every error is a google.rpc.Status with its ErrorInfo reasons listed per HTTP status.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from services.data.domain import MAX_ATTRIBUTES_DEPTH

FDP = descriptor_pb2.FieldDescriptorProto

# The services Envoy transcodes (the internal ones have no route).
PUBLIC_SERVICES = ["pinexa.auth.v1.AuthService", "pinexa.users.v1.UserService", "pinexa.data.v1.DataService"]

INT32 = {FDP.TYPE_INT32, FDP.TYPE_SINT32, FDP.TYPE_SFIXED32}
UINT32 = {FDP.TYPE_UINT32, FDP.TYPE_FIXED32}
INT64 = {FDP.TYPE_INT64, FDP.TYPE_SINT64, FDP.TYPE_SFIXED64, FDP.TYPE_UINT64, FDP.TYPE_FIXED64}

# The proto3 JSON forms of the well-known types.
WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths, e.g. `display_name,email`.",
    },
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
    "google.protobuf.DoubleValue": {"type": ["number", "null"]},
    "google.protobuf.FloatValue": {"type": ["number", "null"]},
    "google.protobuf.Int64Value": {"type": ["string", "null"], "format": "int64"},
    "google.protobuf.UInt64Value": {"type": ["string", "null"], "format": "uint64"},
    "google.protobuf.Int32Value": {"type": ["integer", "null"], "format": "int32"},
    "google.protobuf.UInt32Value": {"type": ["integer", "null"], "format": "uint32"},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BytesValue": {"type": ["string", "null"], "contentEncoding": "base64"},
}

_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_OBJECT_ID = r"^[0-9a-fA-F]{24}$"
# Not blank as Python's str.strip() sees it: ECMA-262's \s, which JSON Schema uses, leaves out
# U+001C..U+001F and U+0085, which strip() removes.
_NOT_BLANK = r"[^\s\u001c-\u001f\u0085]"
# Every request string is refused with a C0 control character or DEL in it; free text (item
# content, attribute values) may hold tab, newline and carriage return (services/kit/request_checks.py).
_TEXT = r"^[^\u0000-\u001f\u007f]*$"
_FREE_TEXT = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$"
FREE_TEXT_FIELDS = frozenset({"pinexa.data.v1.Item.content"})
# The services want a real top-level domain (letters, or an xn-- label) after the last dot.
_EMAIL_TOP_LEVEL = r"@[^@]+\.([A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$"
_NO_CONTROL_CHARACTERS = r"^[^\u0000-\u001f\u007f-\u009f]*$"


# Item.attributes: JSON whose object keys are non-empty, never start with "$" and contain no "."
# nor NUL, nested at most MAX_ATTRIBUTES_DEPTH levels (the attributes object is level 1), and at
# most 64 KiB (which the description says). JSON Schema has no depth limit, so the value schema is
# unrolled: AttributeValue is a value of level 2, AttributeValue<n> one of level n, and the last
# level holds no arrays or objects.
def _attribute_schemas() -> dict[str, dict[str, Any]]:
    def name(level: int) -> str:
        return "pinexa.data.v1.AttributeValue" + ("" if level == 2 else str(level))

    key = "pinexa.data.v1.AttributeKey"
    schemas: dict[str, dict[str, Any]] = {
        key: {
            "type": "string",
            "pattern": "^[^$.\\u0000-\\u001f\\u007f][^.\\u0000-\\u001f\\u007f]*$",
            "description": 'An attribute key: non-empty, not starting with "$", without "." or NUL.',
        }
    }
    scalars: list[dict[str, Any]] = [
        {"type": ["null", "boolean", "number"]},
        {"type": "string", "pattern": _FREE_TEXT},
    ]
    for level in range(2, MAX_ATTRIBUTES_DEPTH + 2):
        if level > MAX_ATTRIBUTES_DEPTH:
            schemas[name(level)] = {
                "description": f"An attribute value at nesting level {level}: no array or object.",
                "anyOf": scalars,
            }
            continue
        child = {"$ref": f"#/components/schemas/{name(level + 1)}"}
        schemas[name(level)] = {
            "description": "An attribute value: any JSON value (finite numbers); keys of objects as above"
            + (
                f"; nested at most {MAX_ATTRIBUTES_DEPTH} levels in all."
                if level == 2
                else f" (level {level})."
            ),
            "anyOf": [
                *scalars,
                {"type": "array", "items": child},
                {
                    "type": "object",
                    "propertyNames": {"$ref": f"#/components/schemas/{key}"},
                    "additionalProperties": child,
                },
            ],
        }
    return schemas


ATTRIBUTE_SCHEMAS = _attribute_schemas()


def _mask(*fields: str) -> dict[str, Any]:
    """An update_mask naming some of `fields` (proto or lowerCamel spelling), comma-separated."""
    names = sorted({*fields, *(_lower_camel(f) for f in fields)})
    one = "(" + "|".join(re.escape(n) for n in names) + ")"
    return {"pattern": f"^({one}(,{one})*)?$"}


def _lower_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


# What the services validate beyond the protos' types (services/users/validation.py,
# services/data/domain.py, services/kit/pagination.py, the auth servicer), which the protos can only
# say in comments. Kept here by hand; the schemathesis run (tests/e2e/test_openapi.py) fails on a
# drift ("schema-valid request rejected"). "required" marks a field the service refuses when empty.
CONSTRAINTS: dict[str, dict[str, Any]] = {
    "pinexa.auth.v1.LoginRequest.username": {"minLength": 1, "pattern": _NOT_BLANK},
    "pinexa.auth.v1.LoginRequest.password": {"minLength": 1},
    "pinexa.auth.v1.RefreshRequest.refresh_token": {"minLength": 1},
    "pinexa.auth.v1.LogoutRequest.refresh_token": {"minLength": 1, "required": True},
    "pinexa.users.v1.VerifyEmailRequest.token": {"minLength": 1, "maxLength": 256, "pattern": _NOT_BLANK},
    "pinexa.users.v1.RequestPasswordResetRequest.email": {
        "format": "email",
        "minLength": 3,
        "maxLength": 254,
        "pattern": _EMAIL_TOP_LEVEL,
    },
    "pinexa.auth.v1.ConfirmPasswordResetRequest.token": {
        "minLength": 1,
        "maxLength": 256,
        "pattern": _NOT_BLANK,
    },
    "pinexa.auth.v1.ConfirmPasswordResetRequest.new_password": {"minLength": 10, "maxLength": 256},
    "pinexa.auth.v1.LoginMfaRequest.mfa_token": {"minLength": 1, "required": True},
    "pinexa.users.v1.EnrollTotpRequest.id": {"pattern": _UUID},
    "pinexa.users.v1.ActivateTotpRequest.id": {"pattern": _UUID},
    "pinexa.users.v1.ActivateTotpRequest.code": {"pattern": r"^[0-9]{6}$"},
    "pinexa.users.v1.DisableTotpRequest.id": {"pattern": _UUID},
    "pinexa.users.v1.RegenerateRecoveryCodesRequest.id": {"pattern": _UUID},
    "pinexa.users.v1.User.id": {"pattern": _UUID},
    # An update without update_mask leaves an empty field unchanged, so "" is valid there.
    "pinexa.users.v1.User.username": {"anyOf": [{"const": ""}, {"pattern": r"^[A-Za-z0-9_.-]{3,32}$"}]},
    "pinexa.users.v1.User.email": {
        "anyOf": [{"const": ""}, {"format": "email", "maxLength": 254, "pattern": _EMAIL_TOP_LEVEL}]
    },
    "pinexa.users.v1.User.display_name": {"maxLength": 100, "pattern": _NO_CONTROL_CHARACTERS},
    "pinexa.users.v1.User.password": {"anyOf": [{"const": ""}, {"minLength": 10, "maxLength": 256}]},
    "pinexa.users.v1.GetUserRequest.id": {"pattern": _UUID},
    "pinexa.users.v1.DeleteUserRequest.id": {"pattern": _UUID},
    "pinexa.users.v1.SendVerificationEmailRequest.id": {"pattern": _UUID},
    # Sessions and the accounts auth acts on are named by UUIDs too (auth's domain mints them).
    "pinexa.auth.v1.DeleteSessionRequest.id": {"pattern": _UUID},
    "pinexa.auth.v1.SignOutUserRequest.id": {"pattern": _UUID},
    "pinexa.auth.v1.DisableUserRequest.id": {"pattern": _UUID},
    "pinexa.auth.v1.EnableUserRequest.id": {"pattern": _UUID},
    "pinexa.auth.v1.ChangePasswordRequest.id": {"pattern": _UUID},
    "pinexa.users.v1.ListUsersRequest.page_size": {"minimum": 0},
    "pinexa.users.v1.ListAuditEventsRequest.page_size": {"minimum": 0},
    "pinexa.users.v1.ListUserAuditEventsRequest.page_size": {"minimum": 0},
    "pinexa.users.v1.ListUserAuditEventsRequest.id": {"pattern": _UUID},
    "pinexa.users.v1.UpdateUserRequest.update_mask": _mask("email", "display_name", "role"),
    "pinexa.data.v1.Item.id": {"pattern": _OBJECT_ID},
    "pinexa.data.v1.Item.title": {"minLength": 1, "maxLength": 200, "pattern": _NOT_BLANK},
    "pinexa.data.v1.Item.content": {"maxLength": 1024 * 1024},
    "pinexa.data.v1.Item.attributes": {
        "propertyNames": {"$ref": "#/components/schemas/pinexa.data.v1.AttributeKey"},
        "additionalProperties": {"$ref": "#/components/schemas/pinexa.data.v1.AttributeValue"},
    },
    "pinexa.data.v1.GetItemRequest.id": {"pattern": _OBJECT_ID},
    "pinexa.data.v1.DeleteItemRequest.id": {"pattern": _OBJECT_ID},
    "pinexa.data.v1.ListItemsRequest.page_size": {"minimum": 0},
    "pinexa.data.v1.ListItemsRequest.order_by": {
        "enum": ["", "created_at desc", "updated_at desc", "title", "title asc"]
    },
    "pinexa.data.v1.UpdateItemRequest.update_mask": _mask("title", "content", "status", "attributes"),
}

# A second factor is exactly one of a code and a recovery code (auth refuses neither and both).
_ONE_SECOND_FACTOR = {
    "oneOf": [
        {
            "required": ["code"],
            "properties": {"code": {"minLength": 1, "maxLength": 64}, "recovery_code": {"maxLength": 0}},
        },
        {
            "required": ["recovery_code"],
            "properties": {"recovery_code": {"minLength": 1, "maxLength": 64}, "code": {"maxLength": 0}},
        },
    ]
}

_SIGN_UP = {
    "required": ["username", "email", "password"],
    "properties": {"username": {"minLength": 3}, "email": {"minLength": 3}, "password": {"minLength": 10}},
}

# What an operation's request body needs beyond its message's schema (which is shared with the
# responses and the other operations): the fields sign-up and creating or replacing an item need.
BODY_REQUIREMENTS: dict[str, dict[str, Any]] = {
    "UserService_CreateUser": _SIGN_UP,
    "UserService_CreateUser_1": _SIGN_UP,  # POST /api/signup
    "AuthService_LoginMfa": _ONE_SECOND_FACTOR,
    "AuthService_Reauthenticate": _ONE_SECOND_FACTOR,
    "DataService_CreateItem": {"required": ["title"]},
    "DataService_UpdateItem": {"required": ["title"]},  # PUT replaces the whole item
}

# The error details a Pinexa error may carry (google.rpc.Status.details).
ERROR_DETAILS = ["google.rpc.ErrorInfo", "google.rpc.BadRequest", "google.rpc.RetryInfo"]

# ErrorInfo reasons by HTTP status: what the services (services/*) and Envoy
# (envoy/envoy.yaml.tmpl, domain "envoy") answer. Kept in step with the README's Errors section.
ERROR_RESPONSES: dict[str, tuple[str, list[str]]] = {
    "400": (
        "Invalid input (gRPC INVALID_ARGUMENT); a BadRequest names every bad field. Envoy's own "
        "`INVALID_REQUEST` covers malformed JSON, an unknown field or query parameter (named in the "
        "BadRequest) and bytes that are not UTF-8; `INCOMPLETE_REQUEST` is a native gRPC request "
        "whose message never arrives whole. A request the account's state does not allow (gRPC "
        "FAILED_PRECONDITION) is `ALREADY_VERIFIED`.",
        [
            "INVALID_INPUT",
            "INVALID_FILTER",
            "FILTER_FIELD_ADMIN_ONLY",
            "INVALID_CREDENTIALS",
            "PASSWORD_NOT_UPDATABLE",
            "FAILED_PRECONDITION",
            "INVALID_TOTP_CODE",
            "TOTP_NOT_ENROLLED",
            "TOTP_ALREADY_ENABLED",
            "TOTP_NOT_ENABLED",
            "INVALID_REQUEST",
            "INCOMPLETE_REQUEST",
            "ALREADY_VERIFIED",
        ],
    ),
    "401": (
        "Missing, invalid or expired credentials (gRPC UNAUTHENTICATED). A mail link's token that is "
        "unknown, used, superseded by a newer one or expired is `MAIL_TOKEN_INVALID`, "
        "`MAIL_TOKEN_USED`, `MAIL_TOKEN_SUPERSEDED` or `MAIL_TOKEN_EXPIRED`.",
        [
            "TOKEN_MISSING",
            "TOKEN_INVALID",
            "TOKEN_EXPIRED",
            "TOKEN_NOT_YET_VALID",
            "TOKEN_MALFORMED",
            "TOKEN_SIGNATURE_INVALID",
            "TOKEN_ALGORITHM_NOT_ALLOWED",
            "TOKEN_ISSUER_INVALID",
            "TOKEN_AUDIENCE_INVALID",
            "TOKEN_UNKNOWN_KID",
            "TOKEN_LIFETIME_TOO_LONG",
            "UNAUTHENTICATED",
            "INVALID_CREDENTIALS",
            "REFRESH_TOKEN_INVALID",
            "REFRESH_TOKEN_EXPIRED",
            "REFRESH_TOKEN_REVOKED",
            "REFRESH_TOKEN_REUSED",
            "SESSION_REVOKED",
            "ACCOUNT_DELETED",
            "MAIL_TOKEN_INVALID",
            "MAIL_TOKEN_USED",
            "MAIL_TOKEN_SUPERSEDED",
            "MAIL_TOKEN_EXPIRED",
            "MFA_REQUIRED",
            "MFA_TOKEN_INVALID",
            "INVALID_SECOND_FACTOR",
            "REAUTHENTICATION_REQUIRED",
        ],
    ),
    "403": (
        "The caller may not do this (gRPC PERMISSION_DENIED).",
        [
            "PERMISSION_DENIED",
            "ADMIN_ONLY",
            "ROLE_CHANGE_FORBIDDEN",
            "REFRESH_TOKEN_NOT_YOURS",
            "NOT_YOUR_ACCOUNT",
            "CANNOT_DISABLE_SELF",
            "ACCOUNT_DISABLED",
            "EMAIL_NOT_VERIFIED",
            "SELF_ONLY",
        ],
    ),
    "404": (
        "No such resource, or not the caller's (gRPC NOT_FOUND); also an unknown path.",
        [
            "USER_NOT_FOUND",
            "ITEM_NOT_FOUND",
            "ACCOUNT_NOT_FOUND",
            "SESSION_NOT_FOUND",
            "NOT_FOUND",
            "ROUTE_NOT_FOUND",
        ],
    ),
    "408": (
        "The request did not arrive whole within {request_timeout} (gRPC DEADLINE_EXCEEDED).",
        ["REQUEST_TIMEOUT"],
    ),
    "409": (
        "A conflict: a duplicate (ALREADY_EXISTS) or a stale etag (ABORTED).",
        ["ALREADY_EXISTS", "EMAIL_TAKEN", "ETAG_MISMATCH", "CONCURRENT_UPDATE"],
    ),
    "413": ("The request body is larger than {max_request_bytes}.", ["REQUEST_TOO_LARGE"]),
    "414": ("The path and query are longer than {max_path_bytes}.", ["URI_TOO_LONG"]),
    "429": (
        "Too many requests (gRPC RESOURCE_EXHAUSTED); a RetryInfo and the Retry-After header say when "
        "to try again.",
        ["LOGIN_THROTTLED", "MFA_THROTTLED", "RATE_LIMITED", "TOO_MANY_MAILS"],
    ),
    "431": ("The request headers are larger than {max_request_headers} in all.", ["HEADERS_TOO_LARGE"]),
    "500": ("An unexpected failure; nothing internal is in the message.", ["INTERNAL"]),
    "503": (
        "A service or its database is unavailable (gRPC UNAVAILABLE); try again shortly.",
        [
            "UPSTREAM_UNAVAILABLE",
            "DATA_STORE_UNAVAILABLE",
            "DATABASE_UNAVAILABLE",
            "USERS_UNAVAILABLE",
            "AUTH_UNAVAILABLE",
            "JWKS_UNAVAILABLE",
            "SEARCH_INDEX_NOT_READY",
            "UNAVAILABLE",
        ],
    ),
    "504": ("A service did not answer in time.", ["UPSTREAM_TIMEOUT"]),
}

# Listed in the `default` response: an operation's own method never gets it, but any other method
# on its path does (schemathesis's unsupported_method check holds the edge to it).
METHOD_NOT_ALLOWED = (
    "A path that exists answers any other method with 405 `METHOD_NOT_ALLOWED` and an `Allow` "
    "header listing its methods."
)

DESCRIPTION = """\
Pinexa's REST API: Envoy transcodes every call to the gRPC services auth, users and data.
Generated from the protos by `make generate` (scripts/openapi.py); do not edit.

- JSON property names are the proto field names (`user_id`, `created_at`); input also accepts
  the lowerCamel JSON names (`userId`). Every field is present in a response, empty ones too,
  except input-only fields (`password`).
- 64-bit integers are strings, enums are names (`"PUBLISHED"`), times are RFC 3339.
- Send the access token from `POST /api/v1/auth/login` as `Authorization: Bearer <token>`.
- Every error is a `google.rpc.Status` (`code`, `message`, `details`): an `ErrorInfo` whose
  `reason` is a stable code to branch on and whose `domain` says who answered
  (`pinexa.<service>` or `envoy`), a `BadRequest` for invalid fields, a `RetryInfo` when
  throttled.
"""


def compile_descriptors(includes: list[str], protos: list[str]) -> descriptor_pb2.FileDescriptorSet:
    """The descriptor set of `protos` with imports and source info (the comments)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "with-comments.pb"
        args = ["grpc_tools.protoc", *includes, "--include_imports", "--include_source_info"]
        code = protoc.main([*args, f"--descriptor_set_out={out}", *protos])
        if code != 0:
            raise SystemExit(f"protoc failed ({code}) compiling {protos} for the OpenAPI document")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _clean_comment(text: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in text.strip("\n").split("\n")]
    return "\n".join(lines).strip()


class Descriptors:
    """Messages, enums, services and comments of a FileDescriptorSet, by full name."""

    def __init__(self, fds: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.services: dict[str, descriptor_pb2.ServiceDescriptorProto] = {}
        self.comments: dict[str, str] = {}
        for file in fds.file:
            comments = {
                tuple(loc.path): _clean_comment(loc.leading_comments)
                for loc in file.source_code_info.location
                if loc.leading_comments.strip()
            }
            prefix = f"{file.package}." if file.package else ""
            for i, message in enumerate(file.message_type):
                self._message(prefix + message.name, message, (4, i), comments)
            for i, enum in enumerate(file.enum_type):
                self._enum(prefix + enum.name, enum, (5, i), comments)
            for i, service in enumerate(file.service):
                name = prefix + service.name
                self.services[name] = service
                self._comment(name, comments, (6, i))
                for j, method in enumerate(service.method):
                    self._comment(f"{name}.{method.name}", comments, (6, i, 2, j))

    def _comment(self, name: str, comments: dict[tuple[int, ...], str], path: tuple[int, ...]) -> None:
        if path in comments:
            self.comments[name] = comments[path]

    def _message(
        self,
        name: str,
        message: descriptor_pb2.DescriptorProto,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        self.messages[name] = message
        self._comment(name, comments, path)
        for i, field in enumerate(message.field):
            self._comment(f"{name}.{field.name}", comments, (*path, 2, i))
        for i, nested in enumerate(message.nested_type):
            self._message(f"{name}.{nested.name}", nested, (*path, 3, i), comments)
        for i, enum in enumerate(message.enum_type):
            self._enum(f"{name}.{enum.name}", enum, (*path, 4, i), comments)

    def _enum(
        self,
        name: str,
        enum: descriptor_pb2.EnumDescriptorProto,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        self.enums[name] = enum
        self._comment(name, comments, path)
        for i, value in enumerate(enum.value):
            self._comment(f"{name}.{value.name}", comments, (*path, 2, i))


def _behaviors(field: descriptor_pb2.FieldDescriptorProto) -> set[int]:
    return set(field.options.Extensions[field_behavior_pb2.field_behavior])


def _is_map(desc: Descriptors, field: descriptor_pb2.FieldDescriptorProto) -> bool:
    if field.type != FDP.TYPE_MESSAGE or field.label != FDP.LABEL_REPEATED:
        return False
    entry = desc.messages.get(field.type_name.lstrip("."))
    return bool(entry and entry.options.map_entry)


class SchemaBuilder:
    """components/schemas from the messages, each added the first time it is referenced."""

    def __init__(self, desc: Descriptors) -> None:
        self.desc = desc
        self.schemas: dict[str, dict[str, Any]] = {}

    def ref(self, full_name: str) -> dict[str, Any]:
        if full_name in WELL_KNOWN:
            return dict(WELL_KNOWN[full_name])
        if full_name not in self.schemas:
            self.schemas[full_name] = {}  # placeholder: breaks recursion
            if full_name in self.desc.enums:
                self.schemas[full_name] = self.enum_schema(full_name)
            else:
                self.schemas[full_name] = self.message_schema(full_name)
        return {"$ref": f"#/components/schemas/{full_name}"}

    def enum_schema(self, full_name: str) -> dict[str, Any]:
        enum = self.desc.enums[full_name]
        lines = [self.desc.comments.get(full_name, "")]
        for value in enum.value:
            note = self.desc.comments.get(f"{full_name}.{value.name}", "")
            lines.append(f"- `{value.name}`: {note}".rstrip(": "))
        # The zero value (`…_UNSPECIFIED`) means "not set": no response carries it and a request
        # that names it is the same as one that leaves the field out, so it is not listed.
        values = [v.name for v in enum.value if not (v.number == 0 and v.name.endswith("_UNSPECIFIED"))]
        return {
            "type": "string",
            "enum": values,
            "description": "\n".join(line for line in lines if line).strip(),
        }

    def scalar(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        t = field.type
        if t in (FDP.TYPE_MESSAGE, FDP.TYPE_GROUP, FDP.TYPE_ENUM):
            return self.ref(field.type_name.lstrip("."))
        if t == FDP.TYPE_STRING:
            return {"type": "string"}
        if t == FDP.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        if t == FDP.TYPE_BOOL:
            return {"type": "boolean"}
        if t in INT32:
            return {"type": "integer", "format": "int32"}
        if t in UINT32:
            return {"type": "integer", "format": "uint32", "minimum": 0}
        if t in INT64:
            return {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"}
        if t in (FDP.TYPE_DOUBLE, FDP.TYPE_FLOAT):
            return {"type": "number", "format": "double" if t == FDP.TYPE_DOUBLE else "float"}
        raise ValueError(f"unsupported field type {t} of {field.name}")

    def field_schema(self, owner: str, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        if _is_map(self.desc, field):
            entry = self.desc.messages[field.type_name.lstrip(".")]
            schema: dict[str, Any] = {"type": "object", "additionalProperties": self.scalar(entry.field[1])}
        elif field.label == FDP.LABEL_REPEATED:
            schema = {"type": "array", "items": self.scalar(field)}
        else:
            schema = self.scalar(field)
        extra: dict[str, Any] = {
            k: v for k, v in CONSTRAINTS.get(f"{owner}.{field.name}", {}).items() if k != "required"
        }
        comment = self.desc.comments.get(f"{owner}.{field.name}")
        if comment:
            extra["description"] = comment
        behaviors = _behaviors(field)
        if field_behavior_pb2.OUTPUT_ONLY in behaviors:
            extra["readOnly"] = True
        if field_behavior_pb2.INPUT_ONLY in behaviors:
            extra["writeOnly"] = True
        # The text rule is for requests; google.rpc.* only ever appears in responses (whose
        # field violations may quote what a client sent).
        if owner.startswith("google.rpc."):
            pass
        elif field.type == FDP.TYPE_STRING:
            text = _FREE_TEXT if f"{owner}.{field.name}" in FREE_TEXT_FIELDS else _TEXT
            target = schema["items"] if schema.get("type") == "array" else schema
            target["pattern"] = text
        elif _is_map(self.desc, field):
            entry = self.desc.messages[field.type_name.lstrip(".")]
            if entry.field[0].type == FDP.TYPE_STRING:
                schema["propertyNames"] = {"pattern": _TEXT}
            if entry.field[1].type == FDP.TYPE_STRING:
                schema["additionalProperties"]["pattern"] = _TEXT
        if "pattern" in extra and "pattern" in schema:
            # Both hold: the text rule and the field's own.
            extra["allOf"] = [{"pattern": extra.pop("pattern")}]
        if schema.get("type") == "array" and "pattern" in extra:
            schema["items"] = {**schema["items"], "pattern": extra.pop("pattern")}
        if "$ref" in schema and extra:
            # 3.1 allows siblings of $ref, but keep the referenced schema intact for every reader.
            return {"allOf": [schema], **extra}
        return {**schema, **extra}

    def message_schema(self, full_name: str, *, omit: frozenset[str] = frozenset()) -> dict[str, Any]:
        message = self.desc.messages[full_name]
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in message.field:
            if field.name in omit:
                continue
            properties[field.name] = self.field_schema(full_name, field)
            if field_behavior_pb2.REQUIRED in _behaviors(field) or CONSTRAINTS.get(
                f"{full_name}.{field.name}", {}
            ).get("required"):
                required.append(field.name)
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        if full_name in ERROR_DETAILS:
            # Packed in google.protobuf.Any: the JSON carries the type URL beside the fields.
            type_url = f"type.googleapis.com/{full_name}"
            properties["@type"] = {"const": type_url}
            required.insert(0, "@type")
        if required:
            schema["required"] = required
        oneofs = self._oneofs(message, omit)
        if oneofs:
            schema["allOf"] = [
                {"not": {"required": [a, b]}}
                for names in oneofs
                for i, a in enumerate(names)
                for b in names[i + 1 :]
            ]
        comment = self.desc.comments.get(full_name)
        if comment:
            schema["description"] = comment
        return schema

    @staticmethod
    def _oneofs(message: descriptor_pb2.DescriptorProto, omit: frozenset[str]) -> list[list[str]]:
        """Real oneofs (not proto3 `optional`): the names of their members."""
        groups: dict[int, list[str]] = {}
        for field in message.field:
            if field.HasField("oneof_index") and not field.proto3_optional and field.name not in omit:
                groups.setdefault(field.oneof_index, []).append(field.name)
        return [names for names in groups.values() if len(names) > 1]


def _bindings(rule: http_pb2.HttpRule) -> Iterator[tuple[str, str, str]]:
    """(verb, path template, body) of a rule and its additional bindings."""
    for r in [rule, *rule.additional_bindings]:
        kind = r.WhichOneof("pattern")
        if kind is None:
            continue
        if kind == "custom":
            yield r.custom.kind.lower(), r.custom.path, r.body
        else:
            yield kind, getattr(r, kind), r.body


TEMPLATE_VAR = re.compile(r"\{([^}=]+)(?:=[^}]*)?\}")


def _convert_path(template: str) -> tuple[str, list[tuple[str, str]]]:
    """`/api/v1/users/{user.id}` -> (`/api/v1/users/{id}`, [("id", "user.id")]).

    The parameter is named after the last component of its field path, so the PUT (`{user.id}`)
    and the GET (`{id}`) of one resource share one OpenAPI path, as the spec requires."""
    variables: list[tuple[str, str]] = []

    def name(match: re.Match[str]) -> str:
        field_path = match.group(1)
        short = field_path.rsplit(".", 1)[-1]
        if any(short == taken for taken, _ in variables):
            short = field_path
        variables.append((short, field_path))
        return "{" + short + "}"

    return TEMPLATE_VAR.sub(name, template), variables


def _field_by_path(
    desc: Descriptors, message: str, path: str
) -> tuple[str, descriptor_pb2.FieldDescriptorProto]:
    """The message that holds the last field of a dotted `path` in `message`, and that field."""
    owner, *parents = message, *path.split(".")[:-1]
    for part in parents:
        owner = _field(desc, owner, part).type_name.lstrip(".")
    return owner, _field(desc, owner, path.split(".")[-1])


def _field(desc: Descriptors, message: str, name: str) -> descriptor_pb2.FieldDescriptorProto:
    found = [f for f in desc.messages[message].field if f.name == name]
    if not found:
        raise ValueError(f"{message} has no field {name}")
    return found[0]


def _query_fields(
    builder: SchemaBuilder, message: str, prefix: str, skip: set[str], depth: int = 0
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every field the transcoder reads from the query string: scalars, enums, repeated scalars,
    and nested messages as dotted names. Maps and repeated messages cannot be query parameters."""
    desc = builder.desc
    for field in desc.messages[message].field:
        name = prefix + field.name
        if name in skip or _is_map(desc, field):
            continue
        type_name = field.type_name.lstrip(".")
        if field.type == FDP.TYPE_MESSAGE and type_name not in WELL_KNOWN:
            if field.label != FDP.LABEL_REPEATED and depth < 3:
                yield from _query_fields(builder, type_name, f"{name}.", skip, depth + 1)
            continue
        if field.type == FDP.TYPE_MESSAGE and WELL_KNOWN[type_name].get("type") not in (
            "string",
            ["string", "null"],
        ):
            continue  # Struct, Value, ListValue, Any, Empty: no query form
        yield name, builder.field_schema(message, field)


def _jwt_rules(envoy_config: dict[str, Any]) -> list[dict[str, Any]]:
    listener = envoy_config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    for http_filter in manager["http_filters"]:
        if http_filter["name"] == "envoy.filters.http.jwt_authn":
            return list(http_filter["typed_config"]["rules"])
    raise ValueError("the Envoy config has no jwt_authn filter")


def _security(rules: list[dict[str, Any]], grpc_path: str) -> list[dict[str, list[str]]]:
    """What jwt_authn asks of a gRPC method path: the first matching rule wins."""
    for rule in rules:
        match = rule["match"]
        if match.get("path") == grpc_path or ("prefix" in match and grpc_path.startswith(match["prefix"])):
            requires = rule.get("requires")
            if requires is None:
                return []  # public
            if "allow_missing_or_failed" in requires or "allow_missing" in requires:
                return [{}, {"bearerAuth": []}]  # a token is optional
            return [{"bearerAuth": []}]
    return [{"bearerAuth": []}]


def _status_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": (
            "google.rpc.Status: every error, from the services and from Envoy alike. "
            "`details` holds an ErrorInfo (always), a BadRequest (invalid fields) or a RetryInfo "
            "(throttling)."
        ),
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
            "message": {"type": "string", "description": "A message for developers, in English."},
            "details": {
                "type": "array",
                "items": {"oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in ERROR_DETAILS]},
            },
        },
        "required": ["code", "message"],
        "additionalProperties": False,
    }


def _size(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


def _edge_limits(envoy_config: dict[str, Any]) -> dict[str, str]:
    """The limits Envoy enforces (README "Limits at the edge"), read from its config so that the
    error descriptions state what Envoy really does."""
    listener = envoy_config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    limits = {
        "request_timeout": str(manager["request_timeout"]).replace("s", " s"),
        "max_request_headers": _size(int(manager["max_request_headers_kb"]) * 1024),
    }
    for http_filter in manager["http_filters"]:
        if http_filter["name"] == "envoy.filters.http.buffer":
            limits["max_request_bytes"] = _size(int(http_filter["typed_config"]["max_request_bytes"]))
        elif http_filter["name"] == "pinexa.edge_limits":
            code = http_filter["typed_config"]["default_source_code"]["inline_string"]
            found = re.search(r"#path > (\d+)", code)
            if found is None:
                raise ValueError("the edge-limits Lua code has no path limit")
            limits["max_path_bytes"] = _size(int(found.group(1)))
    if len(limits) != 4:
        raise ValueError(f"the Envoy config lacks a size limit: has only {sorted(limits)}")
    return limits


def _error_responses(limits: dict[str, str]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for code, (text, reasons) in ERROR_RESPONSES.items():
        listed = ", ".join(f"`{reason}`" for reason in reasons)
        response: dict[str, Any] = {
            "description": f"{text.format(**limits)} ErrorInfo reasons: {listed}.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}},
        }
        if code == "429":
            response["headers"] = {
                "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
            }
        responses[f"Error{code}"] = response
    responses["Error"] = {
        "description": (
            "Any other error, in the same google.rpc.Status shape (from Envoy: `GATEWAY_ERROR`). "
            + METHOD_NOT_ALLOWED
        ),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}},
    }
    return responses


# Envoy's own health endpoints (direct routes in envoy/envoy.yaml.tmpl, README "Health"): public,
# GET and HEAD only. Hand-written: they are no RPC, so no annotation describes them.
_SERVING = {"type": "string", "enum": ["SERVING", "NOT_SERVING"]}
HEALTH_SCHEMAS: dict[str, dict[str, Any]] = {
    "pinexa.edge.Liveness": {
        "type": "object",
        "description": "Envoy is up; it asks no service.",
        "properties": {"status": {"const": "SERVING"}},
        "required": ["status"],
        "additionalProperties": False,
    },
    "pinexa.edge.Readiness": {
        "type": "object",
        "description": "What each service's gRPC health answered just now (UNAVAILABLE: no answer).",
        "properties": {
            "status": {**_SERVING, "description": "SERVING only when every upstream is."},
            "upstreams": {
                "type": "object",
                "properties": {
                    name: {"type": "string", "enum": ["SERVING", "NOT_SERVING", "UNAVAILABLE"]}
                    for name in ("auth", "users", "data")
                },
                "required": ["auth", "users", "data"],
                "additionalProperties": False,
            },
        },
        "required": ["status", "upstreams"],
        "additionalProperties": False,
    },
}
# Envoy's own limits still apply to these paths.
_EDGE_ERRORS = ["408", "414", "431"]


def _health_paths() -> dict[str, dict[str, Any]]:
    def ref(name: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}

    def operation(op_id: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
        for code in _EDGE_ERRORS:
            responses[code] = {"$ref": f"#/components/responses/Error{code}"}
        responses["default"] = {"$ref": "#/components/responses/Error"}
        return {
            "tags": ["Health"],
            "operationId": op_id,
            "summary": summary,
            "security": [],
            "responses": responses,
        }

    live = "Liveness: Envoy is up."
    ready = "Readiness of the API: every service's gRPC health, asked now."
    not_ready = {"description": "A service is not serving.", "content": ref("pinexa.edge.Readiness")}
    return {
        "/healthz": {
            verb: operation(
                f"Edge_Liveness{suffix}",
                live,
                {"200": {"description": live, "content": ref("pinexa.edge.Liveness")}},
            )
            for verb, suffix in (("get", ""), ("head", "_Head"))
        },
        "/readyz": {
            verb: operation(
                f"Edge_Readiness{suffix}",
                ready,
                {
                    "200": {
                        "description": "Every service is serving.",
                        "content": ref("pinexa.edge.Readiness"),
                    },
                    "503": dict(not_ready),
                },
            )
            for verb, suffix in (("get", ""), ("head", "_Head"))
        },
    }


def build(desc: Descriptors, envoy_config: dict[str, Any], *, version: str) -> dict[str, Any]:
    builder = SchemaBuilder(desc)
    rules = _jwt_rules(envoy_config)
    paths: dict[str, dict[str, Any]] = {}
    tags = []
    for service_name in PUBLIC_SERVICES:
        service = desc.services[service_name]
        short_service = service_name.rsplit(".", 1)[-1]
        tags.append({"name": short_service, "description": desc.comments.get(service_name, "")})
        for method in service.method:
            rule = method.options.Extensions[annotations_pb2.http]
            input_name = method.input_type.lstrip(".")
            output_name = method.output_type.lstrip(".")
            grpc_path = f"/{service_name}/{method.name}"
            for index, (verb, template, body) in enumerate(_bindings(rule)):
                path, variables = _convert_path(template)
                op: dict[str, Any] = {
                    "operationId": f"{short_service}_{method.name}" + (f"_{index}" if index else ""),
                    "tags": [short_service],
                    "summary": f"{short_service}.{method.name}",
                    "description": desc.comments.get(f"{service_name}.{method.name}", ""),
                    "x-grpc-method": grpc_path,
                }
                parameters = []
                used = {field_path for _, field_path in variables}
                for name, field_path in variables:
                    owner, field = _field_by_path(desc, input_name, field_path)
                    schema = builder.field_schema(owner, field)
                    schema.pop("readOnly", None)
                    description = schema.pop("description", "")
                    parameters.append(
                        {
                            "name": name,
                            "in": "path",
                            "required": True,
                            "description": description,
                            "schema": schema,
                        }
                    )
                if body == "*":
                    top_level = {p.split(".")[0] for p in used}
                    schema = (
                        builder.message_schema(input_name, omit=frozenset(top_level))
                        if top_level
                        else builder.ref(input_name)
                    )
                    op["requestBody"] = {
                        "required": True,
                        "content": {"application/json": {"schema": schema}},
                    }
                else:
                    if body:
                        _, body_field = _field_by_path(desc, input_name, body)
                        # A body field that a path variable also fills (`{user.id}`, body "user")
                        # exists without a body, so the body itself is optional there.
                        from_path = any(p.startswith(f"{body}.") for p in used)
                        op["requestBody"] = {
                            "required": field_behavior_pb2.REQUIRED in _behaviors(body_field)
                            and not from_path,
                            "content": {
                                "application/json": {"schema": builder.ref(body_field.type_name.lstrip("."))}
                            },
                        }
                        used.add(body)
                    for name, schema in _query_fields(builder, input_name, "", used):
                        description = schema.pop("description", "")
                        schema.pop("readOnly", None)
                        parameters.append(
                            {
                                "name": name,
                                "in": "query",
                                "required": False,
                                "description": description,
                                "schema": schema,
                                **({"explode": True} if schema.get("type") == "array" else {}),
                            }
                        )
                extra = BODY_REQUIREMENTS.get(op["operationId"])
                if extra:
                    content = op["requestBody"]["content"]["application/json"]
                    content["schema"] = {"allOf": [content["schema"]], **extra}
                    op["requestBody"]["required"] = True
                if parameters:
                    op["parameters"] = parameters
                op["security"] = _security(rules, grpc_path)
                responses: dict[str, Any] = {
                    "200": {
                        "description": desc.comments.get(output_name, "OK") or "OK",
                        "content": {"application/json": {"schema": builder.ref(output_name)}},
                    }
                }
                for code in ERROR_RESPONSES:
                    responses[code] = {"$ref": f"#/components/responses/Error{code}"}
                responses["default"] = {"$ref": "#/components/responses/Error"}
                op["responses"] = responses
                paths.setdefault(path, {})[verb] = op
    paths.update(_health_paths())
    tags.append({"name": "Health", "description": 'Envoy\'s own liveness and readiness (README "Health").'})
    for name in ERROR_DETAILS:
        builder.ref(name)
    schemas = dict(sorted(builder.schemas.items()))
    schemas["google.rpc.Status"] = _status_schema()
    schemas.update(ATTRIBUTE_SCHEMAS)
    schemas.update(HEALTH_SCHEMAS)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "Pinexa REST API",
            "version": version,
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/", "description": "the Envoy gateway that serves this document"}],
        "tags": tags,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "responses": _error_responses(_edge_limits(envoy_config)),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": (
                        "The access_token from POST /api/v1/auth/login (ES256 or EdDSA, 15 minutes)."
                    ),
                }
            },
        },
        "security": [{"bearerAuth": []}],
    }


def write(out: Path, *, includes: list[str], protos: list[str], envoy_yaml: str, version: str) -> None:
    """Write the document of `protos` (compiled with `includes`) to `out`: compact JSON, as the
    k8s envoy-config ConfigMap holds a copy and must stay under the 256 KiB client-side
    `kubectl apply` allows (pretty-printed, the document alone was 100 KB of it)."""
    desc = Descriptors(compile_descriptors(includes, protos))
    document = build(desc, yaml.safe_load(envoy_yaml), version=version)
    out.write_text(json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n")
