"""The kit's TokenVerifier refuses every forged or broken token with UNAUTHENTICATED and a stable
reason, handles key rotation, and survives its key source failing. Then the same forgeries are
sent to the real users and auth gRPC ports, whose interceptor must refuse them the same way."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc
import jwt
import pytest

from pinexa.auth.v1 import auth_pb2, auth_pb2_grpc
from pinexa.users.v1 import users_pb2
from services.auth.keys import KeyRing, SigningKey, generate_private_key
from services.auth.server import create_service as create_auth
from services.kit.errors import Unauthenticated, Unavailable
from services.kit.tokens import Jwk, StaticKeySource, TokenVerifier
from tests.auth.conftest import PASSWORD, StartStack
from tests.auth.forge import claims, forgeries, signed
from tests.support import AUDIENCE, ISSUER, bearer, error_info


def new_key(algorithm: str = "ES256", source: str = "test") -> SigningKey:
    return SigningKey.from_private_key(generate_private_key(algorithm), source=source)  # type: ignore[arg-type]


def verifier_for(source: Any, **options: Any) -> TokenVerifier:
    return TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE, algorithms=("ES256", "EdDSA"), **options)


async def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)
    return caught.value.reason


@pytest.fixture(params=["ES256", "EdDSA"], scope="module")
def key(request: pytest.FixtureRequest) -> SigningKey:
    return new_key(request.param)


async def test_a_valid_token_is_accepted(key: SigningKey) -> None:
    principal = await verifier_for(StaticKeySource([key.jwk])).verify(signed(key, claims("u1", "admin")))
    assert principal.user_id == "u1" and principal.is_admin


async def test_every_forgery_is_refused_with_its_reason(key: SigningKey) -> None:
    verifier = verifier_for(StaticKeySource([key.jwk]))
    outcomes = {name: await refused(verifier, token) for name, (token, _) in forgeries(key).items()}
    assert outcomes == {name: reason for name, (_, reason) in forgeries(key).items()}


async def test_missing_token_is_refused(key: SigningKey) -> None:
    assert await refused(verifier_for(StaticKeySource([key.jwk])), "") == "TOKEN_MISSING"


async def test_not_before_within_the_leeway_is_accepted(key: SigningKey) -> None:
    now = int(time.time())
    verifier = verifier_for(StaticKeySource([key.jwk]), leeway_seconds=30)
    # A verifier whose clock is 10 s behind the issuer's still accepts a fresh token...
    assert await verifier.verify(signed(key, claims(nbf=now + 10, iat=now + 10)))
    # ... and one that expired 10 s ago, within the same leeway.
    assert await verifier.verify(signed(key, claims(iat=now - 900, nbf=now - 900, exp=now - 10)))
    # Beyond the leeway it is refused.
    assert await refused(verifier, signed(key, claims(nbf=now + 45))) == "TOKEN_NOT_YET_VALID"
    assert await refused(verifier, signed(key, claims(exp=now - 45, iat=now - 900))) == "TOKEN_EXPIRED"


async def test_a_refused_token_is_not_cached_as_valid(key: SigningKey) -> None:
    verifier = verifier_for(StaticKeySource([key.jwk]))
    good = signed(key, claims())
    await verifier.verify(good)
    for token, _ in forgeries(key).values():
        with pytest.raises(Unauthenticated):
            await verifier.verify(token)
    assert await verifier.verify(good)


async def test_a_cached_token_stops_verifying_once_its_key_is_withdrawn(key: SigningKey) -> None:
    published = [key.jwk]
    verifier = verifier_for(StaticKeySource(lambda: published), max_key_age=0, min_refresh_interval=0)
    token = signed(key, claims())
    assert await verifier.verify(token)  # verified once, now cached
    published = []  # the key is withdrawn from the JWKS (e.g. it leaked)
    assert await refused(verifier, token) == "TOKEN_UNKNOWN_KID"


# ---- rotation and an unreliable key source ---------------------------------------------------


class FlakyKeys:
    """A key source the test edits and can break, counting fetches."""

    def __init__(self, keys: Sequence[SigningKey]) -> None:
        self.keys = list(keys)
        self.failing = False
        self.fetches = 0

    async def fetch(self) -> Sequence[Jwk]:
        self.fetches += 1
        if self.failing:
            raise ConnectionError("auth is down")
        return [k.jwk for k in reversed(self.keys)]


async def test_rotation_new_key_is_picked_up_old_key_keeps_verifying() -> None:
    old, new = new_key(source="old"), new_key(source="new")
    source = FlakyKeys([old])
    verifier = verifier_for(source, min_refresh_interval=0)
    old_token = signed(old, claims("u1"))
    assert (await verifier.verify(old_token)).user_id == "u1"

    source.keys.append(new)  # auth now publishes both and signs with the new one
    new_token = signed(new, claims("u2"))
    assert (await verifier.verify(new_token)).user_id == "u2"  # unknown kid -> refetch
    assert (await verifier.verify(signed(old, claims("u3")))).user_id == "u3"  # old still published

    source.keys.remove(old)  # after the longest token lifetime, the old key is retired
    await verifier.refresh_keys(force=True)
    assert await refused(verifier, signed(old, claims("u4"))) == "TOKEN_UNKNOWN_KID"


async def test_unknown_kid_refetches_at_most_once_per_interval() -> None:
    key = new_key()
    source = FlakyKeys([key])
    verifier = verifier_for(source, min_refresh_interval=60)
    await verifier.verify(signed(key, claims()))
    fetches = source.fetches
    stranger = new_key()
    for _ in range(20):  # a flood of tokens with unknown kids cannot hammer auth
        assert await refused(verifier, signed(stranger, claims())) == "TOKEN_UNKNOWN_KID"
    assert source.fetches == fetches


async def test_the_verifier_survives_its_key_source_failing() -> None:
    key = new_key()
    source = FlakyKeys([key])
    verifier = verifier_for(source, min_refresh_interval=0, max_key_age=0)
    await verifier.verify(signed(key, claims("u1")))
    source.failing = True
    # Keys are stale (max_key_age=0) and every refetch fails: the cached keys keep working.
    assert (await verifier.verify(signed(key, claims("u2")))).user_id == "u2"
    assert await refused(verifier, signed(new_key(), claims())) == "TOKEN_UNKNOWN_KID"
    source.failing = False
    assert (await verifier.verify(signed(key, claims("u3")))).user_id == "u3"


async def test_no_keys_ever_fetched_is_unavailable_not_a_401() -> None:
    key = new_key()
    source = FlakyKeys([key])
    source.failing = True
    with pytest.raises(Unavailable) as caught:
        await verifier_for(source, min_refresh_interval=0).verify(signed(key, claims()))
    assert caught.value.reason == "JWKS_UNAVAILABLE"


# ---- the same forgeries against real services ------------------------------------------------


async def test_real_services_refuse_every_forgery(start_stack: StartStack) -> None:
    key = new_key()
    stack = await start_stack(keys=KeyRing([key]))
    user = await stack.sign_up()
    pair = await stack.login(user.username)
    assert jwt.get_unverified_header(pair.access_token)["kid"] == key.kid
    assert (await stack.me(pair.access_token)).id == user.id

    for name, (token, reason) in forgeries(key, sub=user.id).items():
        # users: a protected method.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.users.GetMe(users_pb2.GetMeRequest(), metadata=bearer(token))
        info = error_info(caught.value)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
        assert info is not None and info.reason == reason, (name, info)
        # auth: Logout with all_sessions verifies with auth's own keys.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.auth.Logout(auth_pb2.LogoutRequest(all_sessions=True), metadata=bearer(token))
        info = error_info(caught.value)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
        assert info is not None and info.reason == reason, (name, info)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.users.GetMe(users_pb2.GetMeRequest())
    info = error_info(caught.value)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info is not None and info.reason == "TOKEN_MISSING"
    # None of the refused calls ended the real session.
    assert (await stack.refresh(pair.refresh_token)).access_token


async def test_real_services_follow_a_key_rotation(start_stack: StartStack) -> None:
    """Auth is replaced by an instance holding a new key as well (a rolling restart): new tokens
    are signed with the new key, users learns it on the unknown kid, and tokens signed with the
    old, still-published key keep working."""
    old = new_key(source="a-old")
    stack = await start_stack(keys=KeyRing([old]))
    user = await stack.sign_up()
    old_pair = await stack.login(user.username)
    assert (await stack.me(old_pair.access_token)).id == user.id  # users has fetched [old]

    new = new_key(source="b-new")
    rotated = await create_auth(stack.settings, users_channel=stack.users_channel, keys=KeyRing([old, new]))
    await rotated.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{rotated.port}")
    try:
        stack.jwks_from["auth"] = channel
        new_pair = await auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(username=user.username, password=PASSWORD)
        )
        assert jwt.get_unverified_header(new_pair.access_token)["kid"] == new.kid
        assert (await stack.me(new_pair.access_token)).id == user.id  # unknown kid -> refetch
        assert (await stack.me(old_pair.access_token)).id == user.id  # old key still published
        # A refresh token from before the rotation works on the new instance (same database).
        refreshed = await auth_pb2_grpc.AuthServiceStub(channel).Refresh(
            auth_pb2.RefreshRequest(refresh_token=old_pair.refresh_token)
        )
        assert jwt.get_unverified_header(refreshed.access_token)["kid"] == new.kid
        jwks = await auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest())
        assert [k.kid for k in jwks.keys] == [new.kid, old.kid]  # newest first
    finally:
        stack.jwks_from["auth"] = stack.auth_channel
        await channel.close()
        await rotated.stop(grace=1, drain=0)
