"""Auth's rules on in-memory collaborators and a frozen clock: no network, no database, each case
a few milliseconds. The rules: refresh rotation, the grace window and reuse detection, token
expiry, login throttling and its back-off steps, device tokens, the one answer to a wrong password
and an unknown account, logout.

`MemoryAuthStore` keeps the SQL store's contract (test_store_conformance.py runs the same tests
on both) and `MemoryUsersClient` stands for the users service. The real-server tests
(test_auth_service.py, test_device_tokens.py) check the same rules end to end over gRPC.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest

from services.auth.domain import (
    IP_FAILURE_FACTOR,
    AuthDomain,
    AuthPolicy,
    TokenPair,
    account_key,
    hash_token,
    unknown_login_key,
)
from services.auth.keys import KeyRing, SigningKey, generate_private_key
from services.auth.memory import MemoryAuthStore, MemoryUsersClient
from services.kit.context import Principal
from services.kit.errors import PinexaError, ResourceExhausted
from tests.support import FakeClock

T0 = 1_700_000_000.0
PASSWORD = "correct horse battery"
WRONG = "wrong horse battery"
IP = "198.51.100.7"
POLICY = AuthPolicy(
    access_token_ttl=900,
    refresh_token_ttl=3600,
    reuse_grace=10.0,
    max_failures=3,
    backoff_base=1.0,
    backoff_max=4.0,
    device_token_ttl=86400,
)
KEY = SigningKey.from_private_key(generate_private_key("ES256"), source="test")


@dataclass
class World:
    auth: AuthDomain
    store: MemoryAuthStore
    users: MemoryUsersClient
    clock: FakeClock
    ada: str  # the id of the account "ada"

    async def login(self, password: str = PASSWORD, *, name: str = "ada", **kwargs: Any) -> TokenPair:
        return await self.auth.login(name, password, client_ip=kwargs.pop("client_ip", IP), **kwargs)


def world_with(policy: AuthPolicy = POLICY) -> World:
    clock = FakeClock(start=T0)
    store, users = MemoryAuthStore(), MemoryUsersClient()
    ada = users.add("ada", PASSWORD, email="ada@example.com")
    auth = AuthDomain(store=store, users=users, keys=KeyRing([KEY], clock=clock), policy=policy, clock=clock)
    return World(auth, store, users, clock, ada)


@pytest.fixture
def world() -> World:
    return world_with()


async def outcome(call: Awaitable[object]) -> str:
    """ "OK", or the reason of the error the call raised."""
    try:
        await call
    except PinexaError as error:
        return error.reason
    return "OK"


# ---- refresh: rotation, the grace window, reuse, expiry -------------------------------------

# Steps: (seconds to advance, index of the token to present, expected outcome). Token 0 is the
# login's; every successful refresh appends the token it returned.
REFRESH_CASES: dict[str, list[tuple[float, int, str]]] = {
    "rotation: each token once": [(0, 0, "OK"), (1, 1, "OK"), (1, 2, "OK")],
    "repeat within the grace window gets a sibling": [(0, 0, "OK"), (9, 0, "OK"), (0, 1, "OK"), (0, 2, "OK")],
    "repeat at the window's last instant": [(0, 0, "OK"), (10, 0, "OK")],
    "repeat after the window is reuse; the family is revoked": [
        (0, 0, "OK"),
        (10.5, 0, "REFRESH_TOKEN_REUSED"),
        (0, 1, "REFRESH_TOKEN_REVOKED"),
        (0, 0, "REFRESH_TOKEN_REVOKED"),
    ],
    "reuse of a middle token revokes the newest": [
        (0, 0, "OK"),
        (1, 1, "OK"),
        (20, 1, "REFRESH_TOKEN_REUSED"),
        (0, 2, "REFRESH_TOKEN_REVOKED"),
    ],
    "refresh token alive just before its expiry": [(3599.9, 0, "OK")],
    "refresh token expired at its ttl": [(3600, 0, "REFRESH_TOKEN_EXPIRED")],
    "a successor has its own ttl": [(3000, 0, "OK"), (3000, 1, "OK")],
}


@pytest.mark.parametrize("steps", REFRESH_CASES.values(), ids=REFRESH_CASES.keys())
async def test_refresh(world: World, steps: list[tuple[float, int, str]]) -> None:
    tokens = [(await world.login()).refresh_token]
    for advance, index, expected in steps:
        world.clock.advance(advance)
        try:
            pair = await world.auth.refresh(tokens[index])
        except PinexaError as error:
            assert error.reason == expected
        else:
            assert expected == "OK"
            tokens.append(pair.refresh_token)


async def test_reuse_revokes_with_its_reason_and_logs_no_token(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    first = (await world.login()).refresh_token
    await world.auth.refresh(first)
    world.clock.advance(11)
    with caplog.at_level(logging.INFO):
        assert await outcome(world.auth.refresh(first)) == "REFRESH_TOKEN_REUSED"
    record = await world.store.find_token(hash_token(first))
    assert record is not None and record.session_revoked_at == T0 + 11
    assert await world.store.session_revoked_reason(record.session_id) == "token_reuse"
    assert first not in caplog.text and hash_token(first) not in caplog.text


@pytest.mark.parametrize("grace", [0.0, 10.0])
async def test_with_no_grace_window_every_repeat_is_reuse(grace: float) -> None:
    world = world_with(AuthPolicy(reuse_grace=grace))
    first = (await world.login()).refresh_token
    await world.auth.refresh(first)
    world.clock.advance(0.001)
    assert await outcome(world.auth.refresh(first)) == ("OK" if grace else "REFRESH_TOKEN_REUSED")


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("", "INVALID_INPUT"),
        ("not-a-token", "REFRESH_TOKEN_INVALID"),
        ("x" * 300, "REFRESH_TOKEN_INVALID"),
    ],
    ids=["empty", "unknown", "overlong"],
)
async def test_refresh_refuses_what_is_not_a_token(world: World, token: str, expected: str) -> None:
    assert await outcome(world.auth.refresh(token)) == expected


async def test_refresh_of_a_deleted_account_revokes_its_session_and_devices(world: World) -> None:
    pair = await world.login()
    del world.users.accounts[world.ada]
    assert await outcome(world.auth.refresh(pair.refresh_token)) == "ACCOUNT_NOT_FOUND"
    record = await world.store.find_token(hash_token(pair.refresh_token))
    assert (
        record is not None
        and await world.store.session_revoked_reason(record.session_id) == "account_deleted"
    )
    assert await world.store.device_state(hash_token(pair.device_token)) is None


async def test_users_down_during_refresh_leaves_the_token_unspent(world: World) -> None:
    pair = await world.login()
    world.users.unavailable = True
    assert await outcome(world.auth.refresh(pair.refresh_token)) == "USERS_UNAVAILABLE"
    world.users.unavailable = False
    world.clock.advance(60)  # far past the grace window: it was never spent, so no reuse
    assert await outcome(world.auth.refresh(pair.refresh_token)) == "OK"


@pytest.mark.parametrize("ttl", [60, 900])
async def test_access_token_expiry_is_the_policy_ttl_from_the_clock(ttl: int) -> None:
    world = world_with(AuthPolicy(access_token_ttl=ttl))
    world.clock.advance(5.5)
    pair = await world.login()
    claims = jwt.decode(
        pair.access_token,
        KEY.private_key.public_key(),  # type: ignore[arg-type]
        algorithms=["ES256"],
        audience="pinexa",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert (claims["sub"], claims["role"]) == (world.ada, "user")
    assert claims["iat"] == claims["nbf"] == int(T0 + 5.5)
    assert claims["exp"] == claims["iat"] + ttl and pair.expires_in == ttl


# ---- login throttling -----------------------------------------------------------------------

# Steps: (seconds to advance, right password?, expected outcome, retry_after of a throttled one).
# max_failures 3, back-off 1 s doubling up to 4 s.
THROTTLE_CASES: dict[str, list[tuple[float, bool, str, float | None]]] = {
    "the failure at the threshold starts a 1 s back-off": [
        (0, False, "INVALID_CREDENTIALS", None),
        (0, False, "INVALID_CREDENTIALS", None),
        (0, False, "INVALID_CREDENTIALS", None),
        (0, False, "LOGIN_THROTTLED", 1.0),
        (0.5, True, "LOGIN_THROTTLED", 0.5),  # even the right password waits
        (0.5, True, "OK", None),
    ],
    "back-off doubles, then stays at the maximum": [
        *[(0, False, "INVALID_CREDENTIALS", None)] * 3,
        (1, False, "INVALID_CREDENTIALS", None),
        (0, False, "LOGIN_THROTTLED", 2.0),
        (2, False, "INVALID_CREDENTIALS", None),
        (0, False, "LOGIN_THROTTLED", 4.0),
        (4, False, "INVALID_CREDENTIALS", None),
        (0, False, "LOGIN_THROTTLED", 4.0),
    ],
    "a success resets the count": [
        (0, False, "INVALID_CREDENTIALS", None),
        (0, False, "INVALID_CREDENTIALS", None),
        (0, True, "OK", None),
        (0, False, "INVALID_CREDENTIALS", None),
        (0, False, "INVALID_CREDENTIALS", None),
        (0, False, "INVALID_CREDENTIALS", None),
        (0, False, "LOGIN_THROTTLED", 1.0),
    ],
    "failures a day old are forgotten": [
        (0, False, "INVALID_CREDENTIALS", None),
        (0, False, "INVALID_CREDENTIALS", None),
        (86400.5, False, "INVALID_CREDENTIALS", None),
        (0, False, "INVALID_CREDENTIALS", None),
        (0, True, "OK", None),
    ],
}


@pytest.mark.parametrize("steps", THROTTLE_CASES.values(), ids=THROTTLE_CASES.keys())
async def test_throttle(world: World, steps: list[tuple[float, bool, str, float | None]]) -> None:
    for advance, right, expected, retry_after in steps:
        world.clock.advance(advance)
        try:
            await world.login(PASSWORD if right else WRONG)
        except PinexaError as error:
            assert error.reason == expected
            if retry_after is not None:
                assert isinstance(error, ResourceExhausted) and error.retry_after == pytest.approx(
                    retry_after
                )
        else:
            assert expected == "OK"


async def test_a_success_clears_the_account_counter(world: World) -> None:
    await outcome(world.login(WRONG))
    await world.login()
    assert await world.store.throttle_state(account_key(world.ada)) == (0, 0.0)


@pytest.mark.parametrize("name", ["ada", "ADA", " ada@example.com ", "Ada@Example.com"])
async def test_every_name_of_an_account_shares_one_counter(world: World, name: str) -> None:
    for _ in range(POLICY.max_failures):
        await outcome(world.login(WRONG, name=name))
    assert await outcome(world.login(name="ada")) == "LOGIN_THROTTLED"


async def test_a_client_ip_is_throttled_across_accounts(world: World) -> None:
    budget = POLICY.max_failures * IP_FAILURE_FACTOR
    for i in range(budget):
        assert await outcome(world.login(WRONG, name=f"nobody{i}")) == "INVALID_CREDENTIALS"
    assert await outcome(world.login()) == "LOGIN_THROTTLED"  # the right password, from that address
    assert await outcome(world.login(client_ip="203.0.113.1")) == "OK"  # from another one


async def test_users_down_during_login_is_not_counted(world: World) -> None:
    world.users.unavailable = True
    for _ in range(POLICY.max_failures + 2):
        assert await outcome(world.login(WRONG)) == "USERS_UNAVAILABLE"
    world.users.unavailable = False
    assert await outcome(world.login()) == "OK"


# ---- the same answer for an unknown account and a wrong password ------------------------------


@pytest.mark.parametrize(
    ("name", "password"),
    [("ada", WRONG), ("nobody", WRONG), ("nobody", PASSWORD), ("nobody@example.com", PASSWORD)],
    ids=["wrong password", "unknown name", "unknown name, someone's password", "unknown e-mail"],
)
async def test_unknown_account_answers_as_a_wrong_password(world: World, name: str, password: str) -> None:
    with pytest.raises(PinexaError) as raised:
        await world.login(password, name=name)
    assert (type(raised.value).__name__, raised.value.reason, str(raised.value)) == (
        "Unauthenticated",
        "INVALID_CREDENTIALS",
        "the username or password is incorrect",
    )
    # ... and is throttled the same way, on a counter of its own.
    for _ in range(POLICY.max_failures - 1):
        await outcome(world.login(password, name=name))
    assert await outcome(world.login(password, name=name)) == "LOGIN_THROTTLED"
    if name.startswith("nobody"):
        assert await world.store.throttle_state(unknown_login_key(name)) is not None


# ---- device tokens ------------------------------------------------------------------------


async def flood(world: World) -> None:
    """Strangers put ada's account into back-off."""
    for _ in range(POLICY.max_failures):
        await outcome(world.login(WRONG, client_ip="192.0.2.1"))
    assert await outcome(world.login(client_ip="192.0.2.2")) == "LOGIN_THROTTLED"


