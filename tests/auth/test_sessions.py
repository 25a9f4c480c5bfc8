"""Sessions (issue 12): the sid claim, listing and ending sessions, logout of the other sessions,
an admin's sign-out and disable, password change, and instant revocation through auth's
WatchRevocations stream.

Real auth and users servers on SQLite and PostgreSQL (tests/auth/conftest.py); users follows
auth's revocation stream over a real gRPC channel, as in production.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import jwt

from pinexa.auth.v1 import auth_internal_pb2, auth_internal_pb2_grpc, auth_pb2, auth_pb2_grpc
from pinexa.users.v1 import users_pb2
from services.auth.config import AuthSettings
from services.auth.server import create_service as create_auth
from services.kit.channels import internal_channel
from services.kit.revocations import GrpcRevocationSource
from tests.auth.conftest import PASSWORD, Stack, StartStack
from tests.support import bearer, field_violations, rpc_error, wait_until

ADMIN = {"admin_username": "root", "admin_email": "root@example.com", "admin_password": "root password 123"}
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED
NEW_PASSWORD = "a brand new passphrase"


def client(address: str) -> tuple[tuple[str, str], ...]:
    return (("x-envoy-external-address", address),)


async def login_as(stack: Stack, username: str, *, address: str, agent: str) -> auth_pb2.LoginResponse:
    """A login from a client whose User-Agent starts with `agent` (gRPC appends its own)."""
    async with grpc.aio.insecure_channel(
        stack.auth_address, options=[("grpc.primary_user_agent", agent)]
    ) as channel:
        return await auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(username=username, password=PASSWORD), metadata=client(address)
        )


def sid(access_token: str) -> str:
    return str(jwt.decode(access_token, options={"verify_signature": False})["sid"])


async def refused_within(stack: Stack, access_token: str, seconds: float = 2.0) -> float:
    """Seconds until users refuses `access_token` as SESSION_REVOKED; fails after `seconds`."""
    started = time.monotonic()
    while True:
        try:
            await stack.me(access_token)
        except grpc.aio.AioRpcError as error:
            assert error.code() == UNAUTH, error.details()
            return time.monotonic() - started
        elapsed = time.monotonic() - started
        assert elapsed < seconds, f"users still accepts the token after {elapsed:.2f} s"
        await asyncio.sleep(0.02)


async def test_sessions_are_listed_with_where_they_were_used_and_the_current_one_marked(stack: Stack) -> None:
    user = await stack.sign_up()
    laptop = await login_as(stack, user.username, address="198.51.100.7", agent="Firefox/140")
    phone = await login_as(stack, user.username, address="203.0.113.9", agent="PinexaApp/2")
    assert sid(laptop.access_token) != sid(phone.access_token)

    listed = await stack.auth.ListSessions(
        auth_pb2.ListSessionsRequest(), metadata=bearer(phone.access_token)
    )
    by_id = {s.id: s for s in listed.sessions}
    assert set(by_id) == {sid(laptop.access_token), sid(phone.access_token)}
    assert listed.sessions[0].id == sid(phone.access_token)  # newest first
    assert by_id[sid(phone.access_token)].current and not by_id[sid(laptop.access_token)].current
    assert by_id[sid(laptop.access_token)].user_agent.startswith("Firefox/140 ")
    assert by_id[sid(laptop.access_token)].client_address == "198.51.100.7"
    assert by_id[sid(laptop.access_token)].created_at.seconds > 0

    # A refresh records its use: new time, user agent and address; the sid stays.
    stack.clock.advance(20)  # less than the verifiers' leeway: the new tokens are valid at once
    async with grpc.aio.insecure_channel(
        stack.auth_address, options=[("grpc.primary_user_agent", "Firefox/141")]
    ) as channel:
        renewed = await auth_pb2_grpc.AuthServiceStub(channel).Refresh(
            auth_pb2.RefreshRequest(refresh_token=laptop.refresh_token), metadata=client("198.51.100.8")
        )
    assert sid(renewed.access_token) == sid(laptop.access_token)
    listed = await stack.auth.ListSessions(
        auth_pb2.ListSessionsRequest(), metadata=bearer(phone.access_token)
    )
    session = {s.id: s for s in listed.sessions}[sid(laptop.access_token)]
    assert session.user_agent.startswith("Firefox/141 ") and session.client_address == "198.51.100.8"
    assert session.last_used_at.seconds >= session.created_at.seconds + 19

    # Someone else's list does not show them.
    other = await stack.sign_up()
    theirs = await stack.login(other.username)
    listed = await stack.auth.ListSessions(
        auth_pb2.ListSessionsRequest(), metadata=bearer(theirs.access_token)
    )
    assert [s.id for s in listed.sessions] == [sid(theirs.access_token)]
    await rpc_error(stack.auth.ListSessions(auth_pb2.ListSessionsRequest()), UNAUTH, "TOKEN_MISSING")


async def test_ending_a_session_kills_its_refresh_token_and_its_access_token_within_2_seconds(
    stack: Stack,
) -> None:
    user = await stack.sign_up()
    victim = await stack.login(user.username)
    keeper = await stack.login(user.username)
    await stack.me(victim.access_token)  # accepted (and cached by users' verifier)

    await stack.auth.DeleteSession(
        auth_pb2.DeleteSessionRequest(id=sid(victim.access_token)), metadata=bearer(keeper.access_token)
    )
    elapsed = await refused_within(stack, victim.access_token)
    print(f"revocation to refusal by users: {elapsed * 1000:.0f} ms")  # noqa: T201 (the README's figure)
    error = await rpc_error(stack.me(victim.access_token), UNAUTH, "SESSION_REVOKED")
    assert "ended" in (error.details() or "")
    await rpc_error(stack.refresh(victim.refresh_token), UNAUTH, "REFRESH_TOKEN_REVOKED")
    # Auth itself refuses it too, and the other session is untouched.
    await rpc_error(
        stack.auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=bearer(victim.access_token)),
        UNAUTH,
        "SESSION_REVOKED",
    )
    await stack.me(keeper.access_token)
    await stack.refresh(keeper.refresh_token)


async def test_no_one_ends_another_accounts_session(stack: Stack) -> None:
    owner = await stack.sign_up()
    theirs = await stack.login(owner.username)
    intruder = await stack.sign_up()
    mine = await stack.login(intruder.username)
    request = auth_pb2.DeleteSessionRequest(id=sid(theirs.access_token))
    await rpc_error(
        stack.auth.DeleteSession(request, metadata=bearer(mine.access_token)), grpc.StatusCode.NOT_FOUND
    )
    await rpc_error(stack.auth.DeleteSession(request), UNAUTH)
    await rpc_error(
        stack.auth.DeleteSession(
            auth_pb2.DeleteSessionRequest(id="not-a-session"), metadata=bearer(mine.access_token)
        ),
        grpc.StatusCode.NOT_FOUND,
        "SESSION_NOT_FOUND",
    )
    await stack.me(theirs.access_token)
    await stack.refresh(theirs.refresh_token)


async def test_logout_of_the_other_sessions_keeps_the_callers(stack: Stack) -> None:
    user = await stack.sign_up()
    others = [await stack.login(user.username) for _ in range(2)]
    mine = await stack.login(user.username)
    response = await stack.auth.Logout(
        auth_pb2.LogoutRequest(other_sessions=True), metadata=bearer(mine.access_token)
    )
    assert response.revoked_sessions == 2
    for pair in others:
        await refused_within(stack, pair.access_token)
        await rpc_error(stack.refresh(pair.refresh_token), UNAUTH, "REFRESH_TOKEN_REVOKED")
    await stack.me(mine.access_token)
    await stack.refresh(mine.refresh_token)
    await rpc_error(stack.auth.Logout(auth_pb2.LogoutRequest(other_sessions=True)), UNAUTH, "TOKEN_MISSING")
    error = await rpc_error(
        stack.auth.Logout(
            auth_pb2.LogoutRequest(other_sessions=True, all_sessions=True), metadata=bearer(mine.access_token)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "other_sessions" in field_violations(error)


async def test_an_admin_signs_an_account_out_and_no_one_else_may(start_stack: StartStack) -> None:
    stack = await start_stack(**ADMIN)
    admin = await stack.login("root", ADMIN["admin_password"])
    user = await stack.sign_up()
    pairs = [await stack.login(user.username) for _ in range(2)]
    other = await stack.sign_up()
    stranger = await stack.login(other.username)

    request = auth_pb2.SignOutUserRequest(id=user.id)
    await rpc_error(
        stack.auth.SignOutUser(request, metadata=bearer(stranger.access_token)), DENIED, "ADMIN_ONLY"
    )
    await rpc_error(
        stack.auth.SignOutUser(request, metadata=bearer(pairs[0].access_token)), DENIED, "ADMIN_ONLY"
    )
    await stack.me(pairs[0].access_token)

    response = await stack.auth.SignOutUser(request, metadata=bearer(admin.access_token))
    assert response.revoked_sessions == 2
    for pair in pairs:
        await refused_within(stack, pair.access_token)
        await rpc_error(stack.refresh(pair.refresh_token), UNAUTH, "REFRESH_TOKEN_REVOKED")
    await stack.me(stranger.access_token)
    await stack.login(user.username)  # signed out, not locked out


async def test_a_disabled_account_cannot_log_in_or_refresh_and_its_sessions_end(
    start_stack: StartStack,
) -> None:
    stack = await start_stack(**ADMIN)
    admin = await stack.login("root", ADMIN["admin_password"])
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    other = await stack.sign_up()
    stranger = await stack.login(other.username)

    request = auth_pb2.DisableUserRequest(id=user.id)
    await rpc_error(
        stack.auth.DisableUser(request, metadata=bearer(stranger.access_token)), DENIED, "ADMIN_ONLY"
    )
    await rpc_error(stack.auth.DisableUser(request, metadata=bearer(pair.access_token)), DENIED, "ADMIN_ONLY")
    await rpc_error(
        stack.auth.DisableUser(
            auth_pb2.DisableUserRequest(id=admin_id(admin)), metadata=bearer(admin.access_token)
        ),
        DENIED,
        "CANNOT_DISABLE_SELF",
    )

    response = await stack.auth.DisableUser(request, metadata=bearer(admin.access_token))
    assert response.revoked_sessions == 1
    await refused_within(stack, pair.access_token)
    await rpc_error(stack.refresh(pair.refresh_token), UNAUTH, "REFRESH_TOKEN_REVOKED")
    await rpc_error(stack.login(user.username), DENIED, "ACCOUNT_DISABLED")
    # A wrong password is still just wrong: "disabled" is said only to whoever knows the password.
    await rpc_error(stack.login(user.username, "not the password"), UNAUTH, "INVALID_CREDENTIALS")
    shown = await stack.users.GetUser(
        users_pb2.GetUserRequest(id=user.id), metadata=bearer(admin.access_token)
    )
    assert shown.disabled

    enable = auth_pb2.EnableUserRequest(id=user.id)
    await rpc_error(
        stack.auth.EnableUser(enable, metadata=bearer(stranger.access_token)), DENIED, "ADMIN_ONLY"
    )
    await stack.auth.EnableUser(enable, metadata=bearer(admin.access_token))
    again = await stack.login(user.username)
    await stack.me(again.access_token)
    await rpc_error(
        stack.auth.DisableUser(
            auth_pb2.DisableUserRequest(id="00000000-0000-4000-8000-000000000000"),
            metadata=bearer(admin.access_token),
        ),
        grpc.StatusCode.NOT_FOUND,
        "USER_NOT_FOUND",
    )


async def test_a_session_refreshing_after_its_account_was_disabled_is_refused(
    start_stack: StartStack,
) -> None:
    stack = await start_stack(**ADMIN)
    admin = await stack.login("root", ADMIN["admin_password"])
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    # Disabled directly in users (as if auth's revocation had failed half-way): refresh checks too.
    await stack.auth.DisableUser(auth_pb2.DisableUserRequest(id=user.id), metadata=bearer(admin.access_token))
    await rpc_error(stack.refresh(pair.refresh_token), UNAUTH)


def admin_id(pair: auth_pb2.LoginResponse) -> str:
    return str(jwt.decode(pair.access_token, options={"verify_signature": False})["sub"])


async def test_changing_the_password_ends_the_other_sessions_and_keeps_the_callers(stack: Stack) -> None:
    user = await stack.sign_up()
    other = await stack.login(user.username)
    mine = await stack.login(user.username)
    response = await stack.auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(id=user.id, current_password=PASSWORD, new_password=NEW_PASSWORD),
        metadata=bearer(mine.access_token),
    )
    assert response.revoked_sessions == 1
    await refused_within(stack, other.access_token)
    await rpc_error(stack.refresh(other.refresh_token), UNAUTH, "REFRESH_TOKEN_REVOKED")
    await stack.me(mine.access_token)
    await stack.refresh(mine.refresh_token)
    await rpc_error(stack.login(user.username), UNAUTH, "INVALID_CREDENTIALS")
    await stack.login(user.username, NEW_PASSWORD)


async def test_a_password_change_needs_the_right_current_password_and_counts_toward_throttling(
    stack: Stack,
) -> None:
    user = await stack.sign_up()
    mine = await stack.login(user.username)
    wrong = auth_pb2.ChangePasswordRequest(
        id=user.id, current_password="not it at all", new_password=NEW_PASSWORD
    )
    for _ in range(stack.settings.login_max_failures):
        error = await rpc_error(
            stack.auth.ChangePassword(wrong, metadata=bearer(mine.access_token)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_CREDENTIALS",
        )
        assert "current_password" in field_violations(error)
    # The account's counter is the login one: further guesses, and logins, wait.
    await rpc_error(
        stack.auth.ChangePassword(wrong, metadata=bearer(mine.access_token)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "LOGIN_THROTTLED",
    )
    await rpc_error(stack.login(user.username), grpc.StatusCode.RESOURCE_EXHAUSTED, "LOGIN_THROTTLED")
    await stack.me(mine.access_token)  # nothing was revoked
    stack.clock.advance(stack.settings.login_backoff_max_seconds + 1)
    await stack.login(user.username)  # the password did not change


async def test_a_password_change_follows_the_rules_and_is_for_the_account_itself_only(
    start_stack: StartStack,
) -> None:
    stack = await start_stack(**ADMIN)
    admin = await stack.login("root", ADMIN["admin_password"])
    user = await stack.sign_up()
    mine = await stack.login(user.username)
    other = await stack.sign_up()
    theirs = await stack.login(other.username)

    error = await rpc_error(
        stack.auth.ChangePassword(
            auth_pb2.ChangePasswordRequest(id=user.id, current_password=PASSWORD, new_password="short"),
            metadata=bearer(mine.access_token),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "new_password" in field_violations(error)
    request = auth_pb2.ChangePasswordRequest(id=user.id, current_password=PASSWORD, new_password=NEW_PASSWORD)
    # Admins do not set other people's passwords (they send a reset), and neither does anyone else.
    for pair in (admin, theirs):
        await rpc_error(
            stack.auth.ChangePassword(request, metadata=bearer(pair.access_token)), DENIED, "NOT_YOUR_ACCOUNT"
        )
    await rpc_error(stack.auth.ChangePassword(request), UNAUTH, "TOKEN_MISSING")
    await stack.login(user.username)  # unchanged
    await stack.me(mine.access_token)


async def test_update_user_no_longer_accepts_a_password(stack: Stack) -> None:
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    for request in (
        users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id, password=NEW_PASSWORD)),
        users_pb2.UpdateUserRequest(
            user=users_pb2.User(id=user.id, display_name="Ada", password=NEW_PASSWORD),
            update_mask={"paths": ["display_name"]},
        ),
    ):
        error = await rpc_error(
            stack.users.UpdateUser(request, metadata=bearer(pair.access_token)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "PASSWORD_NOT_UPDATABLE",
        )
        assert "user.password" in field_violations(error)
    error = await rpc_error(
        stack.users.UpdateUser(
            users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id), update_mask={"paths": ["password"]}),
            metadata=bearer(pair.access_token),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "update_mask" in field_violations(error)
    await stack.login(user.username)  # unchanged


async def test_revocations_made_while_the_stream_is_down_are_caught_up(stack: Stack) -> None:
    """Auth restarts: users' stream breaks, a revocation happens meanwhile (on the auth that comes
    back), and users catches up from its cursor once it reconnects."""
    user = await stack.sign_up()
    early = await stack.login(user.username)
    victim = await stack.login(user.username)
    await stack.auth.DeleteSession(
        auth_pb2.DeleteSessionRequest(id=sid(early.access_token)), metadata=bearer(victim.access_token)
    )
    await refused_within(stack, early.access_token)  # the stream works: users has a cursor now
    await stack.me(victim.access_token)

    await stack.auth_host.stop(grace=0, drain=0)
    restarted = await create_auth(stack.settings, users_channel=stack.users_channel, clock=stack.clock)
    await restarted.start("127.0.0.1:0")
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{restarted.port}")
        try:
            auth = auth_pb2_grpc.AuthServiceStub(channel)
            # Users still points at the old port: its stream is down. It keeps serving.
            await auth.Logout(auth_pb2.LogoutRequest(refresh_token=victim.refresh_token))
            await stack.me(victim.access_token)
            # Users reconnects (to the restarted auth) and catches up within its retry interval.
            old_channel = stack.jwks_from["auth"]
            stack.jwks_from["auth"] = channel
            started = time.monotonic()

            async def refused() -> bool:
                try:
                    await stack.me(victim.access_token)
                except grpc.aio.AioRpcError as error:
                    return error.code() == UNAUTH
                return False

            await wait_until(refused, timeout=5, what="users to catch up on the revocation")
            assert time.monotonic() - started < 3
            fresh = await auth.Login(auth_pb2.LoginRequest(username=user.username, password=PASSWORD))
            await stack.me(fresh.access_token)
            stack.jwks_from["auth"] = old_channel
        finally:
            await channel.close()
    finally:
        await restarted.stop(grace=0, drain=0)


async def test_the_revocation_stream_needs_the_internal_token(tmp_path: Path) -> None:
    """WatchRevocations is internal: with INTERNAL_TOKEN set, a caller without it is refused, and
    the kit's internal channel (which every service's verifier uses) carries it."""
    secret = "an internal token of forty characters ok"
    settings = AuthSettings(
        data_dir=tmp_path, jwt_keys_dir=tmp_path / "keys", internal_token=secret, shutdown_drain_seconds=0
    )
    host = await create_auth(settings)
    port = await host.start("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as bare:
            stream = auth_internal_pb2_grpc.AuthInternalServiceStub(bare).WatchRevocations(
                auth_internal_pb2.WatchRevocationsRequest()
            )
            await rpc_error(stream.read(), UNAUTH, "INTERNAL_ONLY")
        channel = internal_channel(f"127.0.0.1:{port}", internal_token=secret)
        try:
            batches = GrpcRevocationSource(channel).watch(0)
            first = await anext(batches)
            assert first.revoked == () and first.cursor == 0
            await batches.aclose()
        finally:
            await channel.close()
    finally:
        await host.stop(grace=0, drain=0)
