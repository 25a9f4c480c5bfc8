"""The users service's rules on an in-memory store and a frozen clock: no network, no database.
The rules: sign-up validation and conflicts, who may read, change and delete which account, the
role rules, update masks' effects, etags and versions, paging, the one answer to a wrong password
and an unknown account, the bootstrap admin, and the purge a delete queues (with its lease, claim
and retry schedule).

`MemoryUserStore` keeps the SQL store's contract (test_store_conformance.py runs the same tests
on both); argon2 runs for real with the suite's cheap parameters. The real-server tests
(test_accounts.py, test_authorization.py, test_outbox.py) check the same rules over gRPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import pytest
from argon2 import PasswordHasher

from pinexa.data.v1 import data_internal_pb2
from services.kit.context import Principal, Role
from services.kit.errors import PinexaError
from services.users.domain import NewUser, UserPatch, UsersDomain, etag_for
from services.users.memory import MemoryUserStore
from services.users.model import PendingPurge, UserRecord
from services.users.outbox import PurgeOutbox
from services.users.passwords import Passwords
from tests.support import FakeClock
from tests.users.conftest import FAST_HASHER

T0 = 1_700_000_000.0
PASSWORD = "correct horse battery"


@dataclass
class World:
    domain: UsersDomain
    store: MemoryUserStore
    clock: FakeClock
    deletes: list[None]  # one entry per on_delete wake-up

    async def sign_up(self, username: str, **fields: Any) -> UserRecord:
        values = {"email": f"{username}@example.com", "password": PASSWORD, **fields}
        return await self.domain.sign_up(NewUser(username=username, **values))


def world_with(hasher: PasswordHasher = FAST_HASHER, store: MemoryUserStore | None = None) -> World:
    clock, store, deletes = FakeClock(start=T0), store or MemoryUserStore(), []
    domain = UsersDomain(
        store=store, passwords=Passwords(hasher), on_delete=lambda: deletes.append(None), clock=clock.utc
    )
    return World(domain, store, clock, deletes)


@pytest.fixture
def world() -> World:
    return world_with()


def caller(user_id: str, role: Role = "user") -> Principal:
    return Principal(user_id=user_id, role=role, token_id="t", expires_at=int(T0) + 900)


ADMIN = caller("an-admin-without-an-account", "admin")


async def outcome(call: Awaitable[object]) -> str:
    """ "OK", or the error's reason with the field it names (AlreadyExists) or its violations."""
    try:
        await call
    except PinexaError as error:
        fields = sorted(error.metadata.get("field", "").split()) or sorted(
            field for field, _ in getattr(error, "violations", [])
        )
        return " ".join([error.reason, *fields])
    return "OK"


# ---- sign-up ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "email", "expected"),
    [
        ("grace", "grace@example.com", "OK"),
        ("ADA", "other@example.com", "ALREADY_EXISTS user.username"),  # usernames are case-blind
        ("other", "Ada@EXAMPLE.com", "ALREADY_EXISTS user.email"),  # so are e-mail addresses
        ("a", "not-an-address", "INVALID_INPUT user.email user.username"),
        ("", "", "INVALID_INPUT user.email user.username"),
    ],
)
async def test_sign_up(world: World, username: str, email: str, expected: str) -> None:
    await world.sign_up("ada")
    assert await outcome(world.sign_up(username, email=email)) == expected
    assert len(world.store.rows) == (2 if expected == "OK" else 1)


async def test_sign_up_is_an_ordinary_account_at_the_clock_s_time(world: World) -> None:
    world.clock.advance(42)
    record = await world.sign_up("  Ada ", email="ada@example.com", display_name="Ada L.")
    assert (record.username, record.role, record.version) == ("ada", "user", 1)
    assert record.created_at == record.updated_at == world.clock.utc()
    assert await world.store.get(record.id) == record
    assert PASSWORD not in repr(world.store.rows[record.id]["password_hash"])


# ---- who may do what ------------------------------------------------------------------------

# (who calls, the expected outcome): "self" is ada, "other" another user, "admin" an admin.
ACTORS = [("self", "OK"), ("other", "PERMISSION_DENIED"), ("admin", "OK")]


