"""The `filter` language of list methods: a small, documented subset of AIP-160, parsed into a
typed tree. Each list method (data's ListItems, the audit trail's ListAuditEvents) supplies the
typing of its own fields (`comparison`); the grammar, the limits and the errors are shared.

Grammar (AIP-160 precedence: OR binds tighter than AND; keywords are upper case):

    filter     := expression
    expression := factor { "AND" factor }
    factor     := term { "OR" term }
    term       := [ "NOT" ] simple
    simple     := "(" expression ")" | comparison
    comparison := field op value
    op         := "=" | "!=" | "<" | "<=" | ">" | ">="
    value      := "string" | 'string' | number | true | false | ENUM_NAME

Limits: 2,000 characters, 32 comparisons, parentheses 8 deep. Errors are INVALID_ARGUMENT with
reason INVALID_FILTER, naming the problem and its column.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from services.kit.errors import InvalidArgument

Op = Literal["=", "!=", "<", "<=", ">", ">="]
Scalar = str | int | float | bool | datetime

MAX_FILTER_CHARS = 2000
MAX_COMPARISONS = 32
MAX_PAREN_DEPTH = 8
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
ORDERED_OPS: frozenset[str] = frozenset({"<", "<=", ">", ">="})


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    column: int  # 1-based, for error messages


def fail(problem: str) -> InvalidArgument:
    return InvalidArgument(f"invalid filter: {problem}", [("filter", problem)], reason="INVALID_FILTER")


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise fail(f"unexpected character {text[position]!r} at column {position + 1}")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), position + 1))
        position = match.end()
    return tokens


def unquote(token: Token) -> str:
    body = token.text[1:-1]
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            escaped = body[index + 1]
            if escaped not in _ESCAPES:
                raise fail(f"unknown escape \\{escaped} in the string at column {token.column}")
            out.append(_ESCAPES[escaped])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


# How a list method types `field op value` into a Comparison (or refuses it with fail()).
Typing = Callable[["Token", Op, "Token"], Comparison]


class _Parser:
    def __init__(self, text: str, comparison: Typing) -> None:
        self._tokens = _tokenize(text)
        self._index = 0
        self._depth = 0
        self._comparisons = 0
        self._typed = comparison
        self._end_column = len(text) + 1

    def _peek(self) -> Token | None:
        return self._tokens[self._index] if self._index < len(self._tokens) else None

    def _next(self, expected: str) -> Token:
        token = self._peek()
        if token is None:
            raise fail(f"expected {expected} at column {self._end_column}, found the end of the filter")
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
            raise fail(f"unexpected {token.text!r} at column {token.column}")
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
                raise fail(f"parentheses nest deeper than {MAX_PAREN_DEPTH} at column {token.column}")
            node = self._expression()
            closing = self._next("')'")
            if closing.kind != "rparen":
                raise fail(f"expected ')' at column {closing.column}, found {closing.text!r}")
            self._depth -= 1
            return node
        if token.kind != "word" or token.text in _KEYWORDS or token.text in ("true", "false"):
            raise fail(f"expected a field name at column {token.column}, found {token.text!r}")
        for segment in token.text.split("."):
            if not _SEGMENT.fullmatch(segment):
                raise fail(
                    f"invalid name {segment!r} in {token.text!r} at column {token.column}: names are "
                    "letters, digits, _ and -"
                )
        return self._comparison(token)

    def _comparison(self, field: Token) -> Comparison:
        self._comparisons += 1
        if self._comparisons > MAX_COMPARISONS:
            raise fail(f"more than {MAX_COMPARISONS} comparisons")
        op_token = self._next(f"a comparison operator after {field.text!r}")
        if op_token.kind != "op":
            raise fail(
                f"expected a comparison operator (= != < <= > >=) at column {op_token.column}, "
                f"found {op_token.text!r}"
            )
        op: Op = op_token.text  # type: ignore[assignment]
        value_token = self._next(f"a value after {op_token.text!r}")
        return self._typed(field, op, value_token)


def literal(token: Token) -> str | int | float | bool:
    if token.kind == "string":
        return unquote(token)
    if token.kind == "number":
        text = token.text
        if re.fullmatch(r"-?\d+", text) and abs(int(text)) <= _INT64:
            return int(text)
        number = float(text)
        if number in (float("inf"), float("-inf")):
            raise fail(f"the number at column {token.column} is out of range")
        return number
    if token.kind == "word" and token.text in ("true", "false"):
        return token.text == "true"
    raise fail(f"expected a value (a quoted string, a number, true or false) at column {token.column}")


def string_value(value: Token, name: str) -> str:
    if value.kind != "string":
        raise fail(f"{name} takes a quoted string, found {value.text!r} at column {value.column}")
    return unquote(value)


def timestamp_value(value: Token, name: str, op: Op) -> datetime:
    text = string_value(value, name)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in text.upper():
        raise fail(
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
                raise fail(
                    f"{name} {op} needs a whole millisecond (stored times have no finer digits); "
                    f"got {text!r} at column {value.column}"
                )
            if op in ("<", ">="):
                moment += timedelta(microseconds=1000 - moment.microsecond % 1000)
    except OverflowError:  # e.g. "0001-01-01T00:00:00+01:00" is before year 1 in UTC
        raise fail(f"{name}: {text!r} at column {value.column} is out of range") from None
    return moment


def parse(text: str, comparison: Typing) -> Node | None:
    """The tree of `text`, or None when it is blank; `comparison` types each `field op value`."""
    if len(text) > MAX_FILTER_CHARS:
        raise fail(f"longer than {MAX_FILTER_CHARS} characters")
    if not text.strip():
        return None
    return _Parser(text, comparison).parse()


def canonical(node: Node | None) -> str:
    """A stable text form of a parsed filter: equal filters give equal text (for page-token scope)."""
    return "" if node is None else repr(node)
