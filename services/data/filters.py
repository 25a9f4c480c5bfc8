"""The `filter` of ListItems: a small, documented subset of AIP-160, parsed here into a typed tree.

The tree holds only whitelisted field paths and typed scalar values (str, int, float, bool,
datetime); the store compiles it into a MongoDB query. The text a client sends never reaches
MongoDB as-is, so no operator (`$where`, `$regex`, ...) can be smuggled in.

Grammar (AIP-160 precedence: OR binds tighter than AND; keywords are upper case):

    filter     := expression
    expression := factor { "AND" factor }
    factor     := term { "OR" term }
    term       := [ "NOT" ] simple
    simple     := "(" expression ")" | comparison
    comparison := field op value
    op         := "=" | "!=" | "<" | "<=" | ">" | ">="
    value      := "string" | 'string' | number | true | false | ENUM_NAME

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

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from services.kit.errors import InvalidArgument, PermissionDenied

Op = Literal["=", "!=", "<", "<=", ">", ">="]
Scalar = str | int | float | bool | datetime

MAX_FILTER_CHARS = 2000
MAX_COMPARISONS = 32
MAX_PAREN_DEPTH = 8
MAX_ATTRIBUTE_PATH = 8
STATUSES = ("DRAFT", "PUBLISHED", "ARCHIVED")
_INT64 = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Comparison:
    """`field op value`; `field` is the stored document path, e.g. `attributes.color`."""

    field: str
    op: Op
    value: Scalar


@dataclass(frozen=True, slots=True)
class And:
    terms: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    terms: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    term: Node


Node = Comparison | And | Or | Not

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<op>!=|<=|>=|=|<|>)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![A-Za-z0-9_.]))
  | (?P<word>[A-Za-z_][^\s()=!<>"']*)
    """,
    re.VERBOSE,
)
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_KEYWORDS = frozenset({"AND", "OR", "NOT"})
_ORDERED_OPS: frozenset[str] = frozenset({"<", "<=", ">", ">="})


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    column: int  # 1-based, for error messages


def _fail(problem: str) -> InvalidArgument:
    return InvalidArgument(f"invalid filter: {problem}", [("filter", problem)], reason="INVALID_FILTER")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise _fail(f"unexpected character {text[position]!r} at column {position + 1}")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, match.group(), position + 1))
        position = match.end()
    return tokens


def _unquote(token: _Token) -> str:
    body = token.text[1:-1]
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            escaped = body[index + 1]
            if escaped not in _ESCAPES:
                raise _fail(f"unknown escape \\{escaped} in the string at column {token.column}")
            out.append(_ESCAPES[escaped])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


class _Parser:
    def __init__(self, text: str, *, allow_user_id: bool) -> None:
        self._tokens = _tokenize(text)
        self._index = 0
        self._depth = 0
        self._comparisons = 0
        self._allow_user_id = allow_user_id
        self._end_column = len(text) + 1

    def _peek(self) -> _Token | None:
        return self._tokens[self._index] if self._index < len(self._tokens) else None

    def _next(self, expected: str) -> _Token:
        token = self._peek()
        if token is None:
            raise _fail(f"expected {expected} at column {self._end_column}, found the end of the filter")
        self._index += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token.kind == "word" and token.text == word:
            self._index += 1
            return True
        return False

    def parse(self) -> Node:
        node = self._expression()
        token = self._peek()
        if token is not None:
            raise _fail(f"unexpected {token.text!r} at column {token.column}")
        return node

    def _expression(self) -> Node:
        terms = [self._factor()]
        while self._keyword("AND"):
            terms.append(self._factor())
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def _factor(self) -> Node:
        terms = [self._term()]
        while self._keyword("OR"):
            terms.append(self._term())
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def _term(self) -> Node:
        if self._keyword("NOT"):
            return Not(self._simple())
        return self._simple()

    def _simple(self) -> Node:
        token = self._next("a comparison or '('")
        if token.kind == "lparen":
            self._depth += 1
            if self._depth > MAX_PAREN_DEPTH:
                raise _fail(f"parentheses nest deeper than {MAX_PAREN_DEPTH} at column {token.column}")
            node = self._expression()
            closing = self._next("')'")
            if closing.kind != "rparen":
                raise _fail(f"expected ')' at column {closing.column}, found {closing.text!r}")
            self._depth -= 1
            return node
        if token.kind != "word" or token.text in _KEYWORDS or token.text in ("true", "false"):
            raise _fail(f"expected a field name at column {token.column}, found {token.text!r}")
        for segment in token.text.split("."):
            if not _SEGMENT.fullmatch(segment):
                raise _fail(
                    f"invalid name {segment!r} in {token.text!r} at column {token.column}: names are "
                    "letters, digits, _ and -"
                )
        return self._comparison(token)

    def _comparison(self, field: _Token) -> Comparison:
        self._comparisons += 1
        if self._comparisons > MAX_COMPARISONS:
            raise _fail(f"more than {MAX_COMPARISONS} comparisons")
        op_token = self._next(f"a comparison operator after {field.text!r}")
        if op_token.kind != "op":
            raise _fail(
                f"expected a comparison operator (= != < <= > >=) at column {op_token.column}, "
                f"found {op_token.text!r}"
            )
        op: Op = op_token.text  # type: ignore[assignment]
        value_token = self._next(f"a value after {op_token.text!r}")
        return _typed_comparison(field, op, value_token, allow_user_id=self._allow_user_id)


