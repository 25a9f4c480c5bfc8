"""Checks every request message gets before its handler runs, whatever the service.

- **It parsed.** grpc.aio answers a request deserializer that raises with UNKNOWN and the
  exception's text (`Unexpected <class 'google.protobuf.message.DecodeError'>: ...`).
  `tolerant_deserializer` wraps a method's deserializer so a message that fails to parse
  (random bytes, a truncated field, invalid UTF-8 in a string) becomes `UNPARSABLE`, which the
  interceptor answers with INVALID_ARGUMENT and an ErrorInfo. It costs one Python call per request.
  `guard_handler` does the same for the methods the interceptor does not otherwise wrap (health,
  reflection, any streaming method).
- **No control characters in text.** C0 controls (U+0000 to U+001F) and DEL are refused in every
  string field, map key and Struct key of every request; free text (item content, Struct string
  values such as item attributes, and any field a service names in `free_text_fields`) may also
  hold tab, newline and carriage return (CR so that text from an HTML form, which sends CRLF,
  passes). The walk over a message type's fields is planned once per type from its descriptor:
  only fields that can hold text are visited, and only when set.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.kit.errors import InvalidArgument, Violations

CONTROL_PROBLEM = "must not contain control characters (U+0000 to U+001F, U+007F)"
FREE_TEXT_CONTROL_PROBLEM = f"{CONTROL_PROBLEM} other than tab, newline and carriage return"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_FREE_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# Free-form values: attributes are a user's own data, so they are free text.
_ALWAYS_FREE_TEXT = frozenset({"google.protobuf.Value.string_value"})
_STRUCT = "google.protobuf.Struct"
_VALUE = "google.protobuf.Value"
_LIST_VALUE = "google.protobuf.ListValue"
_FREE_FORM = frozenset({_STRUCT, _VALUE, _LIST_VALUE})


class _Unparsable:
    """The request of a call whose message did not parse (a sentinel, never a message)."""

    def __repr__(self) -> str:
        return "UNPARSABLE"


UNPARSABLE = _Unparsable()


def tolerant_deserializer(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserialize`, returning UNPARSABLE instead of raising."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # DecodeError, and whatever else a malformed message makes protobuf raise
            return UNPARSABLE

    return parse


def unparsable_error() -> InvalidArgument:
    return InvalidArgument("the request message could not be parsed", reason="INVALID_REQUEST")


def guard_handler(handler: grpc.RpcMethodHandler, domain: str) -> grpc.RpcMethodHandler:
    """`handler` (streaming, or one the interceptor does not wrap, such as health and reflection)
    with a tolerant deserializer: a request that does not parse is INVALID_ARGUMENT."""
    deserialize = tolerant_deserializer(handler.request_deserializer)
    serialize = handler.response_serializer

    async def refuse(context: grpc.aio.ServicerContext) -> None:
        await context.abort_with_status(unparsable_error().to_status(domain))

    def checked(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async def iterate() -> AsyncIterator[Any]:
            async for request in requests:
                if request is UNPARSABLE:
                    await refuse(context)
                yield request

        return iterate()

    def wrap(behavior: Callable[..., Any], streaming_request: bool) -> Callable[..., Any]:
        # Keep the behavior's own style: an async generator yields responses, a coroutine
        # returns one (or writes them with context.write).
        if inspect.isasyncgenfunction(behavior):

            async def generator(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if streaming_request:
                    request = checked(request, context)
                elif request is UNPARSABLE:
                    await refuse(context)
                async for response in behavior(request, context):
                    yield response

            return generator

        async def coroutine(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if streaming_request:
                request = checked(request, context)
            elif request is UNPARSABLE:
                await refuse(context)
            return await behavior(request, context)

        return coroutine

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary, False), deserialize, serialize)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream, False), deserialize, serialize)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary, True), deserialize, serialize)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream, True), deserialize, serialize)


# What to do with each set field, by field number: (proto name, kind, is_free_text).
_Plan = dict[int, tuple[str, str, bool]]


class TextChecker:
    """Finds control characters in the text fields of messages; plans are cached per type."""

    def __init__(self, free_text_fields: frozenset[str] = frozenset()) -> None:
        self._free = _ALWAYS_FREE_TEXT | free_text_fields
        self._plans: dict[str, _Plan] = {}

    def check(self, message: Message) -> None:
        """Raises InvalidArgument naming every text field that holds a control character."""
        found = Violations()
        self._walk(message, "", found)
        found.raise_if_any("the request has control characters in text fields")

    def _plan(self, descriptor: Any) -> _Plan:
        plan = self._plans.get(descriptor.full_name)
        if plan is None:
            self._plans[descriptor.full_name] = {}  # recursion guard for self-referencing types
            plan = {
                f.number: (f.name, kind, f.full_name in self._free)
                for f in descriptor.fields
                if (kind := self._kind(f)) != ""
            }
            self._plans[descriptor.full_name] = plan
        return plan

    def _kind(self, field: Any) -> str:
        """'' (no text inside), 'text', 'message', 'map' (either may hold text)."""
        if field.type == FieldDescriptor.TYPE_STRING:
            return "text"
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            return ""
        entry = field.message_type
        if entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            if key.type == FieldDescriptor.TYPE_STRING or value.type in (
                FieldDescriptor.TYPE_STRING,
                FieldDescriptor.TYPE_MESSAGE,
            ):
                return "map"
            return ""
        return "message"

    def _walk(self, message: Message, prefix: str, found: Violations) -> None:
        name = message.DESCRIPTOR.full_name
        if name in _FREE_FORM and "\\" not in str(message):
            # Fast path for free-form values: protobuf's text format (str(), in C) escapes every
            # control character with a backslash, so a text form without one has none. It is
            # about 3x cheaper than walking a Struct's values one by one (the tests with control
            # characters in attributes would catch a protobuf that stopped escaping them).
            return
        if name == _STRUCT:
            self._walk_struct(message, prefix, found)
            return
        if name == _VALUE:
            self._walk_value(message, prefix[:-1], found)
            return
        if name == _LIST_VALUE:
            for i, element in enumerate(message.values):  # type: ignore[attr-defined]
                self._walk_value(element, f"{prefix[:-1]}[{i}]", found)
            return
        plan = self._plan(message.DESCRIPTOR)
        if not plan:
            return
        for descriptor, value in message.ListFields():
            step = plan.get(descriptor.number)
            if step is None:
                continue
            field, kind, free = step
            path = f"{prefix}{field}"
            repeated = descriptor.is_repeated
            if kind == "text":
                if repeated:
                    for i, text in enumerate(value):
                        _check(text, free, f"{path}[{i}]", found)
                else:
                    _check(value, free, path, found)
            elif kind == "message":
                if repeated:
                    for i, child in enumerate(value):
                        self._walk(child, f"{path}[{i}].", found)
                else:
                    self._walk(value, f"{path}.", found)
            else:
                value_field: Any = descriptor.message_type.fields_by_name["value"]  # type: ignore[union-attr]
                for key in value:
                    entry = f"{path}.{key}"
                    if isinstance(key, str):
                        _check(key, False, path, found)
                    if value_field.type == FieldDescriptor.TYPE_STRING:
                        _check(value[key], value_field.full_name in self._free, entry, found)
                    elif value_field.type == FieldDescriptor.TYPE_MESSAGE:
                        self._walk(value[key], f"{entry}.", found)

    def _walk_struct(self, struct: Any, prefix: str, found: Violations) -> None:
        path = prefix[:-1]
        for key, value in struct.fields.items():
            _check(key, False, path, found)  # a bad key is named by its object, as data names them
            self._walk_value(value, f"{path}.{key}", found)

    def _walk_value(self, value: Any, path: str, found: Violations) -> None:
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            _check(value.string_value, f"{_VALUE}.string_value" in self._free, path, found)
        elif kind == "struct_value":
            self._walk_struct(value.struct_value, f"{path}.", found)
        elif kind == "list_value":
            for i, element in enumerate(value.list_value.values):
                self._walk_value(element, f"{path}[{i}]", found)


def _check(text: str, free: bool, path: str, found: Violations) -> None:
    if free:
        if _CONTROL_IN_FREE_TEXT.search(text):
            found.add(path, FREE_TEXT_CONTROL_PROBLEM)
    elif _CONTROL.search(text):
        found.add(path, CONTROL_PROBLEM)
