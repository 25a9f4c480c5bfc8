"""Start-up: the admin account from ADMIN_* settings, idempotently; and argon2 rehashing."""

from __future__ import annotations

import grpc
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from pinexa.users.v1 import users_internal_pb2, users_pb2
from services.kit import sql
from services.kit.errors import AlreadyExists
from services.users.passwords import Passwords
from services.users.schema import users as users_table
from tests.users.conftest import PASSWORD, StartUsers

ADMIN = {
    "admin_username": "Root",
    "admin_email": "root@example.com",
    "admin_password": "a long admin password",
}


async def _password_hash(url: str, username: str) -> str:
    engine = sql.create_engine(url)
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    select(users_table.c.password_hash).where(users_table.c.username == username)
                )
            ).one()
        return str(row.password_hash)
    finally:
        await engine.dispose()


async def test_admin_is_created_at_start_and_can_log_in(start_users: StartUsers) -> None:
    users = await start_users(**ADMIN)
    identity = await users.internal.VerifyCredentials(
        users_internal_pb2.VerifyCredentialsRequest(username="root", password="a long admin password")
    )
    assert identity.role == users_pb2.User.ADMIN
    assert identity.username == "root"
    # The admin can do admin things with a token for that account.
    page = await users.stub.ListUsers(
        users_pb2.ListUsersRequest(), metadata=users.auth(identity.user_id, "admin")
    )
    assert [u.username for u in page.users] == ["root"]


async def test_bootstrap_is_idempotent_across_restarts_and_replicas(start_users: StartUsers) -> None:
    first = await start_users(**ADMIN)
    second = await start_users(**ADMIN)  # a second replica, or a restart, on the same database
    page = await second.stub.ListUsers(users_pb2.ListUsersRequest(), metadata=second.admin())
    assert [u.username for u in page.users] == ["root"]
    assert page.users[0].role == users_pb2.User.ADMIN
    assert first.host.port != second.host.port


async def test_bootstrap_promotes_an_existing_account_and_keeps_its_password(
    start_users: StartUsers, sql_url: str
) -> None:
    # The operator signed up as root before setting ADMIN_*, with the same password.
    plain = await start_users()
    user = await plain.sign_up("root", email="someone@example.com", password=ADMIN["admin_password"])
    assert user.role == users_pb2.User.USER
    before = await _password_hash(sql_url, "root")
    restarted = await start_users(**ADMIN)
    identity = await restarted.internal.VerifyCredentials(
        users_internal_pb2.VerifyCredentialsRequest(username="root", password=ADMIN["admin_password"])
    )
    assert identity.user_id == user.id
    assert identity.role == users_pb2.User.ADMIN
    assert await _password_hash(sql_url, "root") == before


async def test_bootstrap_refuses_to_promote_someone_elses_account(start_users: StartUsers) -> None:
    # Someone signed up as root before the operator configured ADMIN_USERNAME=root: that must not
    # make them admin. Start-up refuses, naming the setting, and the account stays a user.
    plain = await start_users()
    squatter = await plain.sign_up("root", email="someone@example.com", password=PASSWORD)
    with pytest.raises(AlreadyExists) as caught:
        await start_users(**ADMIN)
    assert caught.value.metadata["field"] == "ADMIN_USERNAME"
    identity = await plain.internal.GetIdentity(users_internal_pb2.GetIdentityRequest(user_id=squatter.id))
    assert identity.role == users_pb2.User.USER


async def test_bootstrap_refuses_an_email_that_belongs_to_another_account(start_users: StartUsers) -> None:
    plain = await start_users()
    await plain.sign_up("someone", email="root@example.com")
    with pytest.raises(AlreadyExists):
        await start_users(**ADMIN)


async def test_a_hash_with_old_parameters_is_upgraded_on_login(start_users: StartUsers, sql_url: str) -> None:
    old = await start_users(passwords=Passwords(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)))
    user = await old.sign_up("rehash")
    before = await _password_hash(sql_url, "rehash")
    assert "m=64,t=1,p=1" in before
    stronger = await start_users(
        passwords=Passwords(PasswordHasher(time_cost=2, memory_cost=128, parallelism=1))
    )
    identity = await stronger.internal.VerifyCredentials(
        users_internal_pb2.VerifyCredentialsRequest(username="rehash", password=PASSWORD)
    )
    assert identity.user_id == user.id
    after = await _password_hash(sql_url, "rehash")
    assert "m=128,t=2,p=1" in after
    # The account did not visibly change, and the new hash still verifies.
    same = await stronger.stub.GetUser(users_pb2.GetUserRequest(id=user.id), metadata=stronger.auth(user))
    assert same.etag == user.etag
    await stronger.internal.VerifyCredentials(
        users_internal_pb2.VerifyCredentialsRequest(username="rehash", password=PASSWORD)
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await stronger.internal.VerifyCredentials(
            users_internal_pb2.VerifyCredentialsRequest(username="rehash", password="not the password")
        )
