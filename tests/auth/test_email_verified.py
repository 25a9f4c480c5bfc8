"""Access tokens carry email_verified, and REQUIRE_VERIFIED_EMAIL refuses unverified logins:
real auth and users services, the verification mail read from a real SMTP server."""

from __future__ import annotations

from typing import Any

import jwt
from grpc import StatusCode

from pinexa.users.v1 import users_pb2
from tests.auth.conftest import PASSWORD, Stack, StartStack
from tests.support import mail_token, rpc_error, wait_until


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def _verify_by_mail(stack: Stack, user: users_pb2.User) -> None:
    async def mailed() -> bool:
        return any(m["To"] == user.email for m in stack.mailbox.messages)

    await wait_until(mailed, timeout=10, what="the verification mail")
    [message] = [m for m in stack.mailbox.messages if m["To"] == user.email]
    await stack.users.VerifyEmail(users_pb2.VerifyEmailRequest(token=mail_token(message)))


async def test_access_tokens_carry_email_verified(stack: Stack) -> None:
    user = await stack.sign_up()
    before = await stack.login(user.username)
    assert _claims(before.access_token)["email_verified"] is False
    await _verify_by_mail(stack, user)
    # The next refresh asks users again (GetIdentity), so the claim follows at once.
    refreshed = await stack.refresh(before.refresh_token)
    assert _claims(refreshed.access_token)["email_verified"] is True
    assert _claims((await stack.login(user.username)).access_token)["email_verified"] is True


async def test_require_verified_email_refuses_unverified_logins(start_stack: StartStack) -> None:
    stack = await start_stack(require_verified_email=True)
    user = await stack.sign_up()
    error = await rpc_error(stack.login(user.username), StatusCode.PERMISSION_DENIED, "EMAIL_NOT_VERIFIED")
    assert "confirm your e-mail address" in error.details()
    # A wrong password says only that: the verified state is no hint for a stranger.
    await rpc_error(
        stack.login(user.username, "wrong password!"), StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS"
    )
    await _verify_by_mail(stack, user)
    pair = await stack.login(user.username, PASSWORD)
    assert _claims(pair.access_token)["email_verified"] is True


async def test_verified_email_is_not_required_by_default(stack: Stack) -> None:
    user = await stack.sign_up()
    assert (await stack.login(user.username)).access_token
