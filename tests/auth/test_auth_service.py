"""The auth service end to end over gRPC: real auth, real users, a real database (SQLite and
PostgreSQL). Time moves with the fake clock of `tests/auth/conftest.py`, never with sleep."""

from __future__ import annotations

import asyncio
import statistics
import time

import grpc
import jwt
import pytest
from argon2 import PasswordHasher
from google.protobuf.json_format import MessageToDict
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pinexa.auth.v1 import auth_pb2
from pinexa.users.v1 import users_pb2
from services.auth.domain import INVALID_CREDENTIALS_MESSAGE
from tests.auth.conftest import Stack, StartStack
from tests.support import bearer, error_info, rpc_error, wait_until


def retry_delay(error: grpc.aio.AioRpcError) -> float:
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    raise AssertionError("no RetryInfo in the error")


async def test_login_returns_a_token_pair_that_users_accepts(stack: Stack) -> None:
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    assert pair.token_type == "Bearer"
    assert pair.expires_in == stack.settings.access_token_ttl_seconds == 900
    assert len(pair.refresh_token) >= 43  # 32 random bytes, base64url
    header = jwt.get_unverified_header(pair.access_token)
    assert header["alg"] == "ES256" and header["kid"]
    claims = jwt.decode(pair.access_token, options={"verify_signature": False})
    assert claims["sub"] == user.id and claims["role"] == "user"
    assert claims["iss"] == "pinexa-auth" and claims["aud"] == "pinexa"
    assert claims["exp"] - claims["iat"] == 900 and claims["jti"]
    me = await stack.me(pair.access_token)
    assert me.id == user.id


async def test_login_by_email_in_any_case(stack: Stack) -> None:
    user = await stack.sign_up()
    pair = await stack.login(user.email.upper())
    assert (await stack.me(pair.access_token)).id == user.id


async def test_full_flow_login_refresh_reuse_logout(stack: Stack) -> None:
    user = await stack.sign_up()
    first = await stack.login(user.username)
    second = await stack.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert (await stack.me(second.access_token)).id == user.id

    third = await stack.refresh(second.refresh_token)
    stack.clock.advance(stack.settings.refresh_reuse_grace_seconds + 1)
    # The first token was spent long ago: presenting it again is reuse.
    await rpc_error(
        stack.refresh(first.refresh_token), grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REUSED"
    )
    # The whole family is revoked: the newest token is dead too.
    await rpc_error(
        stack.refresh(third.refresh_token), grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REVOKED"
    )

    # A new login is a new family, unaffected; logout ends it.
    fresh = await stack.login(user.username)
    result = await stack.auth.Logout(auth_pb2.LogoutRequest(refresh_token=fresh.refresh_token))
    assert result.revoked_sessions == 1
    await rpc_error(
        stack.refresh(fresh.refresh_token), grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REVOKED"
    )
    # Logging out again, or with an unknown token, revokes nothing and is not an error (RFC 7009).
    again = await stack.auth.Logout(auth_pb2.LogoutRequest(refresh_token=fresh.refresh_token))
    assert again.revoked_sessions == 0
    unknown = await stack.auth.Logout(auth_pb2.LogoutRequest(refresh_token="x" * 43))
    assert unknown.revoked_sessions == 0

    # The logged-out session's access token is refused too, at once (auth's revocation stream).
    async def refused() -> bool:
        error = await rpc_error(stack.me(fresh.access_token))
        return error.code() == grpc.StatusCode.UNAUTHENTICATED

    await wait_until(refused, timeout=2, what="users to refuse the logged-out session's token")


