"""Unit tests of the users service's input rules and update-mask resolution: no network, no DB."""

from __future__ import annotations

import pytest
from google.protobuf import field_mask_pb2

from pinexa.users.v1 import users_pb2
from services.kit.errors import InvalidArgument, Violations
from services.users import validation
from services.users.domain import etag_for
from services.users.model import UserRecord
from services.users.servicer import patch_from_request, user_message


@pytest.mark.parametrize("raw", ["ada", "ADA", "  Ada  ", "a.b-c_d", "abc", "x" * 32, "0_0", "..."])
def test_usernames_accepted_after_lower_casing(raw: str) -> None:
    username = validation.normalize_username(raw)
    assert username == raw.strip().lower()
    assert validation.username_problem(username) is None


@pytest.mark.parametrize("raw", ["", "ab", "x" * 33, "ada lovelace", "ada!", "adä", "a+b", "a@b", "tab\tx"])
def test_usernames_refused(raw: str) -> None:
    assert validation.username_problem(validation.normalize_username(raw)) is not None


@pytest.mark.parametrize(
    "email",
    [
        "ada@example.com",
        "Ada.Lovelace+tag@Example.CO.uk",
        "a@b.io",
        "o'neil@example.org",
        "x@xn--bcher-kva.example",
        "x@sub-domain.example.com",
    ],
)
def test_emails_accepted(email: str) -> None:
    assert validation.email_problem(validation.normalize_email(email)) is None


@pytest.mark.parametrize(
    "email",
    [
        "",
        "ada",
        "ada@",
        "@example.com",
        "ada@example",
        "ada@@example.com",
        "ada@exa mple.com",
        "ada example@example.com",
        ".ada@example.com",
        "ada.@example.com",
        "a..b@example.com",
        "ada@-example.com",
        "ada@example-.com",
        "ada@example.c",
        "ada@example.123",
        "adä@example.com",
        "ada@exämple.com",
        "a" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_emails_refused(email: str) -> None:
    assert validation.email_problem(validation.normalize_email(email)) is not None


def test_email_key_is_case_insensitive() -> None:
    assert validation.email_key(" Ada@Example.COM ") == validation.email_key("ada@example.com")


@pytest.mark.parametrize(("length", "ok"), [(0, False), (9, False), (10, True), (256, True), (257, False)])
def test_password_length_bounds(length: int, ok: bool) -> None:
    assert (validation.password_problem("p" * length) is None) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [("", True), ("Ada Lovelace", True), ("é" * 100, True), ("x" * 101, False), ("a\nb", False)],
)
def test_display_name_rules(name: str, ok: bool) -> None:
    assert (validation.display_name_problem(name) is None) is ok


def test_problems_never_echo_the_value() -> None:
    secret = "hunter2"
    violations = Violations()
    violations.report("user.password", validation.password_problem(secret))
    violations.report("user.email", validation.email_problem("hunter2@nowhere"))
    with pytest.raises(InvalidArgument) as caught:
        violations.raise_if_any()
    assert secret not in caught.value.message
    assert all(secret not in description for _, description in caught.value.violations)
    assert {field for field, _ in caught.value.violations} == {"user.password", "user.email"}


def _update(mask: list[str] | None = None, **fields: object) -> users_pb2.UpdateUserRequest:
    request = users_pb2.UpdateUserRequest(user=users_pb2.User(id="u1", **fields))  # type: ignore[arg-type]
    if mask is not None:
        request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=mask))
    return request


def test_mask_changes_exactly_the_named_fields() -> None:
    patch = patch_from_request(_update(["display_name"], email="new@example.com", display_name=""))
    assert patch.display_name == ""  # named with an empty value: cleared
    assert patch.email is None  # sent but not named: unchanged
    assert patch.role is None


def test_mask_may_name_role() -> None:
    patch = patch_from_request(_update(["role"], role=users_pb2.User.ADMIN))
    assert patch.role == "admin" and patch.role_in_mask


def test_a_password_is_refused_with_or_without_a_mask() -> None:
    for request in (
        _update(password="p" * 12),
        _update(["display_name"], display_name="Ada", password="p" * 12),
        _update(["password"]),
    ):
        with pytest.raises(InvalidArgument) as refused:
            patch_from_request(request)
        assert refused.value.reason == "PASSWORD_NOT_UPDATABLE"


def test_without_mask_every_non_empty_field_changes() -> None:
    patch = patch_from_request(_update(email="new@example.com", display_name="", username="ada"))
    assert patch.email == "new@example.com"
    assert patch.display_name is None  # empty means "not sent" without a mask
    assert patch.role is None and not patch.role_in_mask
    assert patch.username == "ada"


def test_without_mask_a_role_is_carried_but_not_marked_explicit() -> None:
    patch = patch_from_request(_update(role=users_pb2.User.USER))
    assert patch.role == "user" and not patch.role_in_mask


@pytest.mark.parametrize("path", ["username", "id", "created_at", "etag", "nope", "user.email"])
def test_mask_refuses_unknown_or_immutable_paths(path: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        patch_from_request(_update([path]))
    assert [field for field, _ in caught.value.violations] == ["update_mask"]


def test_mask_refuses_an_unspecified_role() -> None:
    with pytest.raises(InvalidArgument) as caught:
        patch_from_request(_update(["role"]))
    assert caught.value.violations[0][0] == "user.role"


def test_etag_is_opaque_and_changes_with_version_and_account() -> None:
    assert etag_for("u1", 1) == etag_for("u1", 1)
    assert etag_for("u1", 1) != etag_for("u1", 2)
    assert etag_for("u1", 1) != etag_for("u2", 1)
    assert etag_for("u1", 1) != "1"


def test_user_message_never_carries_a_password() -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    record = UserRecord("u1", "ada", "ada@example.com", "", "admin", 3, now, now)
    message = user_message(record)
    assert message.password == ""
    assert message.role == users_pb2.User.ADMIN
    assert message.etag == etag_for("u1", 3)
    assert message.created_at.ToDatetime(tzinfo=UTC) == now