def actor(who: str, ada: UserRecord) -> Principal:
    return {"self": caller(ada.id), "other": caller("someone-else"), "admin": ADMIN}[who]


@pytest.mark.parametrize(("who", "expected"), ACTORS)
@pytest.mark.parametrize("operation", ["get", "update", "delete"])
async def test_only_the_account_itself_or_an_admin(
    world: World, operation: str, who: str, expected: str
) -> None:
    ada = await world.sign_up("ada")
    principal = actor(who, ada)
    calls = {
        "get": lambda: world.domain.get(principal, ada.id),
        "update": lambda: world.domain.update(principal, ada.id, UserPatch(display_name="x"), ""),
        "delete": lambda: world.domain.delete(principal, ada.id),
    }
    assert await outcome(calls[operation]()) == expected


@pytest.mark.parametrize("who", ["other", "self"])
async def test_a_refusal_does_not_tell_whether_the_account_exists(world: World, who: str) -> None:
    ada = await world.sign_up("ada")
    principal = caller("someone-else") if who == "other" else caller(ada.id)
    exists = await outcome(world.domain.get(principal, ada.id))
    missing = await outcome(world.domain.get(principal, "no-such-id"))
    assert (exists, missing) == (
        ("PERMISSION_DENIED",) * 2 if who == "other" else ("OK", "PERMISSION_DENIED")
    )


@pytest.mark.parametrize(("role", "expected"), [("user", "ADMIN_ONLY"), ("admin", "OK")])
async def test_listing_is_for_admins(world: World, role: Role, expected: str) -> None:
    assert await outcome(world.domain.list_page(caller("x", role), size=10, token="")) == expected


# ---- update rules -----------------------------------------------------------------------------

# (who, the patch, the expected outcome, the fields expected afterwards)
UPDATE_CASES: dict[str, tuple[str, UserPatch, str, dict[str, Any]]] = {
    "display name": (
        "self",
        UserPatch(display_name="Ada L."),
        "OK",
        {"display_name": "Ada L.", "version": 2},
    ),
    "e-mail, trimmed": ("self", UserPatch(email=" Ada2@example.com "), "OK", {"email": "Ada2@example.com"}),
    "a taken e-mail": ("self", UserPatch(email="GRACE@example.com"), "ALREADY_EXISTS user.email", {}),
    "an invalid e-mail and display name": (
        "self",
        UserPatch(email="nope", display_name="x" * 101),
        "INVALID_INPUT user.display_name user.email",
        {},
    ),
    "own role in a mask": ("self", UserPatch(role="admin", role_in_mask=True), "ROLE_CHANGE_FORBIDDEN", {}),
    "another role in a PUT": ("self", UserPatch(role="admin"), "ROLE_CHANGE_FORBIDDEN", {}),
    "a PUT repeating the own role and username": (
        "self",
        UserPatch(role="user", username="ADA", display_name="A"),
        "OK",
        {"role": "user", "display_name": "A"},
    ),
    "a username change": ("self", UserPatch(username="adelaide"), "INVALID_INPUT user.username", {}),
    "an admin grants a role": ("admin", UserPatch(role="admin", role_in_mask=True), "OK", {"role": "admin"}),
    "nothing to change": ("self", UserPatch(), "OK", {"version": 1}),
}


@pytest.mark.parametrize(
    ("who", "patch", "expected", "after"), UPDATE_CASES.values(), ids=UPDATE_CASES.keys()
)
async def test_update(world: World, who: str, patch: UserPatch, expected: str, after: dict[str, Any]) -> None:
    ada = await world.sign_up("ada")
    await world.sign_up("grace")
    world.clock.advance(5)
    assert await outcome(world.domain.update(actor(who, ada), ada.id, patch, "")) == expected
    current = await world.store.get(ada.id)
    assert current is not None
    if expected != "OK":
        assert current == ada  # a refused update changes nothing
        return
    assert {name: getattr(current, name) for name in after} == after
    changed = current.version > ada.version
    assert current.updated_at == (world.clock.utc() if changed else ada.updated_at)