async def test_the_owner_with_a_device_token_gets_in_during_a_flood(world: World) -> None:
    device = (await world.login()).device_token
    await flood(world)
    pair = await world.login(device_token=device)
    assert pair.device_token == device  # renewed, not replaced
    assert await world.store.throttle_state(account_key(world.ada)) == (POLICY.max_failures, T0 + 1.0)


# Steps: (seconds to advance, right password?, expected outcome) of logins with one device token.
DEVICE_CASES: dict[str, list[tuple[float, bool, str]]] = {
    "wrong guesses with a stolen token, then it is locked": [(0, False, "INVALID_CREDENTIALS")] * 3,
    "a success resets its failures": [
        (0, False, "INVALID_CREDENTIALS"),
        (0, False, "INVALID_CREDENTIALS"),
        (0, True, "OK"),
        (0, False, "INVALID_CREDENTIALS"),
        (0, False, "INVALID_CREDENTIALS"),
        (0, True, "OK"),
    ],
    "each use renews its expiry": [(80000, True, "OK"), (80000, True, "OK"), (80000, True, "OK")],
}


@pytest.mark.parametrize("steps", DEVICE_CASES.values(), ids=DEVICE_CASES.keys())
async def test_device_token(world: World, steps: list[tuple[float, bool, str]]) -> None:
    device = (await world.login()).device_token
    for advance, right, expected in steps:
        world.clock.advance(advance)
        assert await outcome(world.login(PASSWORD if right else WRONG, device_token=device)) == expected
    state = await world.store.device_state(hash_token(device))
    assert state is not None
    wrong_in_a_row = len(steps) - max((i + 1 for i, (_, right, _) in enumerate(steps) if right), default=0)
    assert state.failures == wrong_in_a_row
    assert (state.locked_at is not None) == (wrong_in_a_row >= POLICY.max_failures)
    if steps[-1][1]:  # a success renews the expiry from now
        assert state.expires_at == world.clock() + POLICY.device_token_ttl


