"""Every authorization rule of the users service, each shown refused and allowed.

| call                       | no token | self | another user          | admin |
|----------------------------|----------|------|-----------------------|-------|
| CreateUser (sign-up)       | allowed  | -    | -                     | -     |
| GetUser / UpdateUser / Del | 401      | ok   | PERMISSION_DENIED     | ok    |
| GetMe                      | 401      | ok   | -                     | -     |
| ListUsers                  | 401      | PERMISSION_DENIED (ADMIN_ONLY)  | ok    |
| change a role              | -        | PERMISSION_DENIED (ROLE_CHANGE_FORBIDDEN) | ok |

A refused caller learns nothing about whether the account exists: asking for a missing id gets the
same PERMISSION_DENIED as asking for someone else's.
"""

from __future__ import annotations

import uuid

import grpc
from google.protobuf import field_mask_pb2

from pinexa.users.v1 import users_internal_pb2, users_pb2
from tests.support import error_info, rpc_error
from tests.users.conftest import Users

Code = grpc.StatusCode


def _reason(error: grpc.aio.AioRpcError) -> str:
    info = error_info(error)
    return info.reason if info else ""


async def test_sign_up_needs_no_token(users: Users) -> None:
    user = await users.sign_up()
    assert user.id


async def test_every_other_public_method_needs_a_token(users: Users) -> None:
    user = await users.sign_up()
    calls = [
        users.stub.GetUser(users_pb2.GetUserRequest(id=user.id)),
        users.stub.GetMe(users_pb2.GetMeRequest()),
        users.stub.ListUsers(users_pb2.ListUsersRequest()),
        users.stub.UpdateUser(users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id, display_name="x"))),
        users.stub.DeleteUser(users_pb2.DeleteUserRequest(id=user.id)),
    ]
    for call in calls:
        error = await rpc_error(call)
        assert error.code() == Code.UNAUTHENTICATED
        assert _reason(error) == "TOKEN_MISSING"
    # Nothing changed.
    assert await users.stub.GetUser(users_pb2.GetUserRequest(id=user.id), metadata=users.auth(user)) == user


async def test_a_forged_token_is_refused(users: Users) -> None:
    user = await users.sign_up()
    token = users.keys.mint(user.id)
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    error = await rpc_error(
        users.stub.GetMe(users_pb2.GetMeRequest(), metadata=(("authorization", f"Bearer {tampered}"),))
    )
    assert error.code() == Code.UNAUTHENTICATED


async def test_get_self_and_admin_allowed_other_refused(users: Users) -> None:
    owner, other = await users.sign_up(), await users.sign_up()
    request = users_pb2.GetUserRequest(id=owner.id)
    assert (await users.stub.GetUser(request, metadata=users.auth(owner))).id == owner.id
    assert (await users.stub.GetUser(request, metadata=users.admin())).id == owner.id
    error = await rpc_error(users.stub.GetUser(request, metadata=users.auth(other)))
    assert error.code() == Code.PERMISSION_DENIED


async def test_refusal_does_not_reveal_whether_an_account_exists(users: Users) -> None:
    caller = await users.sign_up()
    existing = await users.sign_up()
    missing = str(uuid.uuid4())
    for target in (existing.id, missing):
        for call in (
            users.stub.GetUser(users_pb2.GetUserRequest(id=target), metadata=users.auth(caller)),
            users.stub.DeleteUser(users_pb2.DeleteUserRequest(id=target), metadata=users.auth(caller)),
            users.stub.UpdateUser(
                users_pb2.UpdateUserRequest(user=users_pb2.User(id=target, display_name="x")),
                metadata=users.auth(caller),
            ),
        ):
            error = await rpc_error(call)
            assert error.code() == Code.PERMISSION_DENIED
            assert _reason(error) == "PERMISSION_DENIED"
    # An admin does learn it.
    error = await rpc_error(users.stub.GetUser(users_pb2.GetUserRequest(id=missing), metadata=users.admin()))
    assert error.code() == Code.NOT_FOUND


async def test_update_self_and_admin_allowed_other_refused(users: Users) -> None:
    owner, other = await users.sign_up(), await users.sign_up()

    def rename(name: str) -> users_pb2.UpdateUserRequest:
        return users_pb2.UpdateUserRequest(user=users_pb2.User(id=owner.id, display_name=name))

    assert (
        await users.stub.UpdateUser(rename("by self"), metadata=users.auth(owner))
    ).display_name == "by self"
    assert (
        await users.stub.UpdateUser(rename("by admin"), metadata=users.admin())
    ).display_name == "by admin"
    error = await rpc_error(users.stub.UpdateUser(rename("by other"), metadata=users.auth(other)))
    assert error.code() == Code.PERMISSION_DENIED
    current = await users.stub.GetUser(users_pb2.GetUserRequest(id=owner.id), metadata=users.auth(owner))
    assert current.display_name == "by admin"


