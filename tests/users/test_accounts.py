"""The users service over a real channel, on SQLite and on PostgreSQL: sign-up, reads, updates,
etags, pagination, credentials and the race between concurrent sign-ups."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2

from pinexa.users.v1 import users_internal_pb2, users_pb2
from services.kit.logs import JsonFormatter
from tests.support import error_info, field_violations, health_status, rpc_error
from tests.users.conftest import PASSWORD, StartUsers, Users

Code = grpc.StatusCode


def _mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


# -- sign-up -----------------------------------------------------------------------------------


async def test_health_is_serving_with_a_reachable_database(users: Users) -> None:
    assert await health_status(users.address) == health_pb2.HealthCheckResponse.SERVING
    assert (
        await health_status(users.address, "pinexa.users.v1.UserService")
        == health_pb2.HealthCheckResponse.SERVING
    )


async def test_sign_up_returns_the_account_without_password_material(users: Users) -> None:
    user = await users.sign_up("Ada.L", email="Ada@Example.com", display_name="Ada Lovelace")
    assert user.id and user.etag
    assert user.username == "ada.l"  # lower-cased
    assert user.email == "Ada@Example.com"  # kept as typed
    assert user.display_name == "Ada Lovelace"
    assert user.role == users_pb2.User.USER
    assert user.password == ""
    assert user.created_at == user.updated_at and user.created_at.seconds > 0
    fetched = await users.stub.GetUser(users_pb2.GetUserRequest(id=user.id), metadata=users.auth(user))
    assert fetched == user


async def test_sign_up_ignores_a_requested_role(users: Users) -> None:
    user = await users.sign_up(role=users_pb2.User.ADMIN)
    assert user.role == users_pb2.User.USER
    identity = await users.internal.GetIdentity(users_internal_pb2.GetIdentityRequest(user_id=user.id))
    assert identity.role == users_pb2.User.USER


async def test_sign_up_names_every_invalid_field(users: Users) -> None:
    error = await rpc_error(
        users.stub.CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(username="a!", email="nope", password="short", display_name="x" * 101)
            )
        )
    )
    assert error.code() == Code.INVALID_ARGUMENT
    assert set(field_violations(error)) == {
        "user.username",
        "user.email",
        "user.password",
        "user.display_name",
    }
    assert error_info(error).reason == "INVALID_INPUT"  # type: ignore[union-attr]


async def test_empty_sign_up_is_invalid(users: Users) -> None:
    error = await rpc_error(users.stub.CreateUser(users_pb2.CreateUserRequest()))
    assert error.code() == Code.INVALID_ARGUMENT
    assert {"user.username", "user.email", "user.password"} <= set(field_violations(error))


async def test_duplicates_are_refused_regardless_of_case(users: Users) -> None:
    await users.sign_up("grace", email="grace@example.com")
    error = await rpc_error(users.sign_up("GRACE", email="other@example.com"))
    assert error.code() == Code.ALREADY_EXISTS
    assert error_info(error).metadata["field"] == "user.username"  # type: ignore[union-attr]
    error = await rpc_error(users.sign_up("grace2", email="Grace@EXAMPLE.com"))
    assert error.code() == Code.ALREADY_EXISTS
    assert error_info(error).metadata["field"] == "user.email"  # type: ignore[union-attr]


async def test_a_duplicate_username_is_named_whatever_it_spells(users: Users) -> None:
    # PostgreSQL's message quotes the duplicate value: "Key (username)=(email_lookup) already exists".
    await users.sign_up("email_lookup")
    error = await rpc_error(users.sign_up("email_lookup", email="another@example.com"))
    assert error.code() == Code.ALREADY_EXISTS
    assert error_info(error).metadata["field"] == "user.username"  # type: ignore[union-attr]


async def test_concurrent_sign_ups_with_one_name_yield_exactly_one_account(users: Users) -> None:
    attempts = [users.sign_up("racer", email=f"racer{i}@example.com") for i in range(10)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    created = [r for r in results if isinstance(r, users_pb2.User)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 1
    assert len(refused) == 9
    assert {e.code() for e in refused} == {Code.ALREADY_EXISTS}
    # And the same race on the e-mail address.
    attempts = [users.sign_up(f"mail{i}", email="SAME@example.com") for i in range(10)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(isinstance(r, users_pb2.User) for r in results) == 1
    listed = await users.stub.ListUsers(users_pb2.ListUsersRequest(page_size=100), metadata=users.admin())
    assert [u.username for u in listed.users].count("racer") == 1
    assert sum(u.email.lower() == "same@example.com" for u in listed.users) == 1


# -- reads -------------------------------------------------------------------------------------


async def test_get_me_returns_the_caller(users: Users) -> None:
    user = await users.sign_up()
    me = await users.stub.GetMe(users_pb2.GetMeRequest(), metadata=users.auth(user))
    assert me == user


async def test_get_me_after_the_account_is_deleted_is_not_found(users: Users) -> None:
    user = await users.sign_up()
    await users.stub.DeleteUser(users_pb2.DeleteUserRequest(id=user.id), metadata=users.auth(user))
    error = await rpc_error(users.stub.GetMe(users_pb2.GetMeRequest(), metadata=users.auth(user)))
    assert error.code() == Code.NOT_FOUND


async def test_get_with_an_empty_id_is_invalid(users: Users) -> None:
    error = await rpc_error(users.stub.GetUser(users_pb2.GetUserRequest(), metadata=users.admin()))
    assert error.code() == Code.INVALID_ARGUMENT
    assert set(field_violations(error)) == {"id"}


# -- updates -----------------------------------------------------------------------------------


async def test_update_with_a_mask_changes_exactly_the_named_fields(users: Users) -> None:
    user = await users.sign_up(display_name="Before")
    updated = await users.stub.UpdateUser(
        users_pb2.UpdateUserRequest(
            user=users_pb2.User(id=user.id, email="changed@example.com", display_name="After"),
            update_mask=_mask("display_name"),
        ),
        metadata=users.auth(user),
    )
    assert updated.display_name == "After"
    assert updated.email == user.email
    assert updated.etag != user.etag
    assert updated.updated_at.ToNanoseconds() > user.updated_at.ToNanoseconds()
    assert updated.created_at == user.created_at
    # A named field with an empty value clears it.
    cleared = await users.stub.UpdateUser(
        users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id), update_mask=_mask("display_name")),
        metadata=users.auth(user),
    )
    assert cleared.display_name == ""


async def test_update_without_a_mask_changes_every_non_empty_field(users: Users) -> None:
    user = await users.sign_up(display_name="Keep me")
    updated = await users.stub.UpdateUser(
        users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id, email="moved@example.com")),
        metadata=users.auth(user),
    )
    assert updated.email == "moved@example.com"
    assert updated.display_name == "Keep me"  # empty in the request: unchanged


async def test_a_full_put_may_repeat_read_only_fields(users: Users) -> None:
    user = await users.sign_up()
    body = users_pb2.User()
    body.CopyFrom(user)
    body.display_name = "Round trip"
    updated = await users.stub.UpdateUser(users_pb2.UpdateUserRequest(user=body), metadata=users.auth(user))
    assert updated.display_name == "Round trip"
    assert updated.role == users_pb2.User.USER


async def test_update_refuses_unknown_mask_paths_and_username_changes(users: Users) -> None:
    user = await users.sign_up()
    error = await rpc_error(
        users.stub.UpdateUser(
            users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id), update_mask=_mask("username", "x")),
            metadata=users.auth(user),
        )
    )
    assert error.code() == Code.INVALID_ARGUMENT
    assert set(field_violations(error)) == {"update_mask"}
    error = await rpc_error(
        users.stub.UpdateUser(
            users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id, username="someone-else")),
            metadata=users.auth(user),
        )
    )
    assert error.code() == Code.INVALID_ARGUMENT
    assert set(field_violations(error)) == {"user.username"}


async def test_update_validates_values(users: Users) -> None:
    user = await users.sign_up()
    error = await rpc_error(
        users.stub.UpdateUser(
            users_pb2.UpdateUserRequest(
                user=users_pb2.User(id=user.id, display_name="x" * 101),
                update_mask=_mask("email", "display_name"),
            ),
            metadata=users.auth(user),
        )
    )
    assert error.code() == Code.INVALID_ARGUMENT
    assert set(field_violations(error)) == {"user.email", "user.display_name"}


async def test_update_to_a_taken_email_is_already_exists(users: Users) -> None:
    first = await users.sign_up(email="first@example.com")
    second = await users.sign_up()
    error = await rpc_error(
        users.stub.UpdateUser(
            users_pb2.UpdateUserRequest(user=users_pb2.User(id=second.id, email="FIRST@example.com")),
            metadata=users.auth(second),
        )
    )
    assert error.code() == Code.ALREADY_EXISTS
    assert error_info(error).metadata["field"] == "user.email"  # type: ignore[union-attr]
    unchanged = await users.stub.GetUser(users_pb2.GetUserRequest(id=second.id), metadata=users.auth(second))
    assert unchanged == second
    assert first.email == "first@example.com"


async def test_password_change_takes_effect_for_login(users: Users) -> None:
    """The internal ChangePassword (auth's, which throttles it): current password checked, the
    new one's rules checked first, and the new one is what login checks from then on."""
    user = await users.sign_up()
    change = users_internal_pb2.ChangePasswordRequest(
        user_id=user.id, current_password=PASSWORD, new_password="a brand new secret"
    )
    wrong = await rpc_error(
        users.internal.ChangePassword(
            users_internal_pb2.ChangePasswordRequest(
                user_id=user.id, current_password="not the password", new_password="a brand new secret"
            )
        ),
        Code.UNAUTHENTICATED,
        "INVALID_CREDENTIALS",
    )
    assert wrong.details() == "the current password is incorrect"
    short = await rpc_error(
        users.internal.ChangePassword(
            users_internal_pb2.ChangePasswordRequest(
                user_id=user.id, current_password=PASSWORD, new_password="x"
            )
        ),
        Code.INVALID_ARGUMENT,
    )
    assert set(field_violations(short)) == {"new_password"}
    before = await users.stub.GetUser(users_pb2.GetUserRequest(id=user.id), metadata=users.auth(user))
    await users.internal.ChangePassword(change)
    after = await users.stub.GetUser(users_pb2.GetUserRequest(id=user.id), metadata=users.auth(user))
    assert after.etag != before.etag  # the account changed
    await rpc_error(users.internal.ChangePassword(change), Code.UNAUTHENTICATED, "INVALID_CREDENTIALS")
    error = await rpc_error(
        users.internal.VerifyCredentials(
            users_internal_pb2.VerifyCredentialsRequest(username=user.username, password=PASSWORD)
        )
    )
    assert error.code() == Code.UNAUTHENTICATED
    ok = await users.internal.VerifyCredentials(
        users_internal_pb2.VerifyCredentialsRequest(username=user.username, password="a brand new secret")
    )
    assert ok.user_id == user.id


async def test_stale_etag_is_aborted_and_changes_nothing(users: Users) -> None:
    user = await users.sign_up(display_name="v1")
    first = await users.stub.UpdateUser(
        users_pb2.UpdateUserRequest(
            user=users_pb2.User(id=user.id, display_name="v2", etag=user.etag),
            update_mask=_mask("display_name"),
        ),
        metadata=users.auth(user),
    )
    assert first.etag != user.etag
    error = await rpc_error(
        users.stub.UpdateUser(
            users_pb2.UpdateUserRequest(
                user=users_pb2.User(id=user.id, display_name="v3", etag=user.etag),
                update_mask=_mask("display_name"),
            ),
            metadata=users.auth(user),
        )
    )
    assert error.code() == Code.ABORTED
    assert error_info(error).reason == "ETAG_MISMATCH"  # type: ignore[union-attr]
    current = await users.stub.GetUser(users_pb2.GetUserRequest(id=user.id), metadata=users.auth(user))
    assert current == first


async def test_a_non_ascii_etag_is_a_mismatch_not_an_internal_error(users: Users) -> None:
    """Found by schemathesis (issue 8): an etag with non-ASCII characters made
    hmac.compare_digest raise TypeError, a 500 INTERNAL."""
    user = await users.sign_up(display_name="v1")
    error = await rpc_error(
        users.stub.UpdateUser(
            users_pb2.UpdateUserRequest(
                user=users_pb2.User(id=user.id, display_name="v2", etag="\u00ec\u00e0-\u00f1"),
                update_mask=_mask("display_name"),
            ),
            metadata=users.auth(user),
        )
    )
    assert error.code() == Code.ABORTED
    assert error_info(error).reason == "ETAG_MISMATCH"  # type: ignore[union-attr]
    current = await users.stub.GetUser(users_pb2.GetUserRequest(id=user.id), metadata=users.auth(user))
    assert current.display_name == "v1"


async def test_concurrent_updates_with_one_etag_let_exactly_one_win(users: Users) -> None:
    user = await users.sign_up()
    attempts = [
        users.stub.UpdateUser(
            users_pb2.UpdateUserRequest(
                user=users_pb2.User(id=user.id, display_name=f"writer {i}", etag=user.etag),
                update_mask=_mask("display_name"),
            ),
            metadata=users.auth(user),
        )
        for i in range(8)
    ]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    winners = [r for r in results if isinstance(r, users_pb2.User)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert {e.code() for e in losers} == {Code.ABORTED}
    current = await users.stub.GetUser(users_pb2.GetUserRequest(id=user.id), metadata=users.auth(user))
    assert current == winners[0]


# -- listing -----------------------------------------------------------------------------------


async def test_pagination_walks_every_account_once(users: Users) -> None:
    created = [await users.sign_up(f"page{i:02d}") for i in range(25)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await users.stub.ListUsers(
            users_pb2.ListUsersRequest(page_size=10, page_token=token), metadata=users.admin()
        )
        pages += 1
        seen.extend(u.id for u in page.users)
        assert all(u.password == "" for u in page.users)
        token = page.next_page_token
        if pages == 1:
            # Accounts added between pages come after the ones already listed.
            late = await users.sign_up("late")
        if not token:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 26
    assert seen == [u.id for u in created] + [late.id]  # oldest first


async def test_page_size_defaults_to_20_and_is_capped(users: Users) -> None:
    for i in range(21):
        await users.sign_up(f"size{i:02d}")
    page = await users.stub.ListUsers(users_pb2.ListUsersRequest(), metadata=users.admin())
    assert len(page.users) == 20 and page.next_page_token
    page = await users.stub.ListUsers(users_pb2.ListUsersRequest(page_size=1000), metadata=users.admin())
    assert len(page.users) == 21 and not page.next_page_token


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (users_pb2.ListUsersRequest(page_size=-1), "page_size"),
        (users_pb2.ListUsersRequest(page_token="garbage!"), "page_token"),
        (users_pb2.ListUsersRequest(page_token="eyJwIjp7fSwicyI6IngifQ"), "page_token"),
    ],
)
async def test_bad_page_requests_are_invalid(
    users: Users, request_: users_pb2.ListUsersRequest, field: str
) -> None:
    error = await rpc_error(users.stub.ListUsers(request_, metadata=users.admin()))
    assert error.code() == Code.INVALID_ARGUMENT
    assert set(field_violations(error)) == {field}


# -- credentials (internal) --------------------------------------------------------------------


async def test_verify_credentials_by_username_or_email_in_any_case(users: Users) -> None:
    user = await users.sign_up("hopper", email="Grace.Hopper@example.com")
    for login in ("hopper", "HOPPER", " hopper ", "grace.hopper@example.com", "GRACE.HOPPER@EXAMPLE.COM"):
        identity = await users.internal.VerifyCredentials(
            users_internal_pb2.VerifyCredentialsRequest(username=login, password=PASSWORD)
        )
        assert identity.user_id == user.id
        assert identity.username == "hopper"
        assert identity.role == users_pb2.User.USER


async def test_resolve_login_names_the_account_whatever_form_of_its_name(users: Users) -> None:
    """Auth charges a login's guess to the account before the password is checked, so every
    name that VerifyCredentials would accept for an account resolves to that account's id."""
    user = await users.sign_up("kepler", email="Johannes.Kepler@example.com")
    logins = (
        "kepler",
        " KEPLER ",
        "\u212aepler",  # KELVIN SIGN, which lower-cases to an ASCII k
        "johannes.kepler@example.com",
        "  JOHANNES.KEPLER@EXAMPLE.COM",
    )
    for login in logins:
        resolved = await users.internal.ResolveLogin(users_internal_pb2.ResolveLoginRequest(login=login))
        assert resolved.user_id == user.id, login
    for login in ("nobody-here", "nobody@example.com", "", "   "):
        resolved = await users.internal.ResolveLogin(users_internal_pb2.ResolveLoginRequest(login=login))
        assert resolved.user_id == "", login  # no account: not an error, an empty id


async def test_unknown_account_and_wrong_password_look_the_same(users: Users) -> None:
    user = await users.sign_up()
    cases = [
        (user.username, "wrong password!"),
        ("nobody-here", PASSWORD),
        ("nobody@example.com", PASSWORD),
        (user.username, ""),
        ("", ""),
        (user.username, "x" * 300),
    ]
    errors = []
    for login, password in cases:
        errors.append(
            await rpc_error(
                users.internal.VerifyCredentials(
                    users_internal_pb2.VerifyCredentialsRequest(username=login, password=password)
                )
            )
        )
    assert {e.code() for e in errors} == {Code.UNAUTHENTICATED}
    assert len({e.details() for e in errors}) == 1
    assert {error_info(e).reason for e in errors} == {"INVALID_CREDENTIALS"}  # type: ignore[union-attr]


async def test_get_identity(users: Users) -> None:
    user = await users.sign_up()
    identity = await users.internal.GetIdentity(users_internal_pb2.GetIdentityRequest(user_id=user.id))
    assert (identity.user_id, identity.username, identity.role) == (user.id, user.username, user.role)
    error = await rpc_error(
        users.internal.GetIdentity(users_internal_pb2.GetIdentityRequest(user_id="00000000-0000-0000-0000-0"))
    )
    assert error.code() == Code.NOT_FOUND


async def test_internal_service_requires_the_internal_token_when_configured(start_users: StartUsers) -> None:
    secret = "i" * 40
    users = await start_users(internal_token=secret)
    user = await users.sign_up()
    request = users_internal_pb2.VerifyCredentialsRequest(username=user.username, password=PASSWORD)
    error = await rpc_error(users.internal.VerifyCredentials(request))
    assert error.code() == Code.UNAUTHENTICATED
    assert error_info(error).reason == "INTERNAL_ONLY"  # type: ignore[union-attr]
    error = await rpc_error(users.internal.VerifyCredentials(request, metadata=users.auth(user, "admin")))
    assert error.code() == Code.UNAUTHENTICATED  # a user's token, even an admin's, is not enough
    wrong = (("x-pinexa-internal-token", "j" * 40),)
    error = await rpc_error(users.internal.VerifyCredentials(request, metadata=wrong))
    assert error_info(error).reason == "INTERNAL_ONLY"  # type: ignore[union-attr]
    # The rule is per service: every method of it is refused, not only VerifyCredentials.
    identity = users_internal_pb2.GetIdentityRequest(user_id=user.id)
    for metadata in ((), wrong, users.auth(user, "admin")):
        error = await rpc_error(users.internal.GetIdentity(identity, metadata=metadata))
        assert error.code() == Code.UNAUTHENTICATED
        resolve = users_internal_pb2.ResolveLoginRequest(login=user.username)
        error = await rpc_error(users.internal.ResolveLogin(resolve, metadata=metadata))
        assert error.code() == Code.UNAUTHENTICATED
    ok = await users.internal.VerifyCredentials(request, metadata=(("x-pinexa-internal-token", secret),))
    assert ok.user_id == user.id
    allowed = await users.internal.GetIdentity(identity, metadata=(("x-pinexa-internal-token", secret),))
    assert allowed.user_id == user.id


# -- no secrets, anywhere ----------------------------------------------------------------------


async def test_passwords_and_hashes_never_reach_responses_or_logs(
    users: Users, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first, second = "first secret pass", "second secret pass"
    responses: list[bytes] = []
    user = await users.sign_up("secretive", password=first)
    responses.append(user.SerializeToString())
    short = await rpc_error(users.sign_up("secretive2", password="tiny-pw"))
    duplicate = await rpc_error(users.sign_up("secretive", password=first))
    refused = await rpc_error(
        users.stub.UpdateUser(
            users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id, password=second)),
            metadata=users.auth(user),
        )
    )
    await users.internal.ChangePassword(
        users_internal_pb2.ChangePasswordRequest(user_id=user.id, current_password=first, new_password=second)
    )
    wrong = await rpc_error(
        users.internal.VerifyCredentials(
            users_internal_pb2.VerifyCredentialsRequest(username="secretive", password=first)
        )
    )
    ok = await users.internal.VerifyCredentials(
        users_internal_pb2.VerifyCredentialsRequest(username="secretive", password=second)
    )
    responses.append(ok.SerializeToString())
    listed = await users.stub.ListUsers(users_pb2.ListUsersRequest(), metadata=users.admin())
    responses.append(listed.SerializeToString())
    await users.stub.DeleteUser(users_pb2.DeleteUserRequest(id=user.id), metadata=users.auth(user))

    for error in (short, duplicate, wrong, refused):
        responses.append((error.details() or "").encode())
        responses.append(
            b"".join(value for _, value in error.trailing_metadata() if isinstance(value, bytes))
        )
    formatter = JsonFormatter()
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert logged  # the interceptor logged every call
    for secret in (first, second, "tiny-pw", "$argon2"):
        assert secret not in logged
        assert all(secret.encode() not in blob for blob in responses)