async def test_a_locked_device_token_is_ignored_and_replaced(world: World) -> None:
    device = (await world.login()).device_token
    for _ in range(POLICY.max_failures):
        await outcome(world.login(WRONG, device_token=device))
    # The owner's right password still works, as a stranger's login, with a new device token.
    pair = await world.login(device_token=device)
    assert pair.device_token and pair.device_token != device


@pytest.mark.parametrize(
    ("advance", "name", "kept"),
    [
        (86399, "ada", True),
        (86400, "ada", False),  # expired at its ttl
        (0, "ada@example.com", False),  # issued for another login name
    ],
    ids=["before expiry", "at expiry", "other login name"],
)
async def test_a_device_token_that_does_not_fit_is_treated_as_none(
    world: World, advance: float, name: str, kept: bool
) -> None:
    device = (await world.login()).device_token
    world.clock.advance(advance)
    pair = await world.login(name=name, device_token=device)
    assert (pair.device_token == device) == kept


async def test_a_device_token_of_a_deleted_account_does_not_serve_its_successor(world: World) -> None:
    device = (await world.login()).device_token
    del world.users.accounts[world.ada]
    newcomer = world.users.add("ada", PASSWORD)
    pair = await world.login(device_token=device)
    assert pair.device_token != device and await world.store.device_state(hash_token(device)) is None
    state = await world.store.device_state(hash_token(pair.device_token))
    assert state is not None and state.user_id == newcomer


