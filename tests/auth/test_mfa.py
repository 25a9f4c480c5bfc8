"""Login with a second factor (issue 13): MFA_REQUIRED and its single-use mfa_token, LoginMfa
with a TOTP or a recovery code, replay and tolerance, throttling of wrong codes, the amr and
auth_time claims (kept by refresh), and Reauthenticate.

Real auth and users servers on SQLite and PostgreSQL (tests/auth/conftest.py); pyotp is the
authenticator. Both services share one controllable clock, moved past a step's end rather
than slept through, so codes are picked by RFC 6238 step and a test never straddles a step
boundary.
"""

from __future__ import annotations

import uuid

import grpc
import jwt
import pyotp

from pinexa.auth.v1 import auth_pb2
from pinexa.users.v1 import users_pb2
from tests.auth.conftest import PASSWORD, Stack, StartStack
from tests.support import bearer, error_info, rpc_error

UNAUTH = grpc.StatusCode.UNAUTHENTICATED


def _early_in_a_step(stack: Stack) -> int:
    """The current RFC 6238 step of the stack's clock (auth's and users'), with at least 6 s of
    it left (a test's calls take well under that): near a step's end the clock is moved on to
    the next step instead of sleeping (by at most 6.5 s, well within the tokens' leeway)."""
    if stack.clock() % 30 > 24:
        stack.clock.advance(30 - stack.clock() % 30 + 0.5)
    return int(stack.clock() // 30)


class Authenticator:
    def __init__(self, secret: str, step: int) -> None:
        self.totp = pyotp.TOTP(secret)
        self.step = step

    def code(self, offset: int = 0) -> str:
        """The code of the step `offset` steps from the test's current one."""
        return self.totp.generate_otp(self.step + offset)


async def enrolled(stack: Stack) -> tuple[users_pb2.User, Authenticator, list[str]]:
    """A new account with an active factor, activated with the previous step's code (so the
    current and the next step's codes are still unused)."""
    step = _early_in_a_step(stack)
    user = await stack.sign_up()
    token = (await stack.login(user.username)).access_token
    enrolment = await stack.users.EnrollTotp(users_pb2.EnrollTotpRequest(id=user.id), metadata=bearer(token))
    device = Authenticator(enrolment.secret, step)
    activated = await stack.users.ActivateTotp(
        users_pb2.ActivateTotpRequest(id=user.id, code=device.code(-1)), metadata=bearer(token)
    )
    return user, device, list(activated.recovery_codes)


async def mfa_token(stack: Stack, username: str, password: str = PASSWORD) -> str:
    error = await rpc_error(stack.login(username, password), UNAUTH, "MFA_REQUIRED")
    info = error_info(error)
    assert info is not None and info.metadata["expires_in"] == "300"
    return info.metadata["mfa_token"]


def claims(access_token: str) -> dict[str, object]:
    return dict(jwt.decode(access_token, options={"verify_signature": False}))


async def test_a_password_alone_gets_pwd_and_the_login_time(stack: Stack) -> None:
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    token = claims(pair.access_token)
    assert token["amr"] == ["pwd"] and token["auth_time"] == token["iat"]
    stack.clock.advance(60)
    refreshed = claims((await stack.refresh(pair.refresh_token)).access_token)
    assert refreshed["amr"] == ["pwd"] and refreshed["auth_time"] == token["auth_time"]


async def test_login_with_password_then_code(stack: Stack) -> None:
    user, device, _ = await enrolled(stack)
    await rpc_error(stack.login(user.username, "a wrong password"), UNAUTH, "INVALID_CREDENTIALS")
    challenge = await mfa_token(stack, user.username)
    pair = await stack.auth.LoginMfa(auth_pb2.LoginMfaRequest(mfa_token=challenge, code=device.code()))
    assert pair.refresh_token and pair.device_token
    token = claims(pair.access_token)
    assert token["amr"] == ["pwd", "otp"] and token["auth_time"] == token["iat"]
    assert (await stack.me(pair.access_token)).id == user.id
    # The token is single-use, even with another good code.
    await rpc_error(
        stack.auth.LoginMfa(auth_pb2.LoginMfaRequest(mfa_token=challenge, code=device.code(1))),
        UNAUTH,
        "MFA_TOKEN_INVALID",
    )
    # Refresh keeps how the session was authenticated, and when.
    stack.clock.advance(120)
    refreshed = claims((await stack.refresh(pair.refresh_token)).access_token)
    assert refreshed["amr"] == ["pwd", "otp"] and refreshed["auth_time"] == token["auth_time"]


async def test_a_code_is_accepted_once_and_two_steps_off_never(stack: Stack) -> None:
    user, device, _ = await enrolled(stack)
    # The activation's code (previous step) is spent: a replay.
    challenge = await mfa_token(stack, user.username)
    for code in (device.code(-1), device.code(-2), device.code(2)):
        await rpc_error(
            stack.auth.LoginMfa(auth_pb2.LoginMfaRequest(mfa_token=challenge, code=code)),
            UNAUTH,
            "INVALID_SECOND_FACTOR",
        )
    await stack.auth.LoginMfa(auth_pb2.LoginMfaRequest(mfa_token=challenge, code=device.code()))
    again = await mfa_token(stack, user.username)
    await rpc_error(
        stack.auth.LoginMfa(auth_pb2.LoginMfaRequest(mfa_token=again, code=device.code())),
        UNAUTH,
        "INVALID_SECOND_FACTOR",
    )


async def test_a_recovery_code_logs_in_once(stack: Stack) -> None:
    user, _, codes = await enrolled(stack)
    pair = await stack.auth.LoginMfa(
        auth_pb2.LoginMfaRequest(mfa_token=await mfa_token(stack, user.username), recovery_code=codes[0])
    )
    assert claims(pair.access_token)["amr"] == ["pwd", "otp"]
    await rpc_error(
        stack.auth.LoginMfa(
            auth_pb2.LoginMfaRequest(mfa_token=await mfa_token(stack, user.username), recovery_code=codes[0])
        ),
        UNAUTH,
        "INVALID_SECOND_FACTOR",
    )


async def test_the_mfa_token_expires_and_is_bound_to_its_login(stack: Stack) -> None:
    user, device, _ = await enrolled(stack)
    challenge = await mfa_token(stack, user.username)
    for bad in ("", "not-a-token", "x" * 300):
        error = await rpc_error(
            stack.auth.LoginMfa(auth_pb2.LoginMfaRequest(mfa_token=bad, code=device.code()))
        )
        assert error.code() in (UNAUTH, grpc.StatusCode.INVALID_ARGUMENT)
    await rpc_error(
        stack.auth.LoginMfa(auth_pb2.LoginMfaRequest(mfa_token=challenge)), grpc.StatusCode.INVALID_ARGUMENT
    )
    stack.clock.advance(301)
    await rpc_error(
        stack.auth.LoginMfa(auth_pb2.LoginMfaRequest(mfa_token=challenge, code=device.code())),
        UNAUTH,
        "MFA_TOKEN_INVALID",
    )


async def test_wrong_codes_are_throttled_per_account(stack: Stack) -> None:
    user, device, _ = await enrolled(stack)
    challenge = await mfa_token(stack, user.username)
    wrong = "000000" if device.code() != "000000" else "111111"
    for _ in range(5):
        await rpc_error(
            stack.auth.LoginMfa(auth_pb2.LoginMfaRequest(mfa_token=challenge, code=wrong)),
            UNAUTH,
            "INVALID_SECOND_FACTOR",
        )
    # The sixth is in back-off, even with the right code, and from a fresh password step.
    await rpc_error(
        stack.auth.LoginMfa(auth_pb2.LoginMfaRequest(mfa_token=challenge, code=wrong)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "MFA_THROTTLED",
    )
    fresh = await mfa_token(stack, user.username)
    await rpc_error(
        stack.auth.LoginMfa(auth_pb2.LoginMfaRequest(mfa_token=fresh, code=device.code())),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "MFA_THROTTLED",
    )
    stack.clock.advance(2)  # the back-off passes; the right code works and resets the count
    await stack.auth.LoginMfa(auth_pb2.LoginMfaRequest(mfa_token=fresh, code=device.code()))


async def test_the_device_token_path_asks_for_the_second_factor_too(stack: Stack) -> None:
    user, device, _ = await enrolled(stack)
    first = await stack.auth.LoginMfa(
        auth_pb2.LoginMfaRequest(mfa_token=await mfa_token(stack, user.username), code=device.code())
    )
    error = await rpc_error(
        stack.login(user.username, device_token=first.device_token), UNAUTH, "MFA_REQUIRED"
    )
    assert error_info(error) is not None


async def test_reauthenticate_renews_auth_time_of_the_same_session(start_stack: StartStack) -> None:
    stack = await start_stack()
    user, device, codes = await enrolled(stack)
    pair = await stack.auth.LoginMfa(
        auth_pb2.LoginMfaRequest(mfa_token=await mfa_token(stack, user.username), code=device.code())
    )
    before = claims(pair.access_token)
    # auth's clock is the tests' fake one (it does not follow real time): moved within the
    # verifiers' 30 s leeway, so the tokens it issues stay valid for the real-time checks.
    stack.clock.advance(20)
    await rpc_error(stack.auth.Reauthenticate(auth_pb2.ReauthenticateRequest(code=device.code(1))), UNAUTH)
    await rpc_error(
        stack.auth.Reauthenticate(
            auth_pb2.ReauthenticateRequest(code=device.code()), metadata=bearer(pair.access_token)
        ),
        UNAUTH,
        "INVALID_SECOND_FACTOR",
    )
    renewed = await stack.auth.Reauthenticate(
        auth_pb2.ReauthenticateRequest(code=device.code(1)), metadata=bearer(pair.access_token)
    )
    after = claims(renewed.access_token)
    assert after["sid"] == before["sid"] and after["amr"] == ["pwd", "otp"]
    assert int(str(after["auth_time"])) >= int(str(before["auth_time"])) + 20
    # The session keeps it: the next refresh carries the new auth_time.
    refreshed = claims((await stack.refresh(pair.refresh_token)).access_token)
    assert refreshed["auth_time"] == after["auth_time"]
    # A recovery code reauthenticates as well; a password-only account has nothing to prove.
    await stack.auth.Reauthenticate(
        auth_pb2.ReauthenticateRequest(recovery_code=codes[1]), metadata=bearer(pair.access_token)
    )
    plain = await stack.sign_up()
    plain_token = (await stack.login(plain.username)).access_token
    await rpc_error(
        stack.auth.Reauthenticate(
            auth_pb2.ReauthenticateRequest(code="123456"), metadata=bearer(plain_token)
        ),
        UNAUTH,
        "INVALID_SECOND_FACTOR",
    )


# -- step-up and the admin's removal -----------------------------------------------------------

ADMIN = {"admin_username": "root", "admin_email": "root@example.com", "admin_password": "root password 123"}
NEW_PASSWORD = "a brand new passphrase"


async def test_sensitive_changes_need_a_recent_second_factor(start_stack: StartStack) -> None:
    stack = await start_stack(step_up_max_age_seconds=5)
    user, device, _ = await enrolled(stack)
    challenge = await mfa_token(stack, user.username)
    pair = await stack.auth.LoginMfa(auth_pb2.LoginMfaRequest(mfa_token=challenge, code=device.code()))
    fresh = bearer(pair.access_token)

    # Too old: auth's clock moves past STEP_UP_MAX_AGE_SECONDS (within the tokens' 30 s leeway,
    # as that clock is the tests' fake one; users' own check is in tests/users/test_totp.py).
    stack.clock.advance(6)
    await rpc_error(
        stack.auth.ChangePassword(
            auth_pb2.ChangePasswordRequest(id=user.id, current_password=PASSWORD, new_password=NEW_PASSWORD),
            metadata=fresh,
        ),
        UNAUTH,
        "REAUTHENTICATION_REQUIRED",
    )
    renewed = await stack.auth.Reauthenticate(
        auth_pb2.ReauthenticateRequest(code=device.code(1)), metadata=fresh
    )
    changed = await stack.auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(id=user.id, current_password=PASSWORD, new_password=NEW_PASSWORD),
        metadata=bearer(renewed.access_token),
    )
    assert changed.revoked_sessions == 1  # the enrolment's session; the caller's stays


async def test_enabling_the_factor_makes_older_sessions_step_up(stack: Stack) -> None:
    step = _early_in_a_step(stack)
    user = await stack.sign_up()
    password_only = bearer((await stack.login(user.username)).access_token)
    enrolment = await stack.users.EnrollTotp(users_pb2.EnrollTotpRequest(id=user.id), metadata=password_only)
    device = Authenticator(enrolment.secret, step)
    await stack.users.ActivateTotp(
        users_pb2.ActivateTotpRequest(id=user.id, code=device.code(-1)), metadata=password_only
    )
    refused = {
        "DisableTotp": stack.users.DisableTotp(
            users_pb2.DisableTotpRequest(id=user.id), metadata=password_only
        ),
        "RegenerateRecoveryCodes": stack.users.RegenerateRecoveryCodes(
            users_pb2.RegenerateRecoveryCodesRequest(id=user.id), metadata=password_only
        ),
        "UpdateUser email": stack.users.UpdateUser(
            users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id, email="new@example.com")),
            metadata=password_only,
        ),
        "DeleteUser": stack.users.DeleteUser(users_pb2.DeleteUserRequest(id=user.id), metadata=password_only),
        "ChangePassword": stack.auth.ChangePassword(
            auth_pb2.ChangePasswordRequest(id=user.id, current_password=PASSWORD, new_password=NEW_PASSWORD),
            metadata=password_only,
        ),
    }
    for name, call in refused.items():
        error = await rpc_error(call, UNAUTH, "REAUTHENTICATION_REQUIRED")
        assert error_info(error).metadata["max_age_seconds"] == "600", name  # type: ignore[union-attr]
    # Not sensitive: the display name changes without step-up.
    await stack.users.UpdateUser(
        users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id, display_name="Ada")),
        metadata=password_only,
    )
    # After reauthenticating, the same session may.
    stepped = bearer(
        (
            await stack.auth.Reauthenticate(
                auth_pb2.ReauthenticateRequest(code=device.code()), metadata=password_only
            )
        ).access_token
    )
    codes = await stack.users.RegenerateRecoveryCodes(
        users_pb2.RegenerateRecoveryCodesRequest(id=user.id), metadata=stepped
    )
    assert len(codes.recovery_codes) == 10
    updated = await stack.users.UpdateUser(
        users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id, email="new@example.com")),
        metadata=stepped,
    )
    assert updated.pending_email == "new@example.com"  # pending until the new address confirms it
    await stack.users.DisableTotp(users_pb2.DisableTotpRequest(id=user.id), metadata=stepped)
    # Off: a password logs in again without a second step, and nothing needs step-up.
    assert (await stack.login(user.username)).access_token
    await stack.users.DeleteUser(users_pb2.DeleteUserRequest(id=user.id), metadata=password_only)


