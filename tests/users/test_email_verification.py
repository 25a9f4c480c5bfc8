"""E-mail verification and e-mail change, over gRPC against the real users service, its real
database (SQLite, PostgreSQL) and a real SMTP server (aiosmtpd) that receives the mail."""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa
from google.rpc import error_details_pb2
from grpc import StatusCode
from grpc_status import rpc_status

from pinexa.users.v1 import users_internal_pb2, users_pb2
from services.kit import single_use, sql
from services.users.model import PASSWORD_RESET
from services.users.schema import mail_outbox, single_use_tokens
from tests.support import free_port, mail_token, rpc_error, wait_until
from tests.users.conftest import PASSWORD, StartUsers, Users


async def _verify(users: Users, token: str) -> users_pb2.VerifyEmailResponse:
    return await users.stub.VerifyEmail(users_pb2.VerifyEmailRequest(token=token))


async def _resend(
    users: Users, user: users_pb2.User, metadata: object = None
) -> users_pb2.SendVerificationEmailResponse:
    return await users.stub.SendVerificationEmail(
        users_pb2.SendVerificationEmailRequest(id=user.id), metadata=metadata or users.auth(user)
    )


async def _mail_to(users: Users, address: str, count: int = 1) -> list:  # type: ignore[type-arg]
    async def arrived() -> bool:
        return len([m for m in users.mailbox.messages if m["To"] == address]) >= count

    await wait_until(arrived, timeout=10, what=f"{count} mail(s) to {address}")
    return [m for m in users.mailbox.messages if m["To"] == address]


async def test_sign_up_mails_a_link_that_verifies_the_address_once(users: Users) -> None:
    user = await users.sign_up()
    assert not user.email_verified and not user.HasField("email_verified_at")
    [message] = await _mail_to(users, user.email)
    assert message["Subject"] == "Confirm your e-mail address for Pinexa"
    token = mail_token(message)
    assert len(token) >= 43  # 32 bytes, URL-safe base64

    verified = await _verify(users, token)
    assert (verified.user_id, verified.email, verified.email_verified) == (user.id, user.email, True)
    account = await users.stub.GetUser(users_pb2.GetUserRequest(id=user.id), metadata=users.auth(user))
    assert account.email_verified and account.HasField("email_verified_at") and account.etag != user.etag
    # auth learns it for the access token's email_verified claim, at login and at refresh.
    identity = await users.internal.GetIdentity(users_internal_pb2.GetIdentityRequest(user_id=user.id))
    login = await users.internal.VerifyCredentials(
        users_internal_pb2.VerifyCredentialsRequest(username=user.username, password=PASSWORD)
    )
    assert identity.email_verified and login.email_verified

    error = await rpc_error(_verify(users, token), StatusCode.UNAUTHENTICATED, "MAIL_TOKEN_USED")
    assert "already used" in error.details()


async def test_unverified_accounts_say_so_to_auth(users: Users) -> None:
    user = await users.sign_up()
    identity = await users.internal.GetIdentity(users_internal_pb2.GetIdentityRequest(user_id=user.id))
    assert not identity.email_verified


async def test_bad_superseded_and_expired_tokens_are_refused(users: Users) -> None:
    await rpc_error(_verify(users, ""), StatusCode.INVALID_ARGUMENT)
    await rpc_error(_verify(users, "no-such-token"), StatusCode.UNAUTHENTICATED, "MAIL_TOKEN_INVALID")
    user = await users.sign_up()
    [first] = await _mail_to(users, user.email)
    assert (await _resend(users, user)).email == user.email
    [_, second] = await _mail_to(users, user.email, 2)
    await rpc_error(_verify(users, mail_token(first)), StatusCode.UNAUTHENTICATED, "MAIL_TOKEN_SUPERSEDED")

    engine = sql.create_engine(users.url)  # let the live token run out
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.update(single_use_tokens).values(expires_at=0.0))
    finally:
        await engine.dispose()
    await rpc_error(_verify(users, mail_token(second)), StatusCode.UNAUTHENTICATED, "MAIL_TOKEN_EXPIRED")