@pytest.mark.parametrize(
    ("etag", "expected"),
    [("", "OK"), ("current", "OK"), ("stale", "ETAG_MISMATCH"), ("ünïcode", "ETAG_MISMATCH")],
)
async def test_etag_guards_an_update(world: World, etag: str, expected: str) -> None:
    ada = await world.sign_up("ada")
    tag = {"current": etag_for(ada.id, ada.version), "stale": etag_for(ada.id, ada.version - 1)}.get(
        etag, etag
    )
    patch = UserPatch(display_name="new")
    assert await outcome(world.domain.update(caller(ada.id), ada.id, patch, tag)) == expected
    current = await world.store.get(ada.id)
    assert current is not None and current.version == (2 if expected == "OK" else 1)
    assert etag_for(current.id, current.version) != tag or expected != "OK"


async def test_of_two_updates_with_one_etag_exactly_one_wins(world: World) -> None:
    ada = await world.sign_up("ada")
    tag = etag_for(ada.id, ada.version)
    results = await asyncio.gather(
        *(
            outcome(world.domain.update(caller(ada.id), ada.id, UserPatch(display_name=str(i)), tag))
            for i in range(5)
        )
    )
    assert sorted(results) == ["ETAG_MISMATCH"] * 4 + ["OK"]


async def test_a_password_change_takes_effect_for_login(world: World) -> None:
    ada = await world.sign_up("ada")
    new = "a new long password"
    assert await outcome(world.domain.change_password(ada.id, "not it at all", new)) == "INVALID_CREDENTIALS"
    assert (
        await outcome(world.domain.change_password(ada.id, PASSWORD, "short")) == "INVALID_INPUT new_password"
    )
    await world.domain.change_password(ada.id, PASSWORD, new)
    assert await outcome(world.domain.verify_credentials("ada", PASSWORD)) == "INVALID_CREDENTIALS"
    assert (await world.domain.verify_credentials("ada", new)).user_id == ada.id


async def test_a_disabled_account_is_refused_only_with_the_right_password(world: World) -> None:
    ada = await world.sign_up("ada")
    await world.domain.set_disabled(ada.id, disabled=True)
    assert await outcome(world.domain.verify_credentials("ada", PASSWORD)) == "ACCOUNT_DISABLED"
    assert await outcome(world.domain.verify_credentials("ada", "not it at all")) == "INVALID_CREDENTIALS"
    assert (await world.domain.identity(ada.id)).disabled
    await world.domain.set_disabled(ada.id, disabled=False)
    assert (await world.domain.verify_credentials("ada", PASSWORD)).user_id == ada.id


# ---- paging -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
async def test_pages_walk_every_account_once_in_creation_order(world: World, size: int) -> None:
    created = []
    for i in range(7):
        created.append(await world.sign_up(f"user{i}"))
        if i % 3:  # some accounts share an instant: the id orders them
            world.clock.advance(1)
    seen: list[UserRecord] = []
    token = ""
    while True:
        page = await world.domain.list_page(ADMIN, size=size, token=token)
        assert len(page.users) <= size
        seen += page.users
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(created, key=lambda r: (r.created_at, r.id))


@pytest.mark.parametrize("token", ["garbage", "x" * 50])
async def test_a_malformed_page_token_is_invalid(world: World, token: str) -> None:
    assert (await outcome(world.domain.list_page(ADMIN, size=2, token=token))).startswith("INVALID")