async def test_only_an_admin_removes_a_factor_and_that_ends_the_sessions(start_stack: StartStack) -> None:
    stack = await start_stack(**ADMIN)
    admin = bearer((await stack.login("root", ADMIN["admin_password"])).access_token)
    user, device, codes = await enrolled(stack)
    other = await stack.sign_up()
    other_token = bearer((await stack.login(other.username)).access_token)
    pair = await stack.auth.LoginMfa(
        auth_pb2.LoginMfaRequest(mfa_token=await mfa_token(stack, user.username), code=device.code())
    )
    own = bearer(pair.access_token)
    for metadata in (own, other_token):
        await rpc_error(
            stack.auth.RemoveSecondFactor(auth_pb2.RemoveSecondFactorRequest(id=user.id), metadata=metadata),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    # An admin may only remove: enrolling or disabling for someone else is refused.
    await rpc_error(
        stack.users.EnrollTotp(users_pb2.EnrollTotpRequest(id=user.id), metadata=admin),
        grpc.StatusCode.PERMISSION_DENIED,
        "SELF_ONLY",
    )
    await rpc_error(
        stack.users.DisableTotp(users_pb2.DisableTotpRequest(id=user.id), metadata=admin),
        grpc.StatusCode.PERMISSION_DENIED,
        "SELF_ONLY",
    )
    await rpc_error(
        stack.users.RegenerateRecoveryCodes(
            users_pb2.RegenerateRecoveryCodesRequest(id=user.id), metadata=admin
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "SELF_ONLY",
    )
    await rpc_error(
        stack.auth.RemoveSecondFactor(
            auth_pb2.RemoveSecondFactorRequest(id=str(uuid.uuid4())), metadata=admin
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    removed = await stack.auth.RemoveSecondFactor(
        auth_pb2.RemoveSecondFactorRequest(id=user.id), metadata=admin
    )
    assert removed.removed and removed.revoked_sessions >= 2  # the enrolment's login and the MFA one
    await rpc_error(stack.refresh(pair.refresh_token), UNAUTH, "REFRESH_TOKEN_REVOKED")
    # The password alone logs in now; the old recovery codes are gone with the factor.
    assert claims((await stack.login(user.username)).access_token)["amr"] == ["pwd"]
    again = await stack.auth.RemoveSecondFactor(
        auth_pb2.RemoveSecondFactorRequest(id=user.id), metadata=admin
    )
    assert not again.removed
    assert codes  # (shown once; nothing left to check them against)