async def test_only_the_account_or_an_admin_may_ask_for_a_new_mail(users: Users) -> None:
    owner, other = await users.sign_up(), await users.sign_up()
    await rpc_error(_resend(users, owner, users.auth(other)), StatusCode.PERMISSION_DENIED)
    await rpc_error(
        users.stub.SendVerificationEmail(users_pb2.SendVerificationEmailRequest(id=owner.id)),
        StatusCode.UNAUTHENTICATED,
    )
    assert (await _resend(users, owner, users.admin())).email == owner.email
    await _mail_to(users, owner.email, 2)
    [first, _] = await _mail_to(users, owner.email, 2)
    await rpc_error(_verify(users, mail_token(first)), StatusCode.UNAUTHENTICATED, "MAIL_TOKEN_SUPERSEDED")
    latest = [m for m in users.mailbox.messages if m["To"] == owner.email][-1]
    await _verify(users, mail_token(latest))
    await rpc_error(_resend(users, owner), StatusCode.FAILED_PRECONDITION, "ALREADY_VERIFIED")


def _retry_delay(error: object) -> float:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    raise AssertionError("no RetryInfo")


async def test_resends_are_limited_per_address(start_users: StartUsers) -> None:
    users = await start_users(mail_limit_per_address=2, mail_limit_window_seconds=600.0)
    user = await users.sign_up()
    await _resend(users, user)
    await _resend(users, user)
    error = await rpc_error(_resend(users, user), StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_MAILS")
    assert 590 < _retry_delay(error) <= 600
    assert dict(error.initial_metadata())["retry-after"] in ("600", "599")
    assert len(await _mail_to(users, user.email, 3)) == 3  # sign-up + two resends, no fourth
    # Another address is not held back by this one's budget.
    await _resend(users, await users.sign_up())


async def test_resends_are_limited_per_client(start_users: StartUsers) -> None:
    users = await start_users(mail_limit_per_client=2, mail_limit_per_address=5)
    first, second = await users.sign_up(), await users.sign_up()
    await _resend(users, first)
    await _resend(users, second)
    await rpc_error(_resend(users, first), StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_MAILS")


async def test_an_e_mail_change_waits_for_the_new_address_and_tells_the_old_one(users: Users) -> None:
    user = await users.sign_up()
    await _mail_to(users, user.email)
    changed = await users.stub.UpdateUser(
        users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id, email="new.address@example.com")),
        metadata=users.auth(user),
    )
    assert changed.email == user.email and changed.pending_email == "new.address@example.com"
    [verify] = await _mail_to(users, "new.address@example.com")
    [_, notice] = await _mail_to(users, user.email, 2)
    assert "new.address@example.com" in notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert notice["Subject"] == "Your Pinexa e-mail address is being changed"
    # Until verified, the old address is the login and the new one is nobody's.
    old_login = await users.internal.ResolveLogin(users_internal_pb2.ResolveLoginRequest(login=user.email))
    new_login = await users.internal.ResolveLogin(
        users_internal_pb2.ResolveLoginRequest(login="new.address@example.com")
    )
    assert old_login.user_id == user.id and new_login.user_id == ""

    verified = await _verify(users, mail_token(verify))
    assert verified.email == "new.address@example.com"
    account = await users.stub.GetUser(users_pb2.GetUserRequest(id=user.id), metadata=users.auth(user))
    assert (account.email, account.pending_email, account.email_verified) == (
        "new.address@example.com",
        "",
        True,
    )
    moved = await users.internal.ResolveLogin(
        users_internal_pb2.ResolveLoginRequest(login="new.address@example.com")
    )
    assert moved.user_id == user.id


async def test_changing_back_cancels_a_pending_change(users: Users) -> None:
    user = await users.sign_up()
    pending = await users.stub.UpdateUser(
        users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id, email="elsewhere@example.com")),
        metadata=users.auth(user),
    )
    assert pending.pending_email == "elsewhere@example.com"
    [verify] = await _mail_to(users, "elsewhere@example.com")
    back = await users.stub.UpdateUser(
        users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id, email=user.email.upper())),
        metadata=users.auth(user),
    )
    assert back.pending_email == "" and back.email == user.email
    await rpc_error(_verify(users, mail_token(verify)), StatusCode.UNAUTHENTICATED, "MAIL_TOKEN_SUPERSEDED")