def _literal(token: _Token) -> str | int | float | bool:
    if token.kind == "string":
        return _unquote(token)
    if token.kind == "number":
        text = token.text
        if re.fullmatch(r"-?\d+", text) and abs(int(text)) <= _INT64:
            return int(text)
        number = float(text)
        if number in (float("inf"), float("-inf")):
            raise _fail(f"the number at column {token.column} is out of range")
        return number
    if token.kind == "word" and token.text in ("true", "false"):
        return token.text == "true"
    raise _fail(f"expected a value (a quoted string, a number, true or false) at column {token.column}")


def _typed_comparison(field: _Token, op: Op, value: _Token, *, allow_user_id: bool) -> Comparison:
    name = field.text
    where = f"at column {field.column}"
    if name == "status":
        if op not in ("=", "!="):
            raise _fail(f"status supports only = and != ({where})")
        raw = value.text if value.kind == "word" else _literal(value)
        if raw not in STATUSES:
            raise _fail(
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
            raise _fail(f"user_id supports only = and != ({where})")
        return Comparison("user_id", op, _string(value, name))
    if name == "title":
        return Comparison("title", op, _string(value, name))
    if name in ("created_at", "updated_at"):
        return Comparison(name, op, _timestamp(value, name, op))
    if name.startswith("attributes."):
        keys = name.split(".")[1:]
        if len(keys) > MAX_ATTRIBUTE_PATH:
            raise _fail(f"{name} is more than {MAX_ATTRIBUTE_PATH} keys deep ({where})")
        literal = _literal(value)
        if isinstance(literal, bool) and op in _ORDERED_OPS:
            raise _fail(f"true and false support only = and != ({where})")
        return Comparison(name, op, literal)
    if name == "attributes":
        raise _fail(f"name an attribute key, e.g. attributes.color ({where})")
    raise _fail(
        f"unknown field {name!r} {where}; filterable: status, user_id, title, created_at, updated_at, "
        "attributes.<key>"
    )


def _string(value: _Token, name: str) -> str:
    if value.kind != "string":
        raise _fail(f"{name} takes a quoted string, found {value.text!r} at column {value.column}")
    return _unquote(value)


def _timestamp(value: _Token, name: str, op: Op) -> datetime:
    text = _string(value, name)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in text.upper():
        raise _fail(
            f'{name} takes an RFC 3339 timestamp with an offset, e.g. "2026-01-01T00:00:00Z"; '
            f"got {text!r} at column {value.column}"
        )
    try:
        moment = moment.astimezone(UTC)
        # Stored times have millisecond precision (BSON dates); BSON encoding floors finer values,
        # which is right for > and <=; for < and >= the next millisecond is the equivalent bound.
        # No stored time equals a bound between two milliseconds, so = and != refuse one rather
        # than compare with the millisecond below it.
        if moment.microsecond % 1000:
            if op in ("=", "!="):
                raise _fail(
                    f"{name} {op} needs a whole millisecond (stored times have no finer digits); "
                    f"got {text!r} at column {value.column}"
                )
            if op in ("<", ">="):
                moment += timedelta(microseconds=1000 - moment.microsecond % 1000)
    except OverflowError:  # e.g. "0001-01-01T00:00:00+01:00" is before year 1 in UTC
        raise _fail(f"{name}: {text!r} at column {value.column} is out of range") from None
    return moment


def parse_filter(text: str, *, allow_user_id: bool) -> Node | None:
    """The tree of `text`, or None when it is blank. INVALID_ARGUMENT (reason INVALID_FILTER)
    names the problem and its column; `user_id` without `allow_user_id` is PERMISSION_DENIED."""
    if len(text) > MAX_FILTER_CHARS:
        raise _fail(f"longer than {MAX_FILTER_CHARS} characters")
    if not text.strip():
        return None
    return _Parser(text, allow_user_id=allow_user_id).parse()


def canonical(node: Node | None) -> str:
    """A stable text form of a parsed filter: equal filters give equal text (for page-token scope)."""
    return "" if node is None else repr(node)
