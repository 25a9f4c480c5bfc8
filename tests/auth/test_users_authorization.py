"""The users service's authorization matrix with real access tokens issued by auth.

Actors: the account itself, another user, and an admin (bootstrapped from ADMIN_* settings and
logged in through auth like anyone else). Every rule is shown allowed for who may and refused
for who may not; the tokens are verified by users against auth's JWKS over gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import field_mask_pb2

from pinexa.users.v1 import users_pb2
from tests.auth.conftest import Stack, StartStack
from tests.support import bearer, error_info

ADMIN = {"admin_username": "root", "admin_email": "root@example.com", "admin_password": "root password 123"}


@dataclass
class Actors:
    stack: Stack
    target: users_pb2.User
    tokens: dict[str, str]

    def md(self, actor: str) -> tuple[tuple[str, str], ...]:
        return bearer(self.tokens[actor])


@pytest.fixture
async def actors(start_stack: StartStack) -> Actors:
    stack = await start_stack(**ADMIN)
    target = await stack.sign_up()
    other = await stack.sign_up()
    tokens = {
        "self": (await stack.login(target.username)).access_token,
        "other": (await stack.login(other.username)).access_token,
        "admin": (await stack.login("root", ADMIN["admin_password"])).access_token,
    }
    return Actors(stack, target, tokens)


async def denied(call: object, code: grpc.StatusCode = grpc.StatusCode.PERMISSION_DENIED) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    info = error_info(caught.value)
    return info.reason if info else ""


async def current(a: Actors) -> users_pb2.User:
    return await a.stack.users.GetUser(users_pb2.GetUserRequest(id=a.target.id), metadata=a.md("admin"))


def update(user: users_pb2.User, *paths: str) -> users_pb2.UpdateUserRequest:
    return users_pb2.UpdateUserRequest(user=user, update_mask=field_mask_pb2.FieldMask(paths=list(paths)))


@pytest.mark.parametrize(("actor", "allowed"), [("self", True), ("other", False), ("admin", True)])
async def test_get_user(actors: Actors, actor: str, allowed: bool) -> None:
    call = actors.stack.users.GetUser(
        users_pb2.GetUserRequest(id=actors.target.id), metadata=actors.md(actor)
    )
    if allowed:
        assert (await call).id == actors.target.id
    else:
        await denied(call)


@pytest.mark.parametrize(("actor", "allowed"), [("self", True), ("other", False), ("admin", True)])
async def test_update_user(actors: Actors, actor: str, allowed: bool) -> None:
    user = await current(actors)
    request = update(users_pb2.User(id=user.id, display_name=f"by {actor}", etag=user.etag), "display_name")
    call = actors.stack.users.UpdateUser(request, metadata=actors.md(actor))
    if allowed:
        assert (await call).display_name == f"by {actor}"
    else:
        await denied(call)
        assert (await current(actors)).display_name == user.display_name


@pytest.mark.parametrize(("actor", "allowed"), [("self", False), ("other", False), ("admin", True)])
async def test_role_change(actors: Actors, actor: str, allowed: bool) -> None:
    user = await current(actors)
    request = update(users_pb2.User(id=user.id, role=users_pb2.User.ADMIN, etag=user.etag), "role")
    call = actors.stack.users.UpdateUser(request, metadata=actors.md(actor))
    if allowed:
        assert (await call).role == users_pb2.User.ADMIN
    else:
        await denied(call)
        assert (await current(actors)).role == users_pb2.User.USER


@pytest.mark.parametrize(("actor", "allowed"), [("self", True), ("other", False), ("admin", True)])
async def test_delete_user(actors: Actors, actor: str, allowed: bool) -> None:
    call = actors.stack.users.DeleteUser(
        users_pb2.DeleteUserRequest(id=actors.target.id), metadata=actors.md(actor)
    )
    if allowed:
        await call
        await denied(
            actors.stack.users.GetUser(
                users_pb2.GetUserRequest(id=actors.target.id), metadata=actors.md("admin")
            ),
            grpc.StatusCode.NOT_FOUND,
        )
    else:
        await denied(call)
        assert (await current(actors)).id == actors.target.id


@pytest.mark.parametrize(("actor", "allowed"), [("self", False), ("other", False), ("admin", True)])
async def test_list_users(actors: Actors, actor: str, allowed: bool) -> None:
    call = actors.stack.users.ListUsers(users_pb2.ListUsersRequest(page_size=100), metadata=actors.md(actor))
    if allowed:
        assert actors.target.id in [u.id for u in (await call).users]
    else:
        assert await denied(call) == "ADMIN_ONLY"


async def test_get_me_is_the_caller_and_needs_a_token(actors: Actors) -> None:
    for actor in ("self", "other", "admin"):
        me = await actors.stack.users.GetMe(users_pb2.GetMeRequest(), metadata=actors.md(actor))
        assert (me.id == actors.target.id) == (actor == "self")
    reason = await denied(actors.stack.users.GetMe(users_pb2.GetMeRequest()), grpc.StatusCode.UNAUTHENTICATED)
    assert reason == "TOKEN_MISSING"


async def test_a_promoted_user_gets_admin_rights_after_refresh(actors: Actors) -> None:
    stack = actors.stack
    pair = await stack.login(actors.target.username)
    await denied(stack.users.ListUsers(users_pb2.ListUsersRequest(), metadata=bearer(pair.access_token)))
    user = await current(actors)
    await stack.users.UpdateUser(
        update(users_pb2.User(id=user.id, role=users_pb2.User.ADMIN, etag=user.etag), "role"),
        metadata=actors.md("admin"),
    )
    # The old access token still says "user" until it expires; the refreshed one says "admin".
    await denied(stack.users.ListUsers(users_pb2.ListUsersRequest(), metadata=bearer(pair.access_token)))
    refreshed = await stack.refresh(pair.refresh_token)
    listed = await stack.users.ListUsers(
        users_pb2.ListUsersRequest(), metadata=bearer(refreshed.access_token)
    )
    assert listed.users