async def test_an_address_in_use_is_refused_and_a_pending_one_goes_to_the_first_to_verify(
    users: Users,
) -> None:
    taken, first, second = await users.sign_up(), await users.sign_up(), await users.sign_up()
    error = await rpc_error(
        users.stub.UpdateUser(
            users_pb2.UpdateUserRequest(user=users_pb2.User(id=first.id, email=taken.email)),
            metadata=users.auth(first),
        ),
        StatusCode.ALREADY_EXISTS,
    )
    assert "e-mail" in error.details()
    for account in (first, second):  # pending addresses are not reserved
        await users.stub.UpdateUser(
            users_pb2.UpdateUserRequest(user=users_pb2.User(id=account.id, email="shared@example.com")),
            metadata=users.auth(account),
        )
    mails = await _mail_to(users, "shared@example.com", 2)
    tokens = {m.get_body(("plain",)).get_content().split()[1].rstrip(","): mail_token(m) for m in mails}  # type: ignore[union-attr]
    assert (await _verify(users, tokens[first.username])).user_id == first.id
    await rpc_error(_verify(users, tokens[second.username]), StatusCode.ALREADY_EXISTS, "EMAIL_TAKEN")


async def test_the_outbox_keeps_no_address_or_token_in_clear_and_loses_nothing(
    start_users: StartUsers,
) -> None:
    users = await start_users(smtp_url=f"smtp://127.0.0.1:{free_port()}")  # no mail server there
    user = await users.sign_up()
    engine = sql.create_engine(users.url)
    try:
        async with engine.connect() as connection:
            [row] = (await connection.execute(sa.select(mail_outbox))).all()
            tokens = (await connection.execute(sa.select(single_use_tokens))).all()
    finally:
        await engine.dispose()
    assert user.email not in repr(row) and user.username not in repr(row)
    assert len(tokens) == 1 and user.email not in repr(tokens)


async def test_a_password_change_mails_a_notice_and_ends_the_reset_links(users: Users) -> None:
    """Users owns the account's address and the mail outbox: the internal ChangePassword (auth's)
    queues the "password changed" notice in the transaction that changes the password, and every
    live password reset token of the account dies with the old password."""
    user = await users.sign_up()
    await _mail_to(users, user.email)  # the sign-up's verification mail
    reset = single_use.prepare(
        purpose=PASSWORD_RESET, subject=user.id, ttl_seconds=1800, now=time.time()
    )  # as a reset request stores it (issued here: the reset RPCs are not there yet)
    engine = sql.create_engine(users.url)
    try:
        async with engine.begin() as connection:
            await single_use.issue(connection, reset, now=time.time())
        await users.internal.ChangePassword(
            users_internal_pb2.ChangePasswordRequest(
                user_id=user.id, current_password=PASSWORD, new_password="a brand new secret"
            )
        )
        [_, notice] = await _mail_to(users, user.email, 2)
        assert notice["Subject"].endswith("password was changed")
        assert user.username in notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        async with engine.begin() as connection:
            with pytest.raises(single_use.TokenRefused) as refused:
                await single_use.consume(
                    connection, purpose=PASSWORD_RESET, token=reset.token, now=time.time()
                )
    finally:
        await engine.dispose()
    assert refused.value.reason == "MAIL_TOKEN_SUPERSEDED"
    # A refused change (wrong current password) mails nothing.
    await rpc_error(
        users.internal.ChangePassword(
            users_internal_pb2.ChangePasswordRequest(
                user_id=user.id, current_password=PASSWORD, new_password="another new secret"
            )
        ),
        StatusCode.UNAUTHENTICATED,
        "INVALID_CREDENTIALS",
    )
    await asyncio.sleep(0.5)
    assert len([m for m in users.mailbox.messages if m["To"] == user.email]) == 2