# ---- credentials --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("login", "password", "expected"),
    [
        ("ada", PASSWORD, "OK"),
        (" ADA ", PASSWORD, "OK"),
        ("Ada@Example.COM", PASSWORD, "OK"),
        ("ada", "wrong horse battery", "INVALID_CREDENTIALS"),
        ("nobody", PASSWORD, "INVALID_CREDENTIALS"),
        ("nobody@example.com", PASSWORD, "INVALID_CREDENTIALS"),
        ("ada", "", "INVALID_CREDENTIALS"),
        ("ada", "p" * 10_000, "INVALID_CREDENTIALS"),
    ],
)
async def test_verify_credentials(world: World, login: str, password: str, expected: str) -> None:
    ada = await world.sign_up("ada")
    try:
        identity = await world.domain.verify_credentials(login, password)
    except PinexaError as error:
        # Unknown account and wrong password: one error, word for word.
        assert (error.reason, str(error)) == (expected, "the username or password is incorrect")
    else:
        assert expected == "OK" and (identity.user_id, identity.role) == (ada.id, "user")
    assert await world.domain.resolve_login(login) == (
        ada.id if login.strip().lower().startswith("ada") else None
    )


async def test_a_hash_with_old_parameters_is_upgraded_on_login(world: World) -> None:
    # The same accounts, signed up under weaker parameters.
    old = world_with(PasswordHasher(time_cost=1, memory_cost=32, parallelism=1), store=world.store)
    ada = await old.sign_up("ada")
    before = world.store.rows[ada.id]["password_hash"]
    await world.domain.verify_credentials("ada", PASSWORD)
    after = world.store.rows[ada.id]["password_hash"]
    assert after != before and "m=64" in after
    assert (await world.store.get(ada.id)) == ada  # not a change a client sees: same version


# ---- the bootstrap admin ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (None, "OK"),  # created
        ("admin", "OK"),  # already there: nothing to do
        ("user, same password", "OK"),  # promoted
        ("user, other password", "ALREADY_EXISTS ADMIN_USERNAME"),  # someone else's
        ("e-mail taken", "ALREADY_EXISTS ADMIN_EMAIL"),
    ],
)
async def test_ensure_admin(world: World, existing: str | None, expected: str) -> None:
    if existing == "admin":
        await world.domain.ensure_admin(username="root", email="root@example.com", password=PASSWORD)
    elif existing == "user, same password":
        await world.sign_up("root")
    elif existing == "user, other password":
        await world.sign_up("root", password="somebody else's password")
    elif existing == "e-mail taken":
        await world.sign_up("someone", email="root@example.com")
    call = world.domain.ensure_admin(username="Root", email="root@example.com", password=PASSWORD)
    assert await outcome(call) == expected
    credentials = await world.store.credentials_by_username("root")
    assert (credentials is not None and credentials.role == "admin") == (expected == "OK")


# ---- delete and the purge it queues -------------------------------------------------------------


async def test_delete_queues_a_purge_and_wakes_the_outbox(world: World) -> None:
    ada = await world.sign_up("ada")
    world.clock.advance(30)
    await world.domain.delete(caller(ada.id), ada.id)
    assert world.deletes == [None]
    assert await world.store.due_purges(world.clock.utc(), 10) == [PendingPurge(ada.id, 0, world.clock.utc())]
    assert await outcome(world.domain.me(caller(ada.id))) == "USER_NOT_FOUND"
    assert await outcome(world.domain.delete(caller(ada.id), ada.id)) == "USER_NOT_FOUND"
    assert world.deletes == [None]  # nothing deleted, nothing to wake for
    assert await outcome(world.sign_up("ada")) == "OK"  # the name is free again


# The outbox's schedule on the fake clock. Steps: (seconds to advance, action, expected):
# "claim" claims the due row with a 15 s lease, "fail" reschedules it 2 s on, "due" lists what
# is due now.
PURGE_CASES: dict[str, list[tuple[float, str, object]]] = {
    "a claimed row is leased": [(0, "claim", True), (0, "due", 0), (14.9, "due", 0), (0.1, "due", 1)],
    "a lease that runs out is delivered again": [(0, "claim", True), (15, "claim", True), (0, "due", 0)],
    "a failure is retried at its time": [
        (0, "claim", True),
        (0, "fail", None),
        (1.9, "due", 0),
        (0.1, "due", 1),
    ],
    "a stale claim loses": [(0, "claim", True), (0, "stale claim", False)],
    "a stale reschedule changes nothing": [
        (0, "claim", True),
        (15, "claim", True),
        (0, "stale fail", None),
        (0, "due", 0),
    ],
    "a finished purge is gone": [(0, "claim", True), (0, "finish", None), (100, "due", 0)],
}


