"""The TOTP second factor in users, over a real channel on SQLite and PostgreSQL: enrolment,
activation, who may do it, what is stored, the internal check auth calls (replay, tolerance,
recovery codes), re-encryption; and the RFC 6238 test vectors. pyotp is the authenticator."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import grpc
import pyotp
import pytest
from sqlalchemy import select

from pinexa.users.v1 import users_internal_pb2, users_pb2
from services.kit import sql
from services.users import totp
from services.users.config import UsersSettings
from services.users.crypto import key_id
from services.users.schema import recovery_codes as recovery_table
from services.users.schema import totp_factors
from services.users.server import reencrypt
from tests.support import FakeClock, bearer, field_violations, rpc_error, wait_until
from tests.users.conftest import StartUsers, Users

Code = grpc.StatusCode

# RFC 6238 appendix B: the SHA-1 seed and (time, 8-digit code) pairs.
RFC6238_SEED = b"12345678901234567890"
RFC6238_SHA1 = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("at", "expected"), RFC6238_SHA1)
def test_rfc6238_vectors(at: int, expected: str) -> None:
    secret = base64.b32encode(RFC6238_SEED).decode()
    assert pyotp.TOTP(secret, digits=8).at(at) == expected
    # Pinexa's 6-digit codes are the same truncation, mod 10^6.
    assert totp.code_at_step(secret, totp.step_at(at)) == expected[-6:]
    assert totp.matching_step(secret, expected[-6:], at) == totp.step_at(at)


def test_tolerance_is_one_step_either_side() -> None:
    secret = totp.new_secret()
    now = 1_700_000_015.0
    step = totp.step_at(now)
    for offset in (-1, 0, 1):
        assert totp.matching_step(secret, totp.code_at_step(secret, step + offset), now) == step + offset
    for offset in (-2, 2):
        assert totp.matching_step(secret, totp.code_at_step(secret, step + offset), now) is None
    for bad in ("", "12345", "1234567", "abcdef", "١٢٣٤٥٦"):
        assert totp.matching_step(secret, bad, now) is None


def test_recovery_codes_are_random_and_hashed_in_normal_form() -> None:
    codes = totp.new_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(c) == 19 and c.count("-") == 3 for c in codes)
    assert totp.recovery_code_hash(codes[0].upper().replace("-", " ")) == totp.recovery_code_hash(codes[0])
    assert codes[0] not in totp.recovery_code_hash(codes[0])


async def _enrolled(users: Users) -> tuple[users_pb2.User, str, list[str]]:
    """A fresh account with an active factor: (user, secret, recovery codes)."""
    user = await users.sign_up()
    enrolment = await users.stub.EnrollTotp(
        users_pb2.EnrollTotpRequest(id=user.id), metadata=users.auth(user)
    )
    activated = await users.stub.ActivateTotp(
        users_pb2.ActivateTotpRequest(id=user.id, code=pyotp.TOTP(enrolment.secret).now()),
        metadata=users.auth(user),
    )
    return user, enrolment.secret, list(activated.recovery_codes)


async def test_enrol_then_activate_with_a_code(users: Users) -> None:
    user = await users.sign_up("ada")
    enrolment = await users.stub.EnrollTotp(
        users_pb2.EnrollTotpRequest(id=user.id), metadata=users.auth(user)
    )
    assert len(base64.b32decode(enrolment.secret)) == 20
    uri = urlparse(enrolment.otpauth_uri)
    assert (uri.scheme, uri.netloc, uri.path) == ("otpauth", "totp", "/Pinexa:ada")
    assert parse_qs(uri.query)["secret"] == [enrolment.secret]
    assert parse_qs(uri.query)["issuer"] == ["Pinexa"]
    assert "<svg" in enrolment.qr_svg and "</svg>" in enrolment.qr_svg
    # A standalone document (the console shows it as an <img> data: URL, which needs the namespace).
    assert 'xmlns="http://www.w3.org/2000/svg"' in enrolment.qr_svg
    assert pyotp.parse_uri(enrolment.otpauth_uri).secret == enrolment.secret

    # Not active until a code comes: login needs no second step yet.
    identity = await users.internal.VerifyCredentials(
        users_internal_pb2.VerifyCredentialsRequest(username="ada", password="correct horse battery")
    )
    assert not identity.totp_enabled

    wrong = await rpc_error(
        users.stub.ActivateTotp(
            users_pb2.ActivateTotpRequest(
                id=user.id, code="000000" if pyotp.TOTP(enrolment.secret).now() != "000000" else "111111"
            ),
            metadata=users.auth(user),
        ),
        Code.INVALID_ARGUMENT,
        "INVALID_TOTP_CODE",
    )
    assert "code" in field_violations(wrong)
    bad = await rpc_error(
        users.stub.ActivateTotp(
            users_pb2.ActivateTotpRequest(id=user.id, code="12ab"), metadata=users.auth(user)
        ),
        Code.INVALID_ARGUMENT,
    )
    assert "code" in field_violations(bad)

    activated = await users.stub.ActivateTotp(
        users_pb2.ActivateTotpRequest(id=user.id, code=pyotp.TOTP(enrolment.secret).now()),
        metadata=users.auth(user),
    )
    assert len(activated.recovery_codes) == 10 and len(set(activated.recovery_codes)) == 10
    identity = await users.internal.VerifyCredentials(
        users_internal_pb2.VerifyCredentialsRequest(username="ada", password="correct horse battery")
    )
    assert identity.totp_enabled

    # An active factor is not replaced by enrolling again, nor activated twice.
    await rpc_error(
        users.stub.EnrollTotp(users_pb2.EnrollTotpRequest(id=user.id), metadata=users.auth(user)),
        Code.FAILED_PRECONDITION,
        "TOTP_ALREADY_ENABLED",
    )
    await rpc_error(
        users.stub.ActivateTotp(
            users_pb2.ActivateTotpRequest(id=user.id, code=pyotp.TOTP(enrolment.secret).now()),
            metadata=users.auth(user),
        ),
        Code.FAILED_PRECONDITION,
        "TOTP_NOT_ENROLLED",
    )


async def test_a_second_enrolment_replaces_a_pending_one(users: Users) -> None:
    user = await users.sign_up()
    first = await users.stub.EnrollTotp(users_pb2.EnrollTotpRequest(id=user.id), metadata=users.auth(user))
    second = await users.stub.EnrollTotp(users_pb2.EnrollTotpRequest(id=user.id), metadata=users.auth(user))
    assert first.secret != second.secret
    await rpc_error(
        users.stub.ActivateTotp(
            users_pb2.ActivateTotpRequest(id=user.id, code=pyotp.TOTP(first.secret).now()),
            metadata=users.auth(user),
        ),
        Code.INVALID_ARGUMENT,
        "INVALID_TOTP_CODE",
    )


async def test_activation_without_enrolment_is_refused(users: Users) -> None:
    user = await users.sign_up()
    await rpc_error(
        users.stub.ActivateTotp(
            users_pb2.ActivateTotpRequest(id=user.id, code="123456"), metadata=users.auth(user)
        ),
        Code.FAILED_PRECONDITION,
        "TOTP_NOT_ENROLLED",
    )


async def test_only_the_account_itself_may_enrol_or_activate(users: Users) -> None:
    ada = await users.sign_up()
    eve = await users.sign_up()
    enrolment = await users.stub.EnrollTotp(users_pb2.EnrollTotpRequest(id=ada.id), metadata=users.auth(ada))
    code = pyotp.TOTP(enrolment.secret).now()
    for metadata in (users.auth(eve), users.admin()):
        await rpc_error(
            users.stub.EnrollTotp(users_pb2.EnrollTotpRequest(id=ada.id), metadata=metadata),
            Code.PERMISSION_DENIED,
            "SELF_ONLY",
        )
        await rpc_error(
            users.stub.ActivateTotp(users_pb2.ActivateTotpRequest(id=ada.id, code=code), metadata=metadata),
            Code.PERMISSION_DENIED,
            "SELF_ONLY",
        )
    await rpc_error(users.stub.EnrollTotp(users_pb2.EnrollTotpRequest(id=ada.id)), Code.UNAUTHENTICATED)
    # Ada's pending enrolment is untouched by the refusals: her code still activates it.
    await users.stub.ActivateTotp(
        users_pb2.ActivateTotpRequest(id=ada.id, code=code), metadata=users.auth(ada)
    )


async def _raw(url: str) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    engine = sql.create_engine(url)
    try:
        async with engine.connect() as connection:
            factors = (await connection.execute(select(totp_factors))).mappings().all()
            codes = (await connection.execute(select(recovery_table))).mappings().all()
        return [dict(r) for r in factors], [dict(r) for r in codes]
    finally:
        await engine.dispose()


async def test_the_secret_is_sealed_and_recovery_codes_are_only_hashes(users: Users, sql_url: str) -> None:
    user, secret, codes = await _enrolled(users)
    [factor], stored_codes = await _raw(sql_url)
    assert factor["user_id"] == user.id and factor["active"]
    assert str(factor["secret"]).startswith("pii1:") and secret not in str(factor["secret"])
    assert len(stored_codes) == 10
    hashes = {str(row["code_hash"]) for row in stored_codes}
    assert hashes == {totp.recovery_code_hash(c) for c in codes}
    everything = " ".join(str(v) for row in stored_codes for v in row.values())
    assert not any(c in everything or c.replace("-", "") in everything for c in codes)


async def test_second_factor_check_accepts_each_step_once(start_users: StartUsers) -> None:
    clock = FakeClock(1_800_000_010.0)  # 10 s into a step; nothing moves unless the test says
    users = await start_users(clock=clock.utc)
    user = await users.sign_up()
    secret = (
        await users.stub.EnrollTotp(users_pb2.EnrollTotpRequest(id=user.id), metadata=users.auth(user))
    ).secret
    authenticator = pyotp.TOTP(secret)
    await users.stub.ActivateTotp(
        users_pb2.ActivateTotpRequest(id=user.id, code=authenticator.at(clock())), metadata=users.auth(user)
    )

    def verify(code: str = "", recovery_code: str = "") -> object:
        return users.internal.VerifySecondFactor(
            users_internal_pb2.VerifySecondFactorRequest(
                user_id=user.id, code=code, recovery_code=recovery_code
            )
        )

    # Activation used the current step: the same code again is a replay.
    await rpc_error(verify(authenticator.at(clock())), Code.UNAUTHENTICATED, "INVALID_SECOND_FACTOR")  # type: ignore[arg-type]
    # Two steps off is refused either way (the device's clock a minute off).
    for offset in (-60, 60):
        await rpc_error(
            verify(authenticator.at(clock() + offset)),  # type: ignore[arg-type]
            Code.UNAUTHENTICATED,
            "INVALID_SECOND_FACTOR",
        )
    # The next step's code (the device's clock fast, within the ±1 tolerance) is accepted once.
    ahead = authenticator.at(clock() + 30)
    assert (await verify(ahead)).recovery_codes_left == 10  # type: ignore[attr-defined]
    await rpc_error(verify(ahead), Code.UNAUTHENTICATED, "INVALID_SECOND_FACTOR")  # type: ignore[arg-type]
    # A minute later the previous step is the one just accepted: a slow device's code for it is
    # still a replay.
    clock.advance(60)
    await rpc_error(verify(authenticator.at(clock() - 30)), Code.UNAUTHENTICATED, "INVALID_SECOND_FACTOR")  # type: ignore[arg-type]
    # 30 s on, the previous step (a slow device, one behind) is a new one: accepted.
    clock.advance(30)
    assert (await verify(authenticator.at(clock() - 30))).recovery_codes_left == 10  # type: ignore[attr-defined]
    await rpc_error(verify(), Code.INVALID_ARGUMENT)  # type: ignore[arg-type]
    await rpc_error(verify("123456", "abcd"), Code.INVALID_ARGUMENT)  # type: ignore[arg-type]


async def test_a_recovery_code_works_once(users: Users) -> None:
    user, _, codes = await _enrolled(users)
    request = users_internal_pb2.VerifySecondFactorRequest(user_id=user.id, recovery_code=codes[3].upper())
    assert (await users.internal.VerifySecondFactor(request)).recovery_codes_left == 9
    await rpc_error(users.internal.VerifySecondFactor(request), Code.UNAUTHENTICATED, "INVALID_SECOND_FACTOR")
    other = await users.sign_up()
    await rpc_error(
        users.internal.VerifySecondFactor(
            users_internal_pb2.VerifySecondFactorRequest(user_id=other.id, recovery_code=codes[4])
        ),
        Code.UNAUTHENTICATED,
        "INVALID_SECOND_FACTOR",
    )


async def test_reencrypt_rewrites_totp_secrets(start_users: StartUsers, sql_url: str, tmp_path: Path) -> None:
    k1, k2 = base64.b64encode(b"1" * 32).decode(), base64.b64encode(b"2" * 32).decode()
    before = await start_users(pii_encryption_key=k1)
    user, secret, _ = await _enrolled(before)
    await before.host.stop(grace=1, drain=0)
    settings = UsersSettings(database_url=sql_url, data_dir=tmp_path, pii_encryption_key=f"{k2},{k1}")
    assert await reencrypt(settings) == 2  # the account's fields and its TOTP secret
    [factor], _ = await _raw(sql_url)
    assert str(factor["secret"]).startswith(f"pii1:{key_id(b'2' * 32)}:")
    after = await start_users(pii_encryption_key=f"{k2},{k1}")
    ahead = pyotp.TOTP(secret).at(time.time() + 30)
    await after.internal.VerifySecondFactor(
        users_internal_pb2.VerifySecondFactorRequest(user_id=user.id, code=ahead)
    )


async def test_step_up_wants_otp_in_amr_and_a_recent_auth_time(users: Users) -> None:
    user, _, _ = await _enrolled(users)
    now = int(time.time())

    def token(**claims: object) -> tuple[tuple[str, str], ...]:
        return bearer(users.keys.mint(user.id, "user", **claims))

    stale = (
        token(),  # no amr at all (an older token)
        token(amr=["pwd"], auth_time=now),
        token(amr=["pwd", "otp"], auth_time=now - 601),
        token(amr=["pwd", "otp"]),  # no auth_time
    )
    for metadata in stale:
        await rpc_error(
            users.stub.RegenerateRecoveryCodes(
                users_pb2.RegenerateRecoveryCodesRequest(id=user.id), metadata=metadata
            ),
            Code.UNAUTHENTICATED,
            "REAUTHENTICATION_REQUIRED",
        )
        await rpc_error(
            users.stub.DeleteUser(users_pb2.DeleteUserRequest(id=user.id), metadata=metadata),
            Code.UNAUTHENTICATED,
            "REAUTHENTICATION_REQUIRED",
        )
    recent = token(amr=["pwd", "otp"], auth_time=now - 590)
    assert (
        len(
            (
                await users.stub.RegenerateRecoveryCodes(
                    users_pb2.RegenerateRecoveryCodesRequest(id=user.id), metadata=recent
                )
            ).recovery_codes
        )
        == 10
    )
    # An admin deleting someone else's account is not asked for the user's factor.
    await users.stub.DeleteUser(users_pb2.DeleteUserRequest(id=user.id), metadata=users.admin())


async def test_disable_and_regenerate_are_the_account_own(users: Users) -> None:
    user, _, _ = await _enrolled(users)
    eve = await users.sign_up()
    for metadata in (users.auth(eve), users.admin()):
        await rpc_error(
            users.stub.DisableTotp(users_pb2.DisableTotpRequest(id=user.id), metadata=metadata),
            Code.PERMISSION_DENIED,
            "SELF_ONLY",
        )
        await rpc_error(
            users.stub.RegenerateRecoveryCodes(
                users_pb2.RegenerateRecoveryCodesRequest(id=user.id), metadata=metadata
            ),
            Code.PERMISSION_DENIED,
            "SELF_ONLY",
        )
    plain = await users.sign_up()
    await rpc_error(
        users.stub.DisableTotp(users_pb2.DisableTotpRequest(id=plain.id), metadata=users.auth(plain)),
        Code.FAILED_PRECONDITION,
        "TOTP_NOT_ENABLED",
    )


# ---- mail notices ---------------------------------------------------------------------------


async def _notices(users: Users, address: str, count: int) -> list:  # type: ignore[type-arg]
    async def arrived() -> bool:
        return len([m for m in users.mailbox.messages if m["To"] == address]) >= count

    await wait_until(arrived, timeout=10, what=f"{count} mail(s) to {address}")
    # Not the sign-up's verification mail; the notices, as delivered.
    return [m for m in users.mailbox.messages if m["To"] == address and "Confirm" not in m["Subject"]]


def _text(message: object) -> tuple[str, str]:
    """(plain text, HTML) of a notice."""
    plain = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[attr-defined]
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[attr-defined]
    return plain, html


async def test_enabling_using_a_recovery_code_and_disabling_each_send_a_notice(users: Users) -> None:
    user, _, codes = await _enrolled(users)
    [enabled] = await _notices(users, user.email, 2)
    assert enabled["Subject"] == "Two-step sign-in was turned on for your Pinexa account"
    plain, html = _text(enabled)
    assert "turned on" in plain and "recovery codes" in plain and "<p>" in html and "turned on" in html

    await users.internal.VerifySecondFactor(
        users_internal_pb2.VerifySecondFactorRequest(user_id=user.id, recovery_code=codes[0])
    )
    [_, used] = await _notices(users, user.email, 3)
    assert used["Subject"] == "A recovery code of your Pinexa account was used"
    plain, html = _text(used)
    assert "9 unused recovery codes remain" in plain and "9 unused recovery codes remain" in html
    assert not any(code in plain or code in html for code in codes)  # no code is ever mailed
    # A wrong or spent recovery code sends nothing.
    for wrong in (codes[0], "aaaa-bbbb-cccc-dddd"):
        await rpc_error(
            users.internal.VerifySecondFactor(
                users_internal_pb2.VerifySecondFactorRequest(user_id=user.id, recovery_code=wrong)
            ),
            Code.UNAUTHENTICATED,
            "INVALID_SECOND_FACTOR",
        )

    stepped = bearer(users.keys.mint(user.id, "user", amr=["pwd", "otp"], auth_time=int(time.time())))
    await users.stub.DisableTotp(users_pb2.DisableTotpRequest(id=user.id), metadata=stepped)
    [_, _, disabled] = await _notices(users, user.email, 4)
    assert disabled["Subject"] == "Two-step sign-in was turned off for your Pinexa account"
    plain, _ = _text(disabled)
    assert "was turned off" in plain and "administrator" not in plain


async def test_an_admin_removal_sends_its_own_notice_and_the_issuer_is_the_product(
    start_users: StartUsers,
) -> None:
    users = await start_users(product_name="Acme Cloud")
    user = await users.sign_up("grace")
    enrolment = await users.stub.EnrollTotp(
        users_pb2.EnrollTotpRequest(id=user.id), metadata=users.auth(user)
    )
    assert urlparse(enrolment.otpauth_uri).path == "/Acme%20Cloud:grace"
    assert parse_qs(urlparse(enrolment.otpauth_uri).query)["issuer"] == ["Acme Cloud"]
    assert pyotp.parse_uri(enrolment.otpauth_uri).issuer == "Acme Cloud"
    # A pending enrolment removed is nobody's news: no notice.
    removed = await users.internal.RemoveSecondFactor(
        users_internal_pb2.RemoveSecondFactorRequest(user_id=user.id)
    )
    assert removed.removed
    grace = user
    user, _, _ = await _enrolled(users)
    await users.internal.RemoveSecondFactor(users_internal_pb2.RemoveSecondFactorRequest(user_id=user.id))
    # The worker may deliver in any order: find each notice by its subject.
    by_subject = {m["Subject"]: m for m in await _notices(users, user.email, 3)}
    assert set(by_subject) == {
        "Two-step sign-in was turned on for your Acme Cloud account",
        "Two-step sign-in was turned off for your Acme Cloud account",
    }
    gone = by_subject["Two-step sign-in was turned off for your Acme Cloud account"]
    plain, html = _text(gone)
    assert "An administrator removed" in plain and "ended every session" in plain
    assert "An administrator removed" in html
    assert not (
        await users.internal.GetIdentity(users_internal_pb2.GetIdentityRequest(user_id=user.id))
    ).totp_enabled
    # grace's pending enrolment went away without a notice (only the sign-up's mail, queued
    # before everything above).
    assert [m["Subject"] for m in users.mailbox.messages if m["To"] == grace.email] == [
        "Confirm your e-mail address for Pinexa".replace("Pinexa", "Acme Cloud")
    ]