async def test_reuse_of_a_middle_token_revokes_the_family(stack: Stack) -> None:
    user = await stack.sign_up()
    tokens = [(await stack.login(user.username)).refresh_token]
    for _ in range(3):
        tokens.append((await stack.refresh(tokens[-1])).refresh_token)
    stack.clock.advance(60)
    await rpc_error(stack.refresh(tokens[1]), grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REUSED")
    for token in tokens:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.refresh(token)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_two_concurrent_refreshes_both_succeed(stack: Stack) -> None:
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    results = await asyncio.gather(*(stack.refresh(pair.refresh_token) for _ in range(2)))
    a, b = results
    assert a.refresh_token != b.refresh_token  # siblings in one family
    for result in results:
        assert (await stack.me(result.access_token)).id == user.id
        # Each branch keeps rotating normally.
        assert (await stack.refresh(result.refresh_token)).refresh_token


async def test_many_concurrent_refreshes_all_succeed_and_the_family_survives(stack: Stack) -> None:
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    results = await asyncio.gather(*(stack.refresh(pair.refresh_token) for _ in range(8)))
    assert len({r.refresh_token for r in results}) == 8
    nxt = await stack.refresh(results[3].refresh_token)
    assert (await stack.me(nxt.access_token)).id == user.id


async def test_repeat_within_grace_succeeds_and_after_grace_is_reuse(stack: Stack) -> None:
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    child = await stack.refresh(pair.refresh_token)
    stack.clock.advance(stack.settings.refresh_reuse_grace_seconds - 1)
    sibling = await stack.refresh(pair.refresh_token)  # e.g. a second tab, a moment later
    assert sibling.refresh_token != child.refresh_token
    stack.clock.advance(2)  # now past the grace window of the first spend
    await rpc_error(
        stack.refresh(pair.refresh_token), grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REUSED"
    )
    for token in (child.refresh_token, sibling.refresh_token):
        await rpc_error(stack.refresh(token), grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REVOKED")


async def test_zero_grace_window_makes_every_repeat_a_reuse(start_stack: StartStack) -> None:
    stack = await start_stack(refresh_reuse_grace_seconds=0.0)
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    await stack.refresh(pair.refresh_token)
    stack.clock.advance(0.01)
    await rpc_error(
        stack.refresh(pair.refresh_token), grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REUSED"
    )


async def test_refresh_token_expires(start_stack: StartStack) -> None:
    stack = await start_stack(refresh_token_ttl_seconds=60)
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    stack.clock.advance(61)
    await rpc_error(
        stack.refresh(pair.refresh_token), grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_EXPIRED"
    )


async def test_garbage_refresh_tokens_are_refused(stack: Stack) -> None:
    for token in ("nope", "x" * 43, "x" * 5000):
        await rpc_error(stack.refresh(token), grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_INVALID")
    await rpc_error(stack.refresh(""), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")


async def test_refresh_refuses_a_deleted_account_and_revokes_its_family(stack: Stack) -> None:
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    claims = jwt.decode(pair.access_token, options={"verify_signature": False})
    assert claims["role"] == "user"
    # The user deletes their own account; refresh must now fail and revoke the family.
    await stack.users.DeleteUser(users_pb2.DeleteUserRequest(id=user.id), metadata=bearer(pair.access_token))
    await rpc_error(stack.refresh(pair.refresh_token), grpc.StatusCode.UNAUTHENTICATED, "ACCOUNT_NOT_FOUND")
    await rpc_error(
        stack.refresh(pair.refresh_token), grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REVOKED"
    )


async def test_role_change_reaches_the_next_access_token(start_stack: StartStack) -> None:
    stack = await start_stack(
        admin_username="root", admin_email="root@example.com", admin_password="root password 123"
    )
    admin = await stack.login("root", "root password 123")
    assert jwt.decode(admin.access_token, options={"verify_signature": False})["role"] == "admin"
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    current = await stack.users.GetUser(
        users_pb2.GetUserRequest(id=user.id), metadata=bearer(admin.access_token)
    )
    await stack.users.UpdateUser(
        users_pb2.UpdateUserRequest(
            user=users_pb2.User(id=user.id, role=users_pb2.User.ADMIN, etag=current.etag),
            update_mask={"paths": ["role"]},
        ),
        metadata=bearer(admin.access_token),
    )
    refreshed = await stack.refresh(pair.refresh_token)
    assert jwt.decode(refreshed.access_token, options={"verify_signature": False})["role"] == "admin"


async def test_users_down_during_refresh_leaves_the_token_usable(stack: Stack) -> None:
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    await stack.users_host.server.stop(0)  # users is gone: GetIdentity cannot answer
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.refresh(pair.refresh_token)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # The token was not spent, so even long after, it is not treated as reuse.
    stack.clock.advance(3600)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.refresh(pair.refresh_token)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


# ---- logout ----------------------------------------------------------------------------------


async def test_logout_all_sessions_needs_a_valid_access_token(stack: Stack) -> None:
    user = await stack.sign_up()
    a = await stack.login(user.username)
    b = await stack.login(user.username)
    other = await stack.login((await stack.sign_up()).username)

    request = auth_pb2.LogoutRequest(refresh_token=a.refresh_token, all_sessions=True)
    await rpc_error(stack.auth.Logout(request), grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
    forged = a.access_token[:-4] + ("AAAA" if not a.access_token.endswith("AAAA") else "BBBB")
    await rpc_error(
        stack.auth.Logout(request, metadata=bearer(forged)),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_SIGNATURE_INVALID",
    )
    # Someone else's refresh token is refused, with or without all_sessions.
    await rpc_error(
        stack.auth.Logout(request, metadata=bearer(other.access_token)),
        grpc.StatusCode.PERMISSION_DENIED,
        "REFRESH_TOKEN_NOT_YOURS",
    )
    await rpc_error(
        stack.auth.Logout(
            auth_pb2.LogoutRequest(refresh_token=a.refresh_token), metadata=bearer(other.access_token)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "REFRESH_TOKEN_NOT_YOURS",
    )
    await stack.refresh(b.refresh_token)  # nothing was revoked by the refused calls

    result = await stack.auth.Logout(request, metadata=bearer(a.access_token))
    assert result.revoked_sessions == 2
    for token in (a.refresh_token, b.refresh_token):
        await rpc_error(stack.refresh(token), grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REVOKED")
    # The other user's session is untouched.
    assert (await stack.refresh(other.refresh_token)).access_token
    # all_sessions without a refresh token works too (a "sign out everywhere" button).
    c = await stack.login(user.username)
    everywhere = await stack.auth.Logout(
        auth_pb2.LogoutRequest(all_sessions=True), metadata=bearer(c.access_token)
    )
    assert everywhere.revoked_sessions == 1


async def test_logout_ends_every_branch_of_the_family(stack: Stack) -> None:
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    tab_a, tab_b = await asyncio.gather(*(stack.refresh(pair.refresh_token) for _ in range(2)))
    grandchild = await stack.refresh(tab_a.refresh_token)
    other = await stack.login(user.username)  # another session of the same user
    result = await stack.auth.Logout(auth_pb2.LogoutRequest(refresh_token=tab_b.refresh_token))
    assert result.revoked_sessions == 1
    for token in (pair.refresh_token, tab_a.refresh_token, tab_b.refresh_token, grandchild.refresh_token):
        await rpc_error(stack.refresh(token), grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REVOKED")
    assert (await stack.refresh(other.refresh_token)).access_token


async def test_logout_needs_a_refresh_token_without_all_sessions(stack: Stack) -> None:
    await rpc_error(
        stack.auth.Logout(auth_pb2.LogoutRequest()), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT"
    )


# ---- brute force -----------------------------------------------------------------------------


async def test_twenty_wrong_passwords_are_throttled_then_the_right_one_works(stack: Stack) -> None:
    user = await stack.sign_up()
    codes = []
    throttled: grpc.aio.AioRpcError | None = None
    for _ in range(20):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.login(user.username, "wrong password!")
        codes.append(caught.value.code())
        if caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            throttled = caught.value
    assert codes[:5] == [grpc.StatusCode.UNAUTHENTICATED] * 5
    assert set(codes[5:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert throttled is not None
    info = error_info(throttled)
    assert info is not None and info.reason == "LOGIN_THROTTLED"
    delay = retry_delay(throttled)
    assert 0 < delay <= stack.settings.login_backoff_base_seconds
    # HTTP clients get a Retry-After header as well (Envoy passes the gRPC header through).
    assert ("retry-after", "1") in tuple(throttled.initial_metadata() or ())

    # During the back-off even the right password is refused, before it is checked.
    error = await rpc_error(stack.login(user.username), grpc.StatusCode.RESOURCE_EXHAUSTED, "LOGIN_THROTTLED")
    assert retry_delay(error) > 0
    stack.clock.advance(delay + 0.01)
    pair = await stack.login(user.username)  # after it, the right password works
    assert (await stack.me(pair.access_token)).id == user.id
    # ... and the success reset the account's counter: 5 more failures before any back-off.
    for _ in range(5):
        await rpc_error(
            stack.login(user.username, "wrong again!!"),
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_CREDENTIALS",
        )


async def test_back_off_doubles_up_to_the_maximum(start_stack: StartStack) -> None:
    stack = await start_stack(login_backoff_base_seconds=2.0, login_backoff_max_seconds=10.0)
    user = await stack.sign_up()
    for _ in range(4):
        await rpc_error(
            stack.login(user.username, "wrong password!"),
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_CREDENTIALS",
        )
    delays = []
    for _ in range(5):
        # Each failed guess past the threshold sets the next wait: 2, 4, 8, 10, 10 seconds.
        await rpc_error(
            stack.login(user.username, "wrong password!"),
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_CREDENTIALS",
        )
        error = await rpc_error(
            stack.login(user.username, "wrong password!"),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "LOGIN_THROTTLED",
        )
        delays.append(retry_delay(error))
        stack.clock.advance(delays[-1] + 0.01)
    assert [round(d) for d in delays] == [2, 4, 8, 10, 10]


async def test_unknown_accounts_are_throttled_exactly_like_real_ones(stack: Stack) -> None:
    user = await stack.sign_up()
    results = {}
    for name in (user.username, "nobody-here"):
        codes = []
        for _ in range(7):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stack.login(
                    name, "wrong password!", metadata=[("x-forwarded-for", f"10.0.0.{len(results)}")]
                )
            info = error_info(caught.value)
            codes.append((caught.value.code(), caught.value.details(), info.reason if info else None))
        results[name] = codes
    assert results[user.username] == results["nobody-here"]
    assert results[user.username][0] == (
        grpc.StatusCode.UNAUTHENTICATED,
        INVALID_CREDENTIALS_MESSAGE,
        "INVALID_CREDENTIALS",
    )


async def test_failures_are_counted_per_client_ip_across_accounts(stack: Stack) -> None:
    """Password spraying: one guess at each of many accounts from one address. The per-IP
    counter (4x the per-account threshold) stops it; other addresses are unaffected."""
    attacker = [("x-envoy-external-address", "203.0.113.7")]
    threshold = stack.settings.login_max_failures * 4
    for i in range(threshold):
        await rpc_error(
            stack.login(f"victim{i}", "Winter2025!!", metadata=attacker),
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_CREDENTIALS",
        )
    await rpc_error(
        stack.login("victim-next", "Winter2025!!", metadata=attacker),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "LOGIN_THROTTLED",
    )
    user = await stack.sign_up()
    # The same address is refused even with right credentials; another address logs in fine.
    await rpc_error(
        stack.login(user.username, metadata=attacker), grpc.StatusCode.RESOURCE_EXHAUSTED, "LOGIN_THROTTLED"
    )
    assert await stack.login(user.username, metadata=[("x-envoy-external-address", "198.51.100.1")])
    # The last hop of x-forwarded-for (the one Envoy appends) names the client too.
    await rpc_error(
        stack.login(user.username, metadata=[("x-forwarded-for", "10.9.9.9, 203.0.113.7")]),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "LOGIN_THROTTLED",
    )


async def test_counters_live_in_the_database_and_survive_a_restart(start_stack: StartStack) -> None:
    stack = await start_stack()
    user = await stack.sign_up()
    for _ in range(5):
        await rpc_error(
            stack.login(user.username, "wrong password!"),
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_CREDENTIALS",
        )
    # A second auth replica on the same database sees the same back-off.
    replica = await start_stack()
    await rpc_error(replica.login(user.username), grpc.StatusCode.RESOURCE_EXHAUSTED, "LOGIN_THROTTLED")


async def test_concurrent_wrong_guesses_cannot_outrun_the_counter(stack: Stack) -> None:
    user = await stack.sign_up()
    results = await asyncio.gather(
        *(stack.login(user.username, f"guess number {i}") for i in range(30)), return_exceptions=True
    )
    codes = [r.code() for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(codes) == 30
    # Every attempt is charged before its password is checked, so at most the threshold's worth
    # of guesses (plus the one that sets the first back-off) ever reach the password check.
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) <= stack.settings.login_max_failures
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 30 - stack.settings.login_max_failures


async def test_login_input_is_validated(stack: Stack) -> None:
    await rpc_error(stack.login("", "x"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
    await rpc_error(stack.login("someone", ""), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
    await rpc_error(stack.login("someone", "p" * 2000), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")


async def test_users_down_during_login_is_unavailable_and_not_counted(stack: Stack) -> None:
    user = await stack.sign_up()
    await stack.users_host.server.stop(0)
    for _ in range(8):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.login(user.username)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_refused_internal_token_is_unavailable_not_a_wrong_password(start_stack: StartStack) -> None:
    # Users demands INTERNAL_TOKEN; auth's channel in these tests sends none (a misconfiguration
    # in production). That must not read as "wrong password": not 401, and not counted.
    stack = await start_stack(internal_token="a shared secret auth does not send")
    user = await stack.sign_up()
    for _ in range(stack.settings.login_max_failures + 3):
        await rpc_error(stack.login(user.username), grpc.StatusCode.UNAVAILABLE, "USERS_UNAVAILABLE")


@pytest.mark.parametrize("sql_url", ["sqlite"], indirect=True)
async def test_unknown_user_and_wrong_password_take_comparable_time(start_stack: StartStack) -> None:
    # Realistic-ish argon2 cost so that skipping the hash for an unknown account would show.
    stack = await start_stack(
        hasher=PasswordHasher(time_cost=2, memory_cost=16 * 1024, parallelism=1), login_max_failures=1000
    )
    user = await stack.sign_up()

    async def timed(name: str) -> float:
        started = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError):
            await stack.login(name, "wrong password!")
        return time.perf_counter() - started

    await timed(user.username)  # warm up both paths
    await timed("nobody")
    # Interleaved, so that a change in machine load during the test weighs on both paths alike.
    wrong: list[float] = []
    unknown: list[float] = []
    for i in range(9):
        wrong.append(await timed(user.username))
        unknown.append(await timed(f"nobody{i}"))
    fast, slow = sorted([statistics.median(wrong), statistics.median(unknown)])
    assert slow < fast * 2 + 0.01, (wrong, unknown)


# ---- keys ------------------------------------------------------------------------------------


async def test_jwks_verifies_a_token_with_plain_pyjwt(stack: Stack) -> None:
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    jwks = MessageToDict(
        await stack.auth.GetJwks(auth_pb2.GetJwksRequest()), preserving_proto_field_name=True
    )
    key_set = jwt.PyJWKSet.from_dict(jwks)
    kid = jwt.get_unverified_header(pair.access_token)["kid"]
    key = next(k for k in key_set.keys if k.key_id == kid)
    claims = jwt.decode(
        pair.access_token, key.key, algorithms=["ES256"], audience="pinexa", issuer="pinexa-auth"
    )
    assert claims["sub"] == user.id
    for jwk in jwks["keys"]:
        assert set(jwk) == {"kid", "kty", "alg", "use", "crv", "x", "y"}  # public parts only
        assert "d" not in jwk


async def test_the_dev_key_is_generated_once_and_kept(start_stack: StartStack) -> None:
    first = await start_stack()
    keys_dir = first.settings.jwt_keys_dir
    files = list(keys_dir.glob("*.pem"))
    assert len(files) == 1 and (files[0].stat().st_mode & 0o777) == 0o600
    kid = (await first.auth.GetJwks(auth_pb2.GetJwksRequest())).keys[0].kid
    second = await start_stack()
    assert (await second.auth.GetJwks(auth_pb2.GetJwksRequest())).keys[0].kid == kid
    assert list(keys_dir.glob("*.pem")) == files


async def test_health_and_reflection(stack: Stack) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    response = await health_pb2_grpc.HealthStub(stack.auth_channel).Check(
        health_pb2.HealthCheckRequest(service="pinexa.auth.v1.AuthService")
    )
    assert response.status == health_pb2.HealthCheckResponse.SERVING
