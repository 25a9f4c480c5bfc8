"""Password reset (issue 12) on the real auth and users servers, SQLite and PostgreSQL
(tests/auth/conftest.py), with a real SMTP server (aiosmtpd) that receives the mail: the link
in the real message, every session ended (refused by users within 2 s through auth's revocation
stream), the old password refused, the address verified, the login throttle cleared; the same
answer (and comparable time) for an unknown address; the limits; dead tokens; and two confirms
racing with one token.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from email.message import EmailMessage

import grpc
import pytest
import sqlalchemy as sa

from pinexa.auth.v1 import auth_pb2
from pinexa.users.v1 import users_pb2
from services.kit import sql
from services.users.schema import single_use_tokens
from tests.auth.conftest import PASSWORD, Stack, StartStack
from tests.auth.test_sessions import refused_within
from tests.support import bearer, error_info, field_violations, mail_token, rpc_error, wait_until

UNAUTH = grpc.StatusCode.UNAUTHENTICATED
NEW_PASSWORD = "a brand new passphrase"
BASE_URL = "https://app.example.com/accounts"


def client(address: str) -> tuple[tuple[str, str], ...]:
    return (("x-envoy-external-address", address),)


async def request_reset(
    stack: Stack, email: str, metadata: tuple[tuple[str, str], ...] = ()
) -> users_pb2.RequestPasswordResetResponse:
    return await stack.users.RequestPasswordReset(
        users_pb2.RequestPasswordResetRequest(email=email), metadata=metadata
    )


async def confirm(
    stack: Stack, token: str, new_password: str = NEW_PASSWORD
) -> auth_pb2.ConfirmPasswordResetResponse:
    return await stack.auth.ConfirmPasswordReset(
        auth_pb2.ConfirmPasswordResetRequest(token=token, new_password=new_password)
    )


def mails_to(stack: Stack, address: str, subject_end: str = "") -> list[EmailMessage]:
    return [
        m for m in stack.mailbox.messages if m["To"] == address and str(m["Subject"]).endswith(subject_end)
    ]


async def reset_mail(stack: Stack, address: str, count: int = 1) -> EmailMessage:
    """The `count`-th reset mail to `address`, once the SMTP server has it."""

    async def arrived() -> bool:
        return len(mails_to(stack, address, "password")) >= count and "Reset" in str(
            mails_to(stack, address, "password")[count - 1]["Subject"]
        )

    await wait_until(arrived, timeout=10, what=f"reset mail {count} to {address}")
    return mails_to(stack, address, "password")[count - 1]


def reset_token(message: EmailMessage) -> str:
    return mail_token(message, "/reset-password")


@pytest.fixture
async def stack(start_stack: StartStack) -> Stack:
    return await start_stack(public_base_url=BASE_URL)


async def test_a_reset_sets_the_password_ends_every_session_and_verifies_the_address(stack: Stack) -> None:
    user = await stack.sign_up()
    laptop, phone = await stack.login(user.username), await stack.login(user.username)
    assert not (await stack.me(laptop.access_token)).email_verified

    # Public: no token; the answer is empty.
    assert await request_reset(stack, user.email.upper()) == users_pb2.RequestPasswordResetResponse()
    message = await reset_mail(stack, user.email)
    assert message["Subject"] == "Reset your Pinexa password"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"{BASE_URL}/reset-password?token=" in text and user.username in text
    assert "30 minutes" in text
    token = reset_token(message)
    assert len(token) >= 43  # 256 bits

    response = await confirm(stack, token)
    assert response.revoked_sessions == 2
    for pair in (laptop, phone):
        await refused_within(stack, pair.access_token)
        await rpc_error(stack.refresh(pair.refresh_token), UNAUTH, "REFRESH_TOKEN_REVOKED")
    await rpc_error(stack.login(user.username), UNAUTH, "INVALID_CREDENTIALS")
    fresh = await stack.login(user.username, NEW_PASSWORD)
    me = await stack.me(fresh.access_token)
    assert me.email_verified and me.HasField("email_verified_at")

    # The address hears of it, and the link is spent.
    async def noticed() -> bool:
        return bool(mails_to(stack, user.email, "password was changed"))

    await wait_until(noticed, timeout=10, what="the 'password changed' notice")
    error = await rpc_error(confirm(stack, token, "yet another passphrase"), UNAUTH, "MAIL_TOKEN_USED")
    assert "already used" in error.details()
    await stack.login(user.username, NEW_PASSWORD)


async def test_an_unknown_address_gets_the_same_answer_and_no_mail(stack: Stack) -> None:
    user = await stack.sign_up()
    known = await request_reset(stack, user.email)
    unknown = await request_reset(stack, "nobody.at.all@example.com")
    assert known.SerializeToString() == unknown.SerializeToString() == b""
    await reset_mail(stack, user.email)
    await asyncio.sleep(0.5)  # the outbox worker has had its chance
    assert mails_to(stack, "nobody.at.all@example.com") == []


async def test_a_reset_clears_the_login_throttle(stack: Stack) -> None:
    user = await stack.sign_up()
    for _ in range(stack.settings.login_max_failures):
        await rpc_error(stack.login(user.username, "wrong password!"), UNAUTH, "INVALID_CREDENTIALS")
    await rpc_error(stack.login(user.username), grpc.StatusCode.RESOURCE_EXHAUSTED, "LOGIN_THROTTLED")
    await request_reset(stack, user.email)
    await confirm(stack, reset_token(await reset_mail(stack, user.email)))
    await stack.login(user.username, NEW_PASSWORD)  # at once: no back-off left


async def test_of_concurrent_confirms_with_one_token_exactly_one_succeeds(stack: Stack) -> None:
    user = await stack.sign_up()
    await stack.login(user.username)
    await request_reset(stack, user.email)
    token = reset_token(await reset_mail(stack, user.email))
    passwords = [f"racing passphrase {n}" for n in range(4)]
    results = await asyncio.gather(*(confirm(stack, token, p) for p in passwords), return_exceptions=True)
    won = [n for n, r in enumerate(results) if isinstance(r, auth_pb2.ConfirmPasswordResetResponse)]
    assert len(won) == 1, results
    for n, result in enumerate(results):
        if n != won[0]:
            assert isinstance(result, grpc.aio.AioRpcError) and result.code() == UNAUTH, result
            info = error_info(result)
            assert info is not None and info.reason == "MAIL_TOKEN_USED"
    await stack.login(user.username, passwords[won[0]])
    for n, password in enumerate(passwords):
        if n != won[0]:
            await rpc_error(stack.login(user.username, password), UNAUTH, "INVALID_CREDENTIALS")


async def test_spent_superseded_changed_and_expired_links_are_refused(stack: Stack) -> None:
    user = await stack.sign_up()
    await request_reset(stack, user.email)
    first = reset_token(await reset_mail(stack, user.email))
    await request_reset(stack, user.email)
    second = reset_token(await reset_mail(stack, user.email, 2))
    await rpc_error(confirm(stack, first), UNAUTH, "MAIL_TOKEN_SUPERSEDED")
    await rpc_error(confirm(stack, "not-a-token-we-made"), UNAUTH, "MAIL_TOKEN_INVALID")

    # A bad new password is refused before the token is spent.
    error = await rpc_error(confirm(stack, second, "short"), grpc.StatusCode.INVALID_ARGUMENT)
    assert "new_password" in field_violations(error)
    # A password change ends the link.
    mine = await stack.login(user.username)
    await stack.auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(
            id=user.id, current_password=PASSWORD, new_password="changed it myself"
        ),
        metadata=bearer(mine.access_token),
    )
    await rpc_error(confirm(stack, second), UNAUTH, "MAIL_TOKEN_SUPERSEDED")

    # And a link runs out (its expiry moved into the past in the database).
    await request_reset(stack, user.email)
    third = reset_token(await reset_mail(stack, user.email, 3))
    engine = sql.create_engine(stack.users_settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.update(single_use_tokens).values(expires_at=time.time() - 1))
    finally:
        await engine.dispose()
    await rpc_error(confirm(stack, third), UNAUTH, "MAIL_TOKEN_EXPIRED")
    await stack.login(user.username, "changed it myself")


async def test_missing_fields_are_invalid_input(stack: Stack) -> None:
    error = await rpc_error(confirm(stack, "", ""), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
    assert set(field_violations(error)) == {"token", "new_password"}
    error = await rpc_error(request_reset(stack, "not an address"), grpc.StatusCode.INVALID_ARGUMENT)
    assert set(field_violations(error)) == {"email"}


async def test_requests_are_limited_per_address_and_per_client_known_or_not(start_stack: StartStack) -> None:
    stack = await start_stack(
        mail_limit_per_address=2, mail_limit_per_client=5, mail_limit_window_seconds=600.0
    )
    user = await stack.sign_up()
    for address in (user.email, "nobody@example.com"):
        await request_reset(stack, address, client("10.1.0.1"))
        await request_reset(stack, address, client("10.1.0.2"))
        error = await rpc_error(
            request_reset(stack, address, client("10.1.0.3")),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "TOO_MANY_MAILS",
        )
        assert dict(error.initial_metadata())["retry-after"] in ("600", "599")
    for n in range(5):
        await request_reset(stack, f"someone{n}@example.com", client("10.1.0.9"))
    await rpc_error(
        request_reset(stack, "someone.else@example.com", client("10.1.0.9")),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_MAILS",
    )
    await reset_mail(stack, user.email, 2)
    await asyncio.sleep(0.5)
    assert len(mails_to(stack, user.email, "password")) == 2  # no third mail


async def test_a_known_and_an_unknown_address_take_comparable_time(start_stack: StartStack) -> None:
    """Timing is noisy on a loaded CI machine, so the bound is generous: the medians of many
    interleaved requests within a factor of 2 (or 3 ms) of each other. Each request is for an address not
    asked for before (as a prober's would be), and starts once the mail of the one before has
    gone (a known address's mail is sent in the background, after the answer). Without the
    equalisation (an unknown address answered after its read, no decoy transaction) it fails:
    measured 7.2 ms against 2.4 ms on SQLite, 15.4 against 3.8 ms on PostgreSQL; with it 5.9
    against 5.6 and 18.4 against 16.5 ms (load average 10 on 2 cores)."""
    stack = await start_stack(mail_limit_per_client=1000)
    known_addresses = [(await stack.sign_up()).email for _ in range(30)]
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    for n, address in enumerate(known_addresses):
        for kind, to in (("known", address), ("unknown", f"nobody{n}@example.com")):
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            await request_reset(stack, to)
            timings[kind].append(time.perf_counter() - started)
    known, unknown = statistics.median(timings["known"]), statistics.median(timings["unknown"])
    print(f"reset request median: known {known * 1000:.2f} ms, unknown {unknown * 1000:.2f} ms")  # noqa: T201
    assert max(known, unknown) <= max(2 * min(known, unknown), min(known, unknown) + 0.003), (known, unknown)


async def test_a_reset_keeps_the_second_factor(stack: Stack) -> None:
    """A reset proves the mailbox, not the authenticator: an account with a TOTP factor still
    needs its code after a reset (issue 13), and the new password reaches the code step."""
    from tests.auth.test_mfa import enrolled, mfa_token

    user, device, _ = await enrolled(stack)
    await request_reset(stack, user.email)
    await confirm(stack, reset_token(await reset_mail(stack, user.email)))
    await rpc_error(stack.login(user.username), UNAUTH, "INVALID_CREDENTIALS")  # the old password
    challenge = await mfa_token(stack, user.username, NEW_PASSWORD)
    pair = await stack.auth.LoginMfa(auth_pb2.LoginMfaRequest(mfa_token=challenge, code=device.code()))
    assert (await stack.me(pair.access_token)).id == user.id