async def test_users_down_with_a_device_token_is_not_counted(world: World) -> None:
    device = (await world.login()).device_token
    world.users.unavailable = True
    assert await outcome(world.login(WRONG, device_token=device)) == "USERS_UNAVAILABLE"
    state = await world.store.device_state(hash_token(device))
    assert state is not None and state.failures == 0


# ---- logout -------------------------------------------------------------------------------


def principal(user_id: str) -> Principal:
    return Principal(user_id=user_id, role="user", token_id="t", expires_at=int(T0) + 900)


@pytest.mark.parametrize(
    ("all_sessions", "who", "expected"),
    [
        (False, None, "OK"),  # the refresh token is enough
        (False, "ada", "OK"),
        (False, "someone-else", "REFRESH_TOKEN_NOT_YOURS"),
        (True, None, "TOKEN_MISSING"),
        (True, "ada", "OK"),
    ],
)
async def test_logout(world: World, all_sessions: bool, who: str | None, expected: str) -> None:
    first, second = await world.login(), await world.login()
    caller = None if who is None else principal(world.ada if who == "ada" else who)
    assert (
        await outcome(world.auth.logout(first.refresh_token, all_sessions=all_sessions, principal=caller))
        == expected
    )
    ended = {
        pair.refresh_token: await outcome(world.auth.refresh(pair.refresh_token)) == "REFRESH_TOKEN_REVOKED"
        for pair in (first, second)
    }
    assert ended == {
        first.refresh_token: expected == "OK",
        second.refresh_token: expected == "OK" and all_sessions,
    }
    # Logging out everywhere forgets the devices too; a plain logout keeps them.
    devices = [await world.store.device_state(hash_token(p.device_token)) for p in (first, second)]
    assert all(d is None for d in devices) == (expected == "OK" and all_sessions)