@pytest.mark.parametrize("steps", PURGE_CASES.values(), ids=PURGE_CASES.keys())
async def test_purge_schedule(world: World, steps: list[tuple[float, str, object]]) -> None:
    ada = await world.sign_up("ada")
    await world.domain.delete(ADMIN, ada.id)
    store, first = world.store, (await world.store.due_purges(world.clock.utc(), 10))[0]
    for advance, action, expected in steps:
        world.clock.advance(advance)
        now = world.clock.utc()
        row = store.purges.get(ada.id)
        result: object = None
        if action == "claim":
            (due,) = await store.due_purges(now, 10)
            result = await store.claim_purge(due, now + timedelta(seconds=15))
        elif action == "stale claim":
            result = await store.claim_purge(first, now + timedelta(seconds=15))
        elif action == "fail":
            assert row is not None
            await store.reschedule_purge(
                ada.id, row.attempts, now + timedelta(seconds=2), "UNAVAILABLE: down"
            )
        elif action == "stale fail":
            await store.reschedule_purge(ada.id, 1, now, "a replica that lost its lease")
        elif action == "finish":
            await store.finish_purge(ada.id)
        elif action == "due":
            result = len(await store.due_purges(now, 10))
        assert result == expected, action


class ScriptedData:
    """Stands in for the channel to the data service (these tests use no network; the real
    delivery over gRPC is test_outbox.py's): PurgeUserData answers from a script, None for
    success or a status code for a failure, and records the calls."""

    def __init__(self, answers: list[grpc.StatusCode | None]) -> None:
        self.answers, self.calls = list(answers), 0

    def unary_unary(self, method: str, **_: Any) -> Any:
        async def call(request: data_internal_pb2.PurgeUserDataRequest, timeout: float) -> Any:
            self.calls += 1
            code = self.answers.pop(0)
            if code is not None:
                raise grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "scripted")
            return data_internal_pb2.PurgeUserDataResponse(deleted_count=2)

        return call


# The outbox worker's passes on the fake clock. Steps: (seconds to advance, what the data service
# answers to the calls of this pass, how many purges the pass delivers). Back-off: 1 s, then 2 s,
# with up to 20 % jitter below; a call's lease is its 10 s timeout plus 5 s.
OUTBOX_CASES: dict[str, list[tuple[float, list[grpc.StatusCode | None], int]]] = {
    "delivered at once": [(0, [None], 1), (100, [], 0)],
    "an outage is retried after the back-off": [
        (0, [grpc.StatusCode.UNAVAILABLE], 0),
        (0.7, [], 0),  # not due before 0.8 s
        (0.3, [None], 1),
    ],
    "the back-off doubles": [
        (0, [grpc.StatusCode.UNAVAILABLE], 0),
        (1, [grpc.StatusCode.DEADLINE_EXCEEDED], 0),
        (1.5, [], 0),  # not due before 1.6 s
        (0.5, [None], 1),
    ],
    "any error is retried, not dropped": [(0, [grpc.StatusCode.INTERNAL], 0), (1, [None], 1)],
}


@pytest.mark.parametrize("steps", OUTBOX_CASES.values(), ids=OUTBOX_CASES.keys())
async def test_outbox_delivery(
    world: World, steps: list[tuple[float, list[grpc.StatusCode | None], int]]
) -> None:
    ada = await world.sign_up("ada")
    await world.domain.delete(ADMIN, ada.id)
    data = ScriptedData([answer for _, answers, _ in steps for answer in answers])
    outbox = PurgeOutbox(
        store=world.store,
        channel=data,
        backoff_base=1.0,
        backoff_max=60.0,
        call_timeout=10.0,
        clock=world.clock.utc,
    )
    calls = 0
    for advance, answers, delivered in steps:
        world.clock.advance(advance)
        assert await outbox.deliver_due() == delivered
        calls += len(answers)
        assert data.calls == calls
    assert ada.id not in world.store.purges  # every case ends delivered
