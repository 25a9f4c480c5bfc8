"""Writes generated/edge_schema.lua: which JSON fields and query parameters each REST route takes.

Envoy's grpc_json_transcoder drops unknown JSON fields silently and has no option to refuse them,
so Envoy's Lua filter (envoy/strict.lua) checks every REST request against this table before
the transcoder runs. The table is derived from the descriptor set (generated/pinexa.pb) and its
google.api.http annotations, so it cannot drift from the API:

- ROUTES: per binding (additional bindings included) the HTTP method, a Lua pattern for the path
  template, the message the body holds (body "*": the request; body "field": that field's type;
  no body: none), the prefix naming body fields in errors ("user."), and the query parameters
  allowed: every leaf field of the request not bound from the path nor held by the body, by its
  dotted path, in proto and lowerCamel (json_name) spellings.
- MESSAGES: per message, every field's proto and json_name spelling -> 1 (a JSON scalar, or a
  list of them), 0 (free-form: google.protobuf.Struct/Value/ListValue/Any and maps of scalars:
  any keys) or the message's name (checked recursively, in objects and lists alike).

Run by scripts/generate.py (`make generate`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

PUBLIC_SERVICES = ("pinexa.auth.v1.AuthService", "pinexa.users.v1.UserService", "pinexa.data.v1.DataService")

# Well-known types whose JSON form is a scalar (a string or a number), not an object.
JSON_SCALAR_TYPES = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        *(
            f"google.protobuf.{name}Value"
            for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
        ),
    }
)
# Free-form JSON: any keys, any depth.
FREE_FORM_TYPES = frozenset(
    {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any"}
)
MAX_QUERY_DEPTH = 4

Field = descriptor_pb2.FieldDescriptorProto
Message = descriptor_pb2.DescriptorProto


class Schema:
    def __init__(self, files: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[str, Message] = {}
        self.services: dict[str, descriptor_pb2.ServiceDescriptorProto] = {}
        for file in files.file:
            prefix = f"{file.package}." if file.package else ""
            for service in file.service:
                self.services[prefix + service.name] = service
            for message in file.message_type:
                self._add(prefix, message)

    def _add(self, prefix: str, message: Message) -> None:
        name = prefix + message.name
        self.messages[name] = message
        for nested in message.nested_type:
            self._add(f"{name}.", nested)

    def field(self, message: str, name: str) -> Field:
        for field in self.messages[message].field:
            if field.name == name:
                return field
        raise KeyError(f"{message} has no field {name}")

    def kind(self, field: Field) -> int | str:
        """1: a JSON scalar (or a list of them); 0: free-form; else the message to check."""
        if field.type != Field.TYPE_MESSAGE:
            return 1
        name = field.type_name.lstrip(".")
        if name in JSON_SCALAR_TYPES:
            return 1
        if name in FREE_FORM_TYPES:
            return 0
        entry = self.messages[name]
        if entry.options.map_entry:
            value = next(f for f in entry.field if f.name == "value")
            return 0 if self.kind(value) in (0, 1) else f"map:{self.kind(value)}"
        return name

    def leaf_paths(self, message: str, depth: int = 0) -> Iterator[tuple[list[str], list[str]]]:
        """(proto-name path, json-name path) of every field a query parameter can set."""
        for field in self.messages[message].field:
            kind = self.kind(field)
            if kind == 1:
                yield [field.name], [field.json_name]
            elif isinstance(kind, str) and not kind.startswith("map:") and depth < MAX_QUERY_DEPTH:
                if field.label == Field.LABEL_REPEATED:
                    continue  # a repeated message cannot be set from a query string
                for names, jsons in self.leaf_paths(kind, depth + 1):
                    yield [field.name, *names], [field.json_name, *jsons]


def _rules(rule: http_pb2.HttpRule) -> Iterator[http_pb2.HttpRule]:
    yield rule
    for extra in rule.additional_bindings:
        yield from _rules(extra)


_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")


def _pattern(template: str) -> tuple[str, list[str]]:
    """A Lua pattern matching the path template, and the fields it binds."""
    bound: list[str] = []
    out = ["^"]
    position = 0
    for match in _VARIABLE.finditer(template):
        out.append(_lua_escape(template[position : match.start()]))
        bound.append(match.group(1))
        segments = (match.group(2) or "*").split("/")  # {name=shelves/*/books/**}: a sub-template
        out.append("/".join(_segment(segment) for segment in segments))
        position = match.end()
    out.append(_lua_escape(template[position:]))
    out.append("$")
    return "".join(out), bound


def _custom_verb(template: str) -> str | None:
    """The template's custom verb (`/users/{id}:signOut` -> signOut), if it has one."""
    last = template.rsplit("/", 1)[-1]
    tail = last.rsplit("}", 1)[-1]
    return tail.split(":", 1)[1] if ":" in tail else None


