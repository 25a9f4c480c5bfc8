"""The `filter` of ListItems: the fields of items, typed for the kit's AIP-160 parser
(services/kit/filters.py, where the grammar and the limits are).

The tree holds only whitelisted field paths and typed scalar values (str, int, float, bool,
datetime); the store compiles it into a MongoDB query. The text a client sends never reaches
MongoDB as-is, so no operator (`$where`, `$regex`, ...) can be smuggled in.

Fields:

    status                  = != ; DRAFT, PUBLISHED or ARCHIVED (quoted or bare)
    user_id                 = != ; a string; admins only
    title                   all ops; a string (byte-wise order)
    created_at, updated_at  all ops; an RFC 3339 string with an offset, e.g. "2026-01-01T00:00:00Z"
                            (= and != only to a whole millisecond, the precision stored)
    attributes.k1[.k2...]   all ops on strings and numbers, = != on true/false; at most 8 keys deep

Limits: 2,000 characters, 32 comparisons, parentheses 8 deep.
"""

from __future__ import annotations

import functools

from services.kit.errors import PermissionDenied
from services.kit.filters import (
    ORDERED_OPS,
    And,
    Comparison,
    Node,
    Not,
    Op,
    Or,
    Scalar,
    Token,
    canonical,
    fail,
    literal,
    parse,
    string_value,
    timestamp_value,
)

__all__ = ["STATUSES", "And", "Comparison", "Node", "Not", "Or", "Scalar", "canonical", "parse_filter"]

MAX_ATTRIBUTE_PATH = 8
STATUSES = ("DRAFT", "PUBLISHED", "ARCHIVED")


def _typed_comparison(field: Token, op: Op, value: Token, *, allow_user_id: bool) -> Comparison:
    name = field.text
    where = f"at column {field.column}"
    if name == "status":
        if op not in ("=", "!="):
            raise fail(f"status supports only = and != ({where})")
        raw = value.text if value.kind == "word" else literal(value)
        if raw not in STATUSES:
            raise fail(
                f"status must be DRAFT, PUBLISHED or ARCHIVED, got {value.text} at column {value.column}"
            )
        return Comparison("status", op, str(raw))
    if name == "user_id":
        if not allow_user_id:
            raise PermissionDenied(
                "only an admin may filter by user_id; you always see only your own items",
                reason="FILTER_FIELD_ADMIN_ONLY",
            )
        if op not in ("=", "!="):
            raise fail(f"user_id supports only = and != ({where})")
        return Comparison("user_id", op, string_value(value, name))
    if name == "title":
        return Comparison("title", op, string_value(value, name))
    if name in ("created_at", "updated_at"):
        return Comparison(name, op, timestamp_value(value, name, op))
    if name.startswith("attributes."):
        keys = name.split(".")[1:]
        if len(keys) > MAX_ATTRIBUTE_PATH:
            raise fail(f"{name} is more than {MAX_ATTRIBUTE_PATH} keys deep ({where})")
        scalar = literal(value)
        if isinstance(scalar, bool) and op in ORDERED_OPS:
            raise fail(f"true and false support only = and != ({where})")
        return Comparison(name, op, scalar)
    if name == "attributes":
        raise fail(f"name an attribute key, e.g. attributes.color ({where})")
    raise fail(
        f"unknown field {name!r} {where}; filterable: status, user_id, title, created_at, updated_at, "
        "attributes.<key>"
    )


def parse_filter(text: str, *, allow_user_id: bool) -> Node | None:
    """The tree of `text`, or None when it is blank. INVALID_ARGUMENT (reason INVALID_FILTER)
    names the problem and its column; `user_id` without `allow_user_id` is PERMISSION_DENIED."""
    return parse(text, functools.partial(_typed_comparison, allow_user_id=allow_user_id))
