"""Issue 9: the owner gets in during a flood (OWASP's device cookies).

A successful login returns an opaque device token. A later login that presents it, for the same
login name, is throttled in that device's own bucket instead of the strangers' per-account one,
so a flood of wrong passwords from elsewhere cannot lock the owner out. A stolen device token
allows at most LOGIN_MAX_FAILURES wrong guesses and is then dead.

Everything is real (auth, users, SQLite and PostgreSQL, the gRPC sockets); client addresses
reach auth in `x-envoy-external-address`, as Envoy sends them. Time moves with the fake clock.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import statistics
import time

import grpc
import pytest

from pinexa.auth.v1 import auth_pb2
from pinexa.users.v1 import users_pb2
from services.auth.domain import hash_token
from services.auth.store import SqlAuthStore
from services.kit import sql
from tests.auth.conftest import PASSWORD, Stack, StartStack
from tests.support import bearer, field_violations, rpc_error

log = logging.getLogger(__name__)


def from_ip(address: str) -> list[tuple[str, str]]:
    return [("x-envoy-external-address", address)]


OWNER = from_ip("198.51.100.77")
OWNER_LOGINS = 30
THROTTLED = grpc.StatusCode.RESOURCE_EXHAUSTED
WRONG = grpc.StatusCode.UNAUTHENTICATED


async def lock_the_strangers_out(stack: Stack, username: str) -> None:
    """Wrong passwords from many addresses until the account's strangers' bucket is in back-off."""
    for i in range(stack.settings.login_max_failures):
        await rpc_error(stack.login(username, "a wrong guess", metadata=from_ip(f"203.0.113.{i}")), WRONG)
    await rpc_error(stack.login(username, metadata=from_ip("203.0.113.200")), THROTTLED, "LOGIN_THROTTLED")


async def test_a_login_returns_a_random_256_bit_device_token(stack: Stack) -> None:
    user = await stack.sign_up()
    first = await stack.login(user.username)
    second = await stack.login(user.username)
    # token_urlsafe(32): 32 random bytes, 43 base64url characters.
    assert len(first.device_token) >= 43 and len(second.device_token) >= 43
    assert first.device_token != second.device_token
    assert first.device_token not in (first.access_token, first.refresh_token)


async def test_the_owner_with_a_device_token_gets_in_at_once_during_a_flood(stack: Stack) -> None:
    user = await stack.sign_up()
    device = (await stack.login(user.username, metadata=OWNER)).device_token
    codes: collections.Counter[grpc.StatusCode] = collections.Counter()
    stop = asyncio.Event()

    async def attacker(n: int) -> None:
        # Several source addresses; one of them is the owner's own (a shared NAT).
        address = OWNER if n == 0 else from_ip(f"203.0.113.{n % 7}")
        while not stop.is_set():
            try:
                await stack.login(user.username, f"guess {n} {secrets.token_hex(4)}", metadata=address)
            except grpc.aio.AioRpcError as error:
                codes[error.code()] += 1

    flood = [asyncio.create_task(attacker(n)) for n in range(12)]
    try:
        deadline = time.monotonic() + 20
        while codes[THROTTLED] < 30:  # the flood has the strangers' bucket in back-off
            assert time.monotonic() < deadline, codes
            await asyncio.sleep(0.01)
        # Without the device token the owner is a stranger too: the flood locks them out ...
        await rpc_error(stack.login(user.username, metadata=OWNER), THROTTLED, "LOGIN_THROTTLED")
        # ... with it, they get in at once, every time, while the flood goes on.
        latencies = []
        for _ in range(OWNER_LOGINS):
            started = time.monotonic()
            pair = await stack.login(user.username, metadata=OWNER, device_token=device)
            latencies.append(time.monotonic() - started)
            assert (await stack.me(pair.access_token)).id == user.id
            assert pair.device_token == device  # the same token, its expiry renewed
        flood_size = sum(codes.values())
    finally:
        stop.set()
        await asyncio.gather(*flood)
    p50, worst = statistics.median(latencies), max(latencies)
    log.info(
        "owner's login during a flood: p50 %.1f ms, p90 %.1f ms, max %.1f ms, %d logins, %d flood attempts",
        p50 * 1000,
        sorted(latencies)[len(latencies) * 9 // 10] * 1000,
        worst * 1000,
        len(latencies),
        flood_size,
    )
    # Throttled attempts only read, so the owner's writes don't queue behind them. While each
    # throttled attempt still opened a write transaction, the owner's worst login here took
    # 1.5 to 2.6 s on SQLite (5 runs); since, 0.13 to 0.31 s on both backends. The median is the
    # flood's CPU (it shares the servers' event loop), so its bound is loose for a shared machine.
    assert p50 < 0.5 and worst < 1.0, sorted(latencies)
    assert codes[THROTTLED] > codes[WRONG]
    # The flood lasted seconds, not a minute: within the strangers' limit of 15 a minute.
    assert codes[WRONG] <= 15
    assert set(codes) <= {THROTTLED, WRONG}


async def test_strangers_get_at_most_15_password_checks_a_minute_whatever_their_addresses(
    stack: Stack,
) -> None:
    """A minute of fake time, 5 concurrent guesses every half second, each from an address of its
    own; the owner logs in with a device token every 10 s meanwhile, which must not give the
    strangers a fresh budget."""
    user = await stack.sign_up()
    device = (await stack.login(user.username, metadata=OWNER)).device_token
    codes: collections.Counter[grpc.StatusCode] = collections.Counter()

    async def guess(step: int, k: int) -> None:
        try:
            await stack.login(user.username, f"guess {step}.{k}", metadata=from_ip(f"10.{step}.{k}.1"))
        except grpc.aio.AioRpcError as error:
            codes[error.code()] += 1

    for step in range(120):
        await asyncio.gather(*(guess(step, k) for k in range(5)))
        if step % 20 == 19:
            await stack.login(user.username, metadata=OWNER, device_token=device)
        stack.clock.advance(0.5)
    assert sum(codes.values()) == 600
    assert set(codes) == {THROTTLED, WRONG}
    assert codes[WRONG] <= 15, codes


def names_of(user: users_pb2.User) -> list[str]:
    """Every name that reaches the account: its username and e-mail, in other cases, with spaces
    around, and with a KELVIN SIGN (U+212A), which lower-cases to an ASCII k (the username
    starts with k)."""
    return [
        user.username,
        user.email,
        user.username.upper(),
        f"  {user.email.upper()} ",
        "\u212a" + user.username[1:],
        "\u212a" + user.email[1:],
    ]


async def test_strangers_budget_is_per_account_whatever_name_they_type(stack: Stack) -> None:
    """The same fake-clock minute, but the guesses alternate between every name that reaches the
    account (`names_of`). Users resolves them all to one account, so they share one budget: at
    most 15 guesses reach the password check, not 15 per name."""
    user = await stack.sign_up(f"k{secrets.token_hex(6)}")
    names = names_of(user)
    codes: collections.Counter[grpc.StatusCode] = collections.Counter()

    async def guess(step: int, k: int) -> None:
        name = names[(step * 5 + k) % len(names)]
        try:
            await stack.login(name, f"guess {step}.{k}", metadata=from_ip(f"10.{step}.{k}.1"))
        except grpc.aio.AioRpcError as error:
            codes[error.code()] += 1

    for step in range(120):
        await asyncio.gather(*(guess(step, k) for k in range(5)))
        stack.clock.advance(0.5)
    assert sum(codes.values()) == 600
    assert set(codes) == {THROTTLED, WRONG}
    assert codes[WRONG] <= 15, codes


async def test_failures_through_any_of_its_names_throttle_every_name_of_the_account(stack: Stack) -> None:
    user = await stack.sign_up(f"k{secrets.token_hex(6)}")
    names = names_of(user)
    for i in range(stack.settings.login_max_failures):
        await rpc_error(stack.login(names[i], "a wrong guess", metadata=from_ip(f"203.0.113.{i}")), WRONG)
    # Each name, the owner's right password included, is in the one back-off.
    for name in names:
        await rpc_error(stack.login(name, metadata=OWNER), THROTTLED, "LOGIN_THROTTLED")
    # After it, the right password through any name works and resets the account's counter.
    stack.clock.advance(stack.settings.login_backoff_base_seconds + 0.1)
    await stack.login(names[3], metadata=OWNER)
    for i in range(stack.settings.login_max_failures - 1):
        await rpc_error(stack.login(names[i], "a wrong guess", metadata=from_ip(f"203.0.113.{i}")), WRONG)


async def test_an_address_in_back_off_is_answered_without_asking_users(stack: Stack) -> None:
    """A flood from one address, once that address is in back-off, costs users nothing: the
    429 comes before the account is looked up (here users is down, and the answer is still 429)."""
    attacker = from_ip("203.0.113.9")
    for i in range(stack.settings.login_max_failures * 4):  # the per-IP threshold, many accounts
        await rpc_error(stack.login(f"someone{i}", "a wrong guess", metadata=attacker), WRONG)
    await stack.users_host.server.stop(0)
    await rpc_error(stack.login("someone-else", metadata=attacker), THROTTLED, "LOGIN_THROTTLED")
    await rpc_error(stack.login("someone-else", metadata=OWNER), grpc.StatusCode.UNAVAILABLE)


async def test_unknown_names_are_throttled_like_an_account(stack: Stack) -> None:
    """A name no account has gets a budget of its own (its normalised form), exactly as an
    account does, so the throttle's answers don't tell the two apart."""
    for name in ("nobody-here", "nobody@example.com"):
        for i in range(stack.settings.login_max_failures):
            variant = name.upper() if i % 2 else f" {name} "
            await rpc_error(stack.login(variant, "a wrong guess", metadata=from_ip(f"203.0.113.{i}")), WRONG)
        await rpc_error(stack.login(name, metadata=from_ip("203.0.113.200")), THROTTLED, "LOGIN_THROTTLED")


async def test_a_stolen_device_token_allows_n_guesses_then_is_dead(stack: Stack) -> None:
    user = await stack.sign_up()
    stolen = (await stack.login(user.username)).device_token
    other_device = (await stack.login(user.username)).device_token
    await lock_the_strangers_out(stack, user.username)

    # Twenty simultaneous guesses with the stolen token: exactly N reach the password check,
    # from any address; the rest fall through to the strangers' bucket, which is in back-off.
    results = await asyncio.gather(
        *(
            stack.login(
                user.username, f"thief guess {i}", metadata=from_ip(f"192.0.2.{i}"), device_token=stolen
            )
            for i in range(20)
        ),
        return_exceptions=True,
    )
    codes = collections.Counter(r.code() for r in results if isinstance(r, grpc.aio.AioRpcError))
    assert codes == {
        WRONG: stack.settings.login_max_failures,
        THROTTLED: 20 - stack.settings.login_max_failures,
    }

    # The token is dead now: even the right password with it is a stranger's login (throttled).
    await rpc_error(stack.login(user.username, device_token=stolen), THROTTLED, "LOGIN_THROTTLED")
    # The owner's other device is untouched by the thief's failures.
    pair = await stack.login(user.username, device_token=other_device)
    assert pair.device_token == other_device
    # Once the strangers' back-off is over, the dead token is ignored and a new one issued.
    stack.clock.advance(stack.settings.login_backoff_max_seconds + 1)
    pair = await stack.login(user.username, device_token=stolen)
    assert pair.device_token and pair.device_token != stolen


async def test_a_success_resets_the_device_failure_count(stack: Stack) -> None:
    user = await stack.sign_up()
    device = (await stack.login(user.username)).device_token
    await lock_the_strangers_out(stack, user.username)
    n = stack.settings.login_max_failures
    for _ in range(3):  # the owner's own typos, then the right password, three times over
        for _ in range(n - 1):
            await rpc_error(stack.login(user.username, "a typo typo", device_token=device), WRONG)
        assert (await stack.login(user.username, device_token=device)).device_token == device


@pytest.mark.parametrize("kind", ["unknown", "other-account", "other-name", "expired", "empty"])
async def test_a_device_token_that_does_not_fit_is_treated_as_none(
    start_stack: StartStack, kind: str
) -> None:
    stack = await start_stack(login_device_token_ttl_seconds=3600)
    user = await stack.sign_up()
    other = await stack.sign_up()
    token = {
        "unknown": secrets.token_urlsafe(32),
        "other-account": (await stack.login(other.username)).device_token,
        "other-name": (await stack.login(user.email)).device_token,  # bound to the name typed
        "expired": (await stack.login(user.username)).device_token,
        "empty": "",
    }[kind]
    if kind == "expired":
        stack.clock.advance(3601)
    await lock_the_strangers_out(stack, user.username)
    await rpc_error(stack.login(user.username, device_token=token), THROTTLED, "LOGIN_THROTTLED")


async def test_each_use_renews_the_device_token_expiry(start_stack: StartStack) -> None:
    stack = await start_stack(login_device_token_ttl_seconds=100)
    user = await stack.sign_up()
    device = (await stack.login(user.username)).device_token
    for _ in range(3):
        stack.clock.advance(80)
        assert (await stack.login(user.username, device_token=device)).device_token == device
    stack.clock.advance(101)
    await lock_the_strangers_out(stack, user.username)
    await rpc_error(stack.login(user.username, device_token=device), THROTTLED, "LOGIN_THROTTLED")


async def test_an_overlong_device_token_is_invalid_input(stack: Stack) -> None:
    user = await stack.sign_up()
    error = await rpc_error(
        stack.login(user.username, device_token="x" * 300), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT"
    )
    assert "device_token" in field_violations(error)


async def test_logout_keeps_device_tokens_and_logout_everywhere_forgets_them(stack: Stack) -> None:
    user = await stack.sign_up()
    first = await stack.login(user.username)
    second = await stack.login(user.username)
    await stack.auth.Logout(auth_logout(first.refresh_token))
    await lock_the_strangers_out(stack, user.username)
    # A plain logout ends the session; the device is still the owner's.
    assert (
        await stack.login(user.username, device_token=first.device_token)
    ).device_token == first.device_token
    # Logging out everywhere (the "I think someone is in my account" button) forgets every device.
    pair = await stack.login(user.username, device_token=second.device_token)
    await stack.auth.Logout(
        auth_logout(pair.refresh_token, all_sessions=True), metadata=bearer(pair.access_token)
    )
    for device in (first.device_token, second.device_token):
        await rpc_error(stack.login(user.username, device_token=device), THROTTLED, "LOGIN_THROTTLED")


async def test_a_deleted_account_s_device_token_does_not_serve_a_new_account_of_that_name(
    stack: Stack,
) -> None:
    user = await stack.sign_up()
    old = await stack.login(user.username)
    await stack.users.DeleteUser(users_pb2.DeleteUserRequest(id=user.id), metadata=bearer(old.access_token))
    again = await stack.sign_up(user.username)
    assert again.id != user.id
    # The name is the same, the account is not: the right password of the new account logs in,
    # but the old token is not honoured for it (a new one is issued, the old one removed).
    pair = await stack.login(user.username, device_token=old.device_token)
    assert pair.device_token != old.device_token
    await lock_the_strangers_out(stack, user.username)
    await rpc_error(stack.login(user.username, device_token=old.device_token), THROTTLED, "LOGIN_THROTTLED")
    assert (
        await stack.login(user.username, device_token=pair.device_token)
    ).device_token == pair.device_token


async def test_users_down_with_a_device_token_is_unavailable_and_not_counted(stack: Stack) -> None:
    user = await stack.sign_up()
    device = (await stack.login(user.username)).device_token
    await stack.users_host.server.stop(0)
    for _ in range(stack.settings.login_max_failures + 2):
        await rpc_error(stack.login(user.username, device_token=device), grpc.StatusCode.UNAVAILABLE)
    # Nothing was charged to the device: its budget is whole (checked at the store).
    assert await stack_device_failures(stack, device) == 0


async def test_device_tokens_are_never_logged(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    user = await stack.sign_up()
    device = (await stack.login(user.username)).device_token
    for _ in range(stack.settings.login_max_failures + 1):
        await rpc_error(stack.login(user.username, "wrong one!!", device_token=device), WRONG)
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "device token locked" in logged  # the lock-out itself is logged, the token is not
    assert device not in logged and PASSWORD not in logged


# ---- helpers ---------------------------------------------------------------------------------


def auth_logout(refresh_token: str, *, all_sessions: bool = False) -> auth_pb2.LogoutRequest:
    return auth_pb2.LogoutRequest(refresh_token=refresh_token, all_sessions=all_sessions)


async def stack_device_failures(stack: Stack, device_token: str) -> int:
    """The failure count of a device token, read from auth's database."""
    engine = sql.create_engine(stack.settings.sql_url("auth"), pool_size=1)
    try:
        state = await SqlAuthStore(engine).device_state(hash_token(device_token))
    finally:
        await engine.dispose()
    assert state is not None
    return state.failures
