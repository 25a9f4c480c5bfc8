"""The AIP-160 filter subset: parsing, typing, error messages and the MongoDB query it compiles to.
Pure unit tests: no network."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.data.filters import And, Comparison, Not, Or, canonical, parse_filter
from services.data.store import compile_filter
from services.kit.errors import InvalidArgument, PermissionDenied


def mongo(text: str, *, admin: bool = False) -> object:
    node = parse_filter(text, allow_user_id=admin)
    assert node is not None
    return compile_filter(node)


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ('status = "PUBLISHED"', {"status": "PUBLISHED"}),
        ("status = PUBLISHED", {"status": "PUBLISHED"}),
        ("status != ARCHIVED", {"status": {"$ne": "ARCHIVED"}}),
        ("attributes.color = 'red'", {"attributes.color": "red"}),
        ("attributes.n >= 3", {"attributes.n": {"$gte": 3}}),
        ("attributes.n<3.5", {"attributes.n": {"$lt": 3.5}}),
        ("attributes.n > -2e3", {"attributes.n": {"$gt": -2000.0}}),
        ("attributes.a.b.c <= 1", {"attributes.a.b.c": {"$lte": 1}}),
        ("attributes.flag = true", {"attributes.flag": True}),
        ("attributes.flag != false", {"attributes.flag": {"$ne": False}}),
        ('attributes.x-y = "1"', {"attributes.x-y": "1"}),
        ('title > "m"', {"title": {"$gt": "m"}}),
        ('title = "say \\"hi\\""', {"title": 'say "hi"'}),
        (
            'created_at > "2026-01-01T00:00:00Z"',
            {"created_at": {"$gt": datetime(2026, 1, 1, tzinfo=UTC)}},
        ),
        (
            'updated_at <= "2026-01-01T02:00:00+02:00"',
            {"updated_at": {"$lte": datetime(2026, 1, 1, tzinfo=UTC)}},
        ),
        (
            'created_at = "2026-01-01T00:00:00.123000Z"',
            {"created_at": datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)},
        ),
        # Sub-millisecond bounds become the equivalent millisecond (BSON dates are milliseconds).
        (
            'created_at >= "2026-01-01T00:00:00.0005Z"',
            {"created_at": {"$gte": datetime(2026, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)}},
        ),
    ],
)
def test_comparisons(text: str, query: object) -> None:
    assert mongo(text) == query


def test_and_or_not_follow_aip160_precedence() -> None:
    # OR binds tighter than AND.
    assert mongo("status = DRAFT AND attributes.a = 1 OR attributes.b = 2") == {
        "$and": [{"status": "DRAFT"}, {"$or": [{"attributes.a": 1}, {"attributes.b": 2}]}]
    }
    assert mongo("(status = DRAFT AND attributes.a = 1) OR attributes.b = 2") == {
        "$or": [{"$and": [{"status": "DRAFT"}, {"attributes.a": 1}]}, {"attributes.b": 2}]
    }
    assert mongo("NOT status = DRAFT AND NOT (attributes.a = 1 OR attributes.a = 2)") == {
        "$and": [
            {"$nor": [{"status": "DRAFT"}]},
            {"$nor": [{"$or": [{"attributes.a": 1}, {"attributes.a": 2}]}]},
        ]
    }


def test_user_id_is_for_admins_only() -> None:
    assert mongo('user_id = "u1"', admin=True) == {"user_id": "u1"}
    assert mongo('user_id != "u1"', admin=True) == {"user_id": {"$ne": "u1"}}
    with pytest.raises(PermissionDenied) as caught:
        parse_filter('user_id = "u1"', allow_user_id=False)
    assert caught.value.reason == "FILTER_FIELD_ADMIN_ONLY"
    with pytest.raises(PermissionDenied):
        parse_filter('status = DRAFT OR user_id = "u1"', allow_user_id=False)


def test_blank_filter_is_none() -> None:
    assert parse_filter("", allow_user_id=False) is None
    assert parse_filter("   ", allow_user_id=False) is None


def test_canonical_form_ignores_spacing_only() -> None:
    a = parse_filter("status=DRAFT AND attributes.n>=3", allow_user_id=False)
    b = parse_filter('  status = "DRAFT"   AND attributes.n >= 3 ', allow_user_id=False)
    c = parse_filter("status = DRAFT AND attributes.n >= 4", allow_user_id=False)
    assert canonical(a) == canonical(b) != canonical(c)
    assert canonical(None) == ""
    assert a == And((Comparison("status", "=", "DRAFT"), Comparison("attributes.n", ">=", 3)))
    assert isinstance(parse_filter("NOT status = DRAFT", allow_user_id=False), Not)
    assert isinstance(parse_filter("status = DRAFT OR status = ARCHIVED", allow_user_id=False), Or)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("status", "expected a comparison operator"),
        ("status =", "expected a value"),
        ("status = DRAFT AND", "expected a comparison or '('"),
        ("status == DRAFT", "expected a value"),
        ("status = DRAFT)", "unexpected ')' at column 15"),
        ("(status = DRAFT", "expected ')'"),
        ("status ~ DRAFT", "unexpected character '~' at column 8"),
        ("status = DONE", "status must be DRAFT, PUBLISHED or ARCHIVED"),
        ("status < DRAFT", "status supports only = and !="),
        ("color = 'red'", "unknown field 'color' at column 1"),
        ("content = 'x'", "unknown field 'content'"),
        ("attributes = 1", "name an attribute key"),
        ("attributes.$where = 1", "invalid name '$where' in 'attributes.$where' at column 1"),
        ("attributes.a..b = 1", "invalid name ''"),
        ("attributes.a. = 1", "invalid name ''"),
        ("attributes.a{b} = 1", "invalid name 'a{b}'"),
        ("attributes.a.b.c.d.e.f.g.h.i = 1", "more than 8 keys deep"),
        (
            "attributes.color = red",
            "expected a value (a quoted string, a number, true or false) at column 20",
        ),
        ("attributes.flag > true", "true and false support only = and !="),
        ("title = 3", "title takes a quoted string"),
        ("created_at > 'yesterday'", "RFC 3339"),
        ("created_at > '2026-01-01'", "RFC 3339"),
        ("created_at > '2026-01-01T00:00:00'", "RFC 3339"),
        # Valid timestamps that leave the range of dates once in UTC or rounded to milliseconds.
        ("created_at > '0001-01-01T00:00:00+01:00'", "out of range"),
        ("updated_at < '9999-12-31T23:59:59.9999Z'", "out of range"),
        ("created_at = '2026-01-01T00:00:00.0005Z'", "needs a whole millisecond"),
        ("updated_at != '2026-01-01T00:00:00.000001Z'", "needs a whole millisecond"),
        ("title = 'unterminated", "unexpected character"),
        ("title = 'bad \\q escape'", "unknown escape"),
        ("attributes.n = 1e999", "out of range"),
        ("and = 1", "unknown field 'and'"),
        ("status = DRAFT and status = DRAFT", "unexpected 'and'"),
        ("AND status = DRAFT", "expected a field name at column 1"),
        ("x" * 2001, "longer than 2000 characters"),
        (" AND ".join(["status = DRAFT"] * 33), "more than 32 comparisons"),
        ("(" * 9 + "status = DRAFT" + ")" * 9, "parentheses nest deeper than 8"),
        ('attributes.x = {"$gt": ""}', "unexpected character '{'"),
    ],
)
def test_unparseable_filters_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_filter(text, allow_user_id=True)
    assert caught.value.reason == "INVALID_FILTER"
    ((field, description),) = caught.value.violations
    assert field == "filter"
    assert problem in description, description
