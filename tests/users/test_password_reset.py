"""Password reset's rules in users, on the in-memory store and a fake clock (no network, no
database): the same answer for any address, the mail only to an account (not a disabled one),
the limits per address and per client, and the token's life: single use, superseded by a newer
one and by a password change or an address change, expired after its TTL. Confirming sets the
password, verifies the address and mails the "password changed" notice; cheap checks first (a
bad new password spends no token, a dead token costs no password hash).

The real servers (auth, users, a real SMTP server, SQLite and PostgreSQL) are in
tests/auth/test_password_reset.py; REST through Envoy in tests/e2e/test_password_reset_rest.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.kit import single_use
from services.kit.context import Principal
from services.kit.errors import PinexaError
from services.kit.mail import OutgoingMail
from services.users.domain import DECOY_RESET_SUBJECT, MailPolicy, NewUser, UserPatch, UsersDomain
from services.users.memory import MemoryUserStore
from services.users.model import PASSWORD_RESET, UserRecord
from services.users.passwords import Passwords
from tests.support import FakeClock
from tests.users.conftest import FAST_HASHER

T0 = 1_700_000_000.0
PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"


class CountingPasswords(Passwords):
    """The real hasher (cheap parameters), counting the hashes it makes."""

    hashes = 0

    async def hash(self, password: str) -> str:
        self.hashes += 1
        return await super().hash(password)


@dataclass
class World:
    domain: UsersDomain
    store: MemoryUserStore
    clock: FakeClock
    passwords: CountingPasswords
    wakes: list[None]

    async def sign_up(self, username: str) -> UserRecord:
        return await self.domain.sign_up(
            NewUser(username=username, email=f"{username}@Example.com", password=PASSWORD)
        )

    def resets(self, to: str) -> list[OutgoingMail]:
        return [m for m in self.store.mail if m.template == "password_reset" and m.to == to]

    def token(self, to: str) -> str:
        """The token of the newest reset mail to `to`."""
        return str(self.resets(to)[-1].context["token"])


@pytest.fixture
def world() -> World:
    clock, store, wakes = FakeClock(start=T0), MemoryUserStore(), []
    passwords = CountingPasswords(FAST_HASHER)
    domain = UsersDomain(
        store=store,
        passwords=passwords,
        on_mail=lambda: wakes.append(None),
        mail_policy=MailPolicy(reset_ttl=1800, per_address=3, per_client=10, window=3600),
        clock=clock.utc,
    )
    return World(domain, store, clock, passwords, wakes)


async def refused(call: object, reason: str) -> PinexaError:
    with pytest.raises(PinexaError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.reason == reason, caught.value
    return caught.value


async def test_a_known_address_gets_a_link_and_an_unknown_one_the_same_answer(world: World) -> None:
    ada = await world.sign_up("ada")
    mails_before, wakes_before = len(world.store.mail), len(world.wakes)
    assert await world.domain.request_password_reset("ADA@example.COM ", client="10.0.0.1") is None
    [mail] = world.resets("ada@Example.com")  # the account's address as stored, not as typed
    assert mail.context["username"] == "ada" and mail.context["expires_in"] == "30 minutes"
    assert len(world.wakes) == wakes_before + 1
    token = str(mail.context["token"])
    assert len(token) >= 43  # 256 bits, URL-safe base64
    assert token not in repr(world.store.tokens)  # stored as its hash only

    assert await world.domain.request_password_reset("nobody@example.com", client="10.0.0.1") is None
    assert len(world.store.mail) == mails_before + 1 and len(world.wakes) == wakes_before + 1
    # The unknown address's decoy token (for no account, never mailed) is not kept.
    assert [t for t in world.store.tokens.values() if t["subject"] == DECOY_RESET_SUBJECT] == []
    assert ada.id != DECOY_RESET_SUBJECT


async def test_a_disabled_account_gets_no_mail(world: World) -> None:
    ada = await world.sign_up("ada")
    await world.store.set_disabled(ada.id, True, world.clock.utc())
    await world.domain.request_password_reset(ada.email, client="")
    assert world.resets(ada.email) == []


async def test_a_pending_address_is_not_the_accounts_address(world: World) -> None:
    ada = await world.sign_up("ada")
    me = Principal(user_id=ada.id, role="user", token_id="t", expires_at=int(T0) + 900)
    await world.domain.update(me, ada.id, UserPatch(email="ada.new@example.com"), "")
    await world.domain.request_password_reset("ada.new@example.com", client="")
    assert world.resets("ada.new@example.com") == []


@pytest.mark.parametrize("email", ["", "   ", "not-an-address", "a@b", "x" * 250 + "@example.com"])
async def test_a_malformed_address_is_invalid_input(world: World, email: str) -> None:
    error = await refused(world.domain.request_password_reset(email, client=""), "INVALID_INPUT")
    assert [v[0] for v in error.violations] == ["email"]


async def test_requests_are_limited_per_address_known_or_not(world: World) -> None:
    await world.sign_up("ada")
    for address in ("ada@example.com", "nobody@example.com"):
        for _ in range(3):
            await world.domain.request_password_reset(address, client="")
        error = await refused(world.domain.request_password_reset(address, client=""), "TOO_MANY_MAILS")
        assert error.retry_after == pytest.approx(3600)
    assert len(world.resets("ada@Example.com")) == 3
    world.clock.advance(3600)  # a new window
    await world.domain.request_password_reset("ada@example.com", client="")
    assert len(world.resets("ada@Example.com")) == 4


async def test_requests_are_limited_per_client(world: World) -> None:
    for n in range(10):
        await world.domain.request_password_reset(f"someone{n}@example.com", client="10.0.0.9")
    await refused(
        world.domain.request_password_reset("other@example.com", client="10.0.0.9"), "TOO_MANY_MAILS"
    )
    await world.domain.request_password_reset("other@example.com", client="10.0.0.10")


async def test_resends_and_resets_have_separate_budgets(world: World) -> None:
    ada = await world.sign_up("ada")
    me = Principal(user_id=ada.id, role="user", token_id="t", expires_at=int(T0) + 900)
    for _ in range(3):
        await world.domain.send_verification(me, ada.id, client="10.0.0.1")
    await world.domain.request_password_reset(ada.email, client="10.0.0.1")
    assert len(world.resets(ada.email)) == 1


async def test_confirming_sets_the_password_verifies_the_address_and_mails_a_notice(world: World) -> None:
    ada = await world.sign_up("ada")
    assert not ada.email_verified
    await world.domain.request_password_reset(ada.email, client="")
    world.clock.advance(60)
    record = await world.domain.confirm_password_reset(world.token(ada.email), NEW_PASSWORD)
    assert record.id == ada.id and record.email_verified
    assert record.email_verified_at == world.clock.utc() and record.version == ada.version + 1
    assert (await world.domain.verify_credentials("ada", NEW_PASSWORD)).user_id == ada.id
    await refused(world.domain.verify_credentials("ada", PASSWORD), "INVALID_CREDENTIALS")
    notice = world.store.mail[-1]
    assert (notice.template, notice.to) == ("password_changed", ada.email)


async def test_an_address_verified_before_keeps_its_time(world: World) -> None:
    ada = await world.sign_up("ada")
    [verification] = [m for m in world.store.mail if m.template == "verify_email"]
    verified = await world.domain.verify_email(str(verification.context["token"]))
    await world.domain.request_password_reset(ada.email, client="")
    world.clock.advance(600)
    record = await world.domain.confirm_password_reset(world.token(ada.email), NEW_PASSWORD)
    assert record.email_verified_at == verified.email_verified_at


async def test_a_token_works_once(world: World) -> None:
    ada = await world.sign_up("ada")
    await world.domain.request_password_reset(ada.email, client="")
    token = world.token(ada.email)
    await world.domain.confirm_password_reset(token, NEW_PASSWORD)
    await refused(world.domain.confirm_password_reset(token, "yet another passphrase"), "MAIL_TOKEN_USED")
    assert (await world.domain.verify_credentials("ada", NEW_PASSWORD)).user_id == ada.id


async def test_a_newer_link_supersedes_the_older(world: World) -> None:
    ada = await world.sign_up("ada")
    await world.domain.request_password_reset(ada.email, client="")
    older = world.token(ada.email)
    await world.domain.request_password_reset(ada.email, client="")
    await refused(world.domain.confirm_password_reset(older, NEW_PASSWORD), "MAIL_TOKEN_SUPERSEDED")
    await world.domain.confirm_password_reset(world.token(ada.email), NEW_PASSWORD)


async def test_a_link_expires_after_its_ttl(world: World) -> None:
    ada = await world.sign_up("ada")
    await world.domain.request_password_reset(ada.email, client="")
    world.clock.advance(1800)
    await refused(
        world.domain.confirm_password_reset(world.token(ada.email), NEW_PASSWORD), "MAIL_TOKEN_EXPIRED"
    )


async def test_a_password_change_ends_the_link(world: World) -> None:
    ada = await world.sign_up("ada")
    await world.domain.request_password_reset(ada.email, client="")
    await world.domain.change_password(ada.id, PASSWORD, "changed the usual way")
    await refused(
        world.domain.confirm_password_reset(world.token(ada.email), NEW_PASSWORD), "MAIL_TOKEN_SUPERSEDED"
    )


async def test_a_link_to_an_address_the_account_no_longer_has_is_dead(world: World) -> None:
    ada = await world.sign_up("ada")
    await world.domain.request_password_reset(ada.email, client="")
    token = world.token(ada.email)
    me = Principal(user_id=ada.id, role="user", token_id="t", expires_at=int(T0) + 900)
    await world.domain.update(me, ada.id, UserPatch(email="ada.new@example.com"), "")
    [link] = [m for m in world.store.mail if m.template == "verify_email" and m.to == "ada.new@example.com"]
    await world.domain.verify_email(str(link.context["token"]))
    await refused(world.domain.confirm_password_reset(token, NEW_PASSWORD), "MAIL_TOKEN_SUPERSEDED")


async def test_a_deleted_accounts_link_is_invalid(world: World) -> None:
    ada = await world.sign_up("ada")
    await world.domain.request_password_reset(ada.email, client="")
    await world.store.delete_with_purge(ada.id, world.clock.utc())
    await refused(
        world.domain.confirm_password_reset(world.token(ada.email), NEW_PASSWORD), "MAIL_TOKEN_INVALID"
    )


async def test_a_bad_new_password_spends_no_token(world: World) -> None:
    ada = await world.sign_up("ada")
    await world.domain.request_password_reset(ada.email, client="")
    error = await refused(
        world.domain.confirm_password_reset(world.token(ada.email), "short"), "INVALID_INPUT"
    )
    assert [v[0] for v in error.violations] == ["new_password"]
    await world.domain.confirm_password_reset(world.token(ada.email), NEW_PASSWORD)


@pytest.mark.parametrize("token", ["", "  ", "no-such-token", "x" * 300])
async def test_a_dead_token_costs_no_password_hash(world: World, token: str) -> None:
    ada = await world.sign_up("ada")
    await world.domain.request_password_reset(ada.email, client="")
    hashes = world.passwords.hashes
    with pytest.raises(PinexaError) as caught:
        await world.domain.confirm_password_reset(token, NEW_PASSWORD)
    assert caught.value.reason in ("INVALID_INPUT", "MAIL_TOKEN_INVALID")
    assert world.passwords.hashes == hashes


async def test_a_decoy_token_redeems_nothing(world: World) -> None:
    """An unknown address's decoy is stored like a real token; were it ever leaked, it opens no
    account."""
    decoy = single_use.prepare(
        purpose=PASSWORD_RESET, subject=DECOY_RESET_SUBJECT, ttl_seconds=1800, now=T0, data="x@example.com"
    )
    await world.store.queue_password_reset(None, decoy, limits=[], window=3600, now=world.clock.utc())
    await refused(world.domain.confirm_password_reset(decoy.token, NEW_PASSWORD), "MAIL_TOKEN_INVALID")