@pytest.mark.parametrize("token", ["", "unknown"])
async def test_logout_of_nothing(world: World, token: str) -> None:
    if token:
        assert await world.auth.logout(token, all_sessions=False, principal=None) == 0
    else:
        assert await outcome(world.auth.logout(token, all_sessions=False, principal=None)) == "INVALID_INPUT"


# ---- password reset ----------------------------------------------------------------------------


async def test_a_reset_ends_every_session_clears_the_throttle_and_keeps_device_tokens(world: World) -> None:
    laptop = await world.login()
    phone = await world.login()
    for _ in range(POLICY.max_failures):
        assert await outcome(world.login(WRONG)) == "INVALID_CREDENTIALS"
    assert await outcome(world.login()) == "LOGIN_THROTTLED"
    revocations = len(await world.store.revocations_since(after=0, now=T0, logged_since=T0))

    revoked = await world.auth.confirm_password_reset(
        world.users.issue_reset(world.ada), "a brand new secret"
    )
    assert revoked == 2
    assert await world.store.list_sessions(world.ada, now=T0) == []
    assert len(await world.store.revocations_since(after=0, now=T0, logged_since=T0)) == revocations + 2
    for pair in (laptop, phone):
        assert await outcome(world.auth.refresh(pair.refresh_token)) == "REFRESH_TOKEN_REVOKED"
        assert await world.store.device_state(hash_token(pair.device_token)) is not None
    assert await world.store.throttle_state(account_key(world.ada)) == (0, 0.0)
    assert await outcome(world.login()) == "INVALID_CREDENTIALS"  # the old password
    assert await outcome(world.login("a brand new secret")) == "OK"  # at once: no back-off left


async def test_a_reset_token_is_refused_as_users_says_and_ends_nothing(world: World) -> None:
    pair = await world.login()
    token = world.users.issue_reset(world.ada)
    assert (
        await outcome(world.auth.confirm_password_reset("made-up", "a brand new secret"))
        == "MAIL_TOKEN_INVALID"
    )
    assert await outcome(world.auth.confirm_password_reset(token, "short")) == "INVALID_INPUT"
    await world.auth.confirm_password_reset(token, "a brand new secret")
    assert await outcome(world.auth.confirm_password_reset(token, "another new secret")) == "MAIL_TOKEN_USED"
    assert await outcome(world.auth.refresh(pair.refresh_token)) == "REFRESH_TOKEN_REVOKED"
    fresh = await world.login("a brand new secret")
    await world.auth.refresh(fresh.refresh_token)  # the refused attempts ended nothing


@pytest.mark.parametrize(
    ("token", "new_password", "fields"),
    [("", "a brand new secret", {"token"}), ("x" * 257, "", {"token", "new_password"})],
)
async def test_a_reset_without_its_fields_is_invalid_input(
    world: World, token: str, new_password: str, fields: set[str]
) -> None:
    with pytest.raises(PinexaError) as caught:
        await world.auth.confirm_password_reset(token, new_password)
    assert caught.value.reason == "INVALID_INPUT"
    assert {field for field, _ in caught.value.violations} == fields