async def test_delete_self_and_admin_allowed_other_refused(users: Users) -> None:
    first, second, other = await users.sign_up(), await users.sign_up(), await users.sign_up()
    error = await rpc_error(
        users.stub.DeleteUser(users_pb2.DeleteUserRequest(id=first.id), metadata=users.auth(other))
    )
    assert error.code() == Code.PERMISSION_DENIED
    assert await users.stub.GetUser(users_pb2.GetUserRequest(id=first.id), metadata=users.admin())
    await users.stub.DeleteUser(users_pb2.DeleteUserRequest(id=first.id), metadata=users.auth(first))
    await users.stub.DeleteUser(users_pb2.DeleteUserRequest(id=second.id), metadata=users.admin())
    for gone in (first, second):
        error = await rpc_error(
            users.stub.GetUser(users_pb2.GetUserRequest(id=gone.id), metadata=users.admin())
        )
        assert error.code() == Code.NOT_FOUND
    error = await rpc_error(
        users.stub.DeleteUser(users_pb2.DeleteUserRequest(id=first.id), metadata=users.admin())
    )
    assert error.code() == Code.NOT_FOUND


async def test_list_is_admin_only(users: Users) -> None:
    user = await users.sign_up()
    error = await rpc_error(users.stub.ListUsers(users_pb2.ListUsersRequest(), metadata=users.auth(user)))
    assert error.code() == Code.PERMISSION_DENIED
    assert _reason(error) == "ADMIN_ONLY"
    page = await users.stub.ListUsers(users_pb2.ListUsersRequest(), metadata=users.admin())
    assert user.id in [u.id for u in page.users]


async def test_a_user_cannot_change_their_own_role(users: Users) -> None:
    user = await users.sign_up()
    promote_masked = users_pb2.UpdateUserRequest(
        user=users_pb2.User(id=user.id, role=users_pb2.User.ADMIN),
        update_mask=field_mask_pb2.FieldMask(paths=["role"]),
    )
    promote_put = users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id, role=users_pb2.User.ADMIN))
    keep_masked = users_pb2.UpdateUserRequest(
        user=users_pb2.User(id=user.id, role=users_pb2.User.USER),
        update_mask=field_mask_pb2.FieldMask(paths=["role"]),
    )
    for request in (promote_masked, promote_put, keep_masked):
        error = await rpc_error(users.stub.UpdateUser(request, metadata=users.auth(user)))
        assert error.code() == Code.PERMISSION_DENIED
        assert _reason(error) == "ROLE_CHANGE_FORBIDDEN"
    identity = await users.internal.GetIdentity(users_internal_pb2.GetIdentityRequest(user_id=user.id))
    assert identity.role == users_pb2.User.USER
    # Repeating one's own role in a full PUT body (as read) grants nothing and is not an error.
    same = await users.stub.UpdateUser(
        users_pb2.UpdateUserRequest(
            user=users_pb2.User(id=user.id, role=users_pb2.User.USER, display_name="ok")
        ),
        metadata=users.auth(user),
    )
    assert same.role == users_pb2.User.USER and same.display_name == "ok"


async def test_another_user_cannot_grant_a_role(users: Users) -> None:
    target, other = await users.sign_up(), await users.sign_up()
    error = await rpc_error(
        users.stub.UpdateUser(
            users_pb2.UpdateUserRequest(user=users_pb2.User(id=target.id, role=users_pb2.User.ADMIN)),
            metadata=users.auth(other),
        )
    )
    assert error.code() == Code.PERMISSION_DENIED


async def test_an_admin_can_change_roles(users: Users) -> None:
    user = await users.sign_up()
    promoted = await users.stub.UpdateUser(
        users_pb2.UpdateUserRequest(
            user=users_pb2.User(id=user.id, role=users_pb2.User.ADMIN),
            update_mask=field_mask_pb2.FieldMask(paths=["role"]),
        ),
        metadata=users.admin(),
    )
    assert promoted.role == users_pb2.User.ADMIN
    identity = await users.internal.GetIdentity(users_internal_pb2.GetIdentityRequest(user_id=user.id))
    assert identity.role == users_pb2.User.ADMIN
    demoted = await users.stub.UpdateUser(
        users_pb2.UpdateUserRequest(user=users_pb2.User(id=user.id, role=users_pb2.User.USER)),
        metadata=users.admin(),
    )
    assert demoted.role == users_pb2.User.USER