def _segment(segment: str) -> str:
    return {"*": "[^/]+", "**": ".+"}.get(segment) or _lua_escape(segment)


def _lua_escape(text: str) -> str:
    return re.sub(r"([\^$()%.\[\]*+\-?])", r"%\1", text)


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _spellings(names: list[str], jsons: list[str]) -> set[str]:
    return {
        ".".join(choice) for choice in itertools.product(*({n, j} for n, j in zip(names, jsons, strict=True)))
    }


def render(descriptor_set: Path) -> str:
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    schema = Schema(files)
    routes: list[str] = []
    wanted: list[str] = []
    custom_verbs: set[str] = set()
    for service_name in PUBLIC_SERVICES:
        service = schema.services[service_name]
        for method in service.method:
            if not method.options.HasExtension(annotations_pb2.http):
                continue
            request = method.input_type.lstrip(".")
            for rule in _rules(method.options.Extensions[annotations_pb2.http]):
                verb = rule.WhichOneof("pattern")
                if verb is None or verb == "custom":
                    continue
                template = getattr(rule, verb)
                pattern, bound = _pattern(template)
                custom = _custom_verb(template)
                if custom:
                    custom_verbs.add(custom)
                body, prefix, taken = "", "", set(bound)
                if rule.body == "*":
                    body = request
                    taken.add("")  # every field comes from the body: no query parameter is allowed
                elif rule.body:
                    kind = schema.kind(schema.field(request, rule.body))
                    body = kind if isinstance(kind, str) and not kind.startswith("map:") else ""
                    prefix = f"{rule.body}."
                    taken.add(rule.body)
                query: set[str] = set()
                if "" not in taken:
                    for names, jsons in schema.leaf_paths(request):
                        if any(".".join(names) == t or ".".join(names).startswith(f"{t}.") for t in taken):
                            continue
                        query |= _spellings(names, jsons)
                if body:
                    wanted.append(body)
                allowed = ", ".join(f"[{_lua_string(q)}] = true" for q in sorted(query))
                routes.append(
                    f"  {{ method = {_lua_string(verb.upper())}, pattern = {_lua_string(pattern)},"
                    f" verb = {_lua_string(custom) if custom else 'nil'},"
                    f" rpc = {_lua_string(f'{service_name}/{method.name}')},\n"
                    f"    body = {_lua_string(body) if body else 'nil'}, prefix = {_lua_string(prefix)},"
                    f" query = {{ {allowed} }} }},"
                )
    messages: dict[str, dict[str, int | str]] = {}
    while wanted:
        name = wanted.pop()
        if name in messages:
            continue
        fields: dict[str, int | str] = {}
        for field in schema.messages[name].field:
            kind = schema.kind(field)
            if isinstance(kind, str):
                target = kind.removeprefix("map:")
                wanted.append(target)
                kind = kind if kind.startswith("map:") else target
            fields[field.name] = kind
            fields[field.json_name] = kind
        messages[name] = fields
    lines = [
        "-- GENERATED by scripts/edge_schema.py (make generate) from generated/pinexa.pb: do not edit.",
        "-- Which JSON fields and query parameters each REST route accepts; envoy/strict.lua reads it.",
        "local MESSAGES = {",
    ]
    for name in sorted(messages):
        entries = ", ".join(
            f"[{_lua_string(k)}] = {v if isinstance(v, int) else _lua_string(v)}"
            for k, v in sorted(messages[name].items())
        )
        lines.append(f"  [{_lua_string(name)}] = {{ {entries} }},")
    verbs = ", ".join(f"[{_lua_string(v)}] = true" for v in sorted(custom_verbs))
    lines += ["}", "local ROUTES = {", *routes, "}", f"local VERBS = {{ {verbs} }}", ""]
    return "\n".join(lines)
