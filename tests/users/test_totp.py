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
from tests.support import bearer, field_violations, rpc_error
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


async def test_second_factor_check_accepts_each_step_once(users: Users) -> None:
    user, secret, _ = await _enrolled(users)
    authenticator = pyotp.TOTP(secret)

    def verify(code: str = "", recovery_code: str = "") -> object:
        return users.internal.VerifySecondFactor(
            users_internal_pb2.VerifySecondFactorRequest(
                user_id=user.id, code=code, recovery_code=recovery_code
            )
        )

    # Activation used the current step: the same code again is a replay.
    await rpc_error(verify(authenticator.now()), Code.UNAUTHENTICATED, "INVALID_SECOND_FACTOR")  # type: ignore[arg-type]
    # The next step's code (a fast clock, within the ±1 tolerance) is accepted once.
    ahead = authenticator.at(time.time() + 30)
    assert (await verify(ahead)).recovery_codes_left == 10  # type: ignore[attr-defined]
    await rpc_error(verify(ahead), Code.UNAUTHENTICATED, "INVALID_SECOND_FACTOR")  # type: ignore[arg-type]
    # Two steps off is refused either way.
    for offset in (-60, 60):
        await rpc_error(
            verify(authenticator.at(time.time() + offset)),  # type: ignore[arg-type]
            Code.UNAUTHENTICATED,
            "INVALID_SECOND_FACTOR",
        )
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
