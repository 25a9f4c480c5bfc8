"""Personal data encrypted at rest: the cipher on its own, then what really lands in the database,
key rotation, and the key's configuration rules."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from pinexa.users.v1 import users_internal_pb2, users_pb2
from services.kit import sql
from services.kit.settings import Settings, SettingsError
from services.users.crypto import (
    DecryptionError,
    PiiCipher,
    cipher_from_settings,
    key_id,
    load_or_create_dev_key,
    new_key,
    parse_keys,
)
from services.users.schema import users as users_table
from services.users.server import create_service, reencrypt
from tests.support import TestKeys
from tests.users.conftest import PASSWORD, StartUsers

K1, K2 = os.urandom(32), os.urandom(32)


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


# -- the cipher ----------------------------------------------------------------------------------


def test_seal_and_open_round_trip_with_a_key_id_and_fresh_nonces() -> None:
    cipher = PiiCipher([K1])
    first = cipher.seal("email", "u1", "Ada@Example.com")
    second = cipher.seal("email", "u1", "Ada@Example.com")
    assert first.startswith(f"pii1:{key_id(K1)}:")
    assert first != second  # a fresh nonce each time
    assert "Ada" not in first
    assert cipher.open("email", "u1", first) == cipher.open("email", "u1", second) == "Ada@Example.com"
    assert cipher.open("display_name", "u1", cipher.seal("display_name", "u1", "")) == ""


@pytest.mark.parametrize(
    ("column", "row_id"), [("display_name", "u1"), ("email", "u2")], ids=["other column", "other row"]
)
def test_a_ciphertext_moved_to_another_row_or_column_does_not_open(column: str, row_id: str) -> None:
    cipher = PiiCipher([K1])
    sealed = cipher.seal("email", "u1", "ada@example.com")
    with pytest.raises(DecryptionError):
        cipher.open(column, row_id, sealed)


def test_tampered_unknown_key_and_plaintext_values_do_not_open() -> None:
    cipher = PiiCipher([K1])
    sealed = cipher.seal("email", "u1", "ada@example.com")
    head, payload = sealed.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(payload))
    raw[-1] ^= 1
    tampered = f"{head}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    for bad in (tampered, PiiCipher([K2]).seal("email", "u1", "x"), "ada@example.com", "pii1:zz:", ""):
        with pytest.raises(DecryptionError) as caught:
            cipher.open("email", "u1", bad)
        assert "ada@example.com" not in str(caught.value)


def test_rotation_keeps_old_values_readable_and_the_blind_index_stable() -> None:
    old = PiiCipher([K1])
    rotated = PiiCipher([K2, K1])  # newest first; K1 stays listed
    sealed_before = old.seal("email", "u1", "ada@example.com")
    assert rotated.open("email", "u1", sealed_before) == "ada@example.com"
    sealed_after = rotated.seal("email", "u1", "ada@example.com")
    assert sealed_after.startswith(f"pii1:{key_id(K2)}:")
    assert rotated.is_current(sealed_after) and not rotated.is_current(sealed_before)
    with pytest.raises(DecryptionError):
        old.open("email", "u1", sealed_after)
    # The index is keyed from the last key listed, so it does not move on rotation...
    assert rotated.email_lookup("ada@example.com") == old.email_lookup("ada@example.com")
    # ...and it is keyed: another keyring gives another index, and it is not the address.
    assert PiiCipher([K2]).email_lookup("ada@example.com") != old.email_lookup("ada@example.com")
    lookup = old.email_lookup("ada@example.com")
    # A hex digest (64 characters), not the address: nothing of it shows ("ada" could by chance).
    assert len(lookup) == 64 and int(lookup, 16) >= 0 and "@" not in lookup and "example" not in lookup


def test_key_parsing() -> None:
    assert parse_keys(f"{_b64(K2)}, {_b64(K1)}") == [K2, K1]
    assert len(base64.b64decode(new_key())) == 32
    for bad in ("not base64!", _b64(os.urandom(16)), _b64(os.urandom(33)), " , "):
        with pytest.raises(SettingsError):
            parse_keys(bad)
        with pytest.raises(SettingsError):
            Settings.from_env({"PII_ENCRYPTION_KEY": bad})
    assert Settings.from_env({"PII_ENCRYPTION_KEY": _b64(K1)}).pii_encryption_key == _b64(K1)
    assert _b64(K1) not in repr(Settings.from_env({"PII_ENCRYPTION_KEY": _b64(K1)}))
    with pytest.raises(SettingsError):
        PiiCipher([K1, K1])


def test_production_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    settings = Settings(environment="production", data_dir=tmp_path, internal_token="t" * 40)
    with pytest.raises(SettingsError, match="PII_ENCRYPTION_KEY"):
        cipher_from_settings(settings)
    assert not (tmp_path / "keys").exists()  # and generates nothing
    production = Settings(
        environment="production", data_dir=tmp_path, internal_token="t" * 40, pii_encryption_key=_b64(K1)
    )
    assert cipher_from_settings(production).current_key_id == key_id(K1)


async def test_production_service_refuses_to_start_without_a_key(tmp_path: Path, test_keys: TestKeys) -> None:
    settings = Settings(environment="production", data_dir=tmp_path, internal_token="t" * 40)
    with pytest.raises(SettingsError, match="PII_ENCRYPTION_KEY"):
        await create_service(settings, verifier=test_keys.verifier())


def test_development_generates_a_private_key_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = cipher_from_settings(settings)
    path = tmp_path / "keys" / "pii.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cipher_from_settings(settings).current_key_id == first.current_key_id


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "pii.key"
    results: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        results.append(load_or_create_dev_key(path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["pii.key"]  # no temporary files left


# -- in the database -----------------------------------------------------------------------------


async def _raw_rows(url: str) -> list[dict[str, object]]:
    engine = sql.create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(users_table))).mappings().all()
        return [dict(row) for row in rows]
    finally:
        await engine.dispose()


async def test_email_and_display_name_are_stored_encrypted(start_users: StartUsers, sql_url: str) -> None:
    users = await start_users()
    user = await users.sign_up("cipher", email="Very.Private@Example.com", display_name="Secret Name")
    [row] = await _raw_rows(sql_url)
    for column in ("email", "display_name"):
        assert str(row[column]).startswith("pii1:")
    stored = " ".join(str(value) for value in row.values()).lower()
    assert "very.private" not in stored and "example.com" not in stored
    assert "secret name" not in stored
    assert len(str(row["email_lookup"])) == 64
    # What the API returns is the plaintext, and login by e-mail still works.
    assert user.email == "Very.Private@Example.com" and user.display_name == "Secret Name"
    identity = await users.internal.VerifyCredentials(
        users_internal_pb2.VerifyCredentialsRequest(username="very.private@example.COM", password=PASSWORD)
    )
    assert identity.user_id == user.id
    if sql.is_sqlite(sql_url):
        database = Path(sql_url.split("///", 1)[1])
        files = [p for p in database.parent.iterdir() if p.name.startswith(database.name)]
        blob = b"".join(p.read_bytes() for p in files).lower()
        assert b"very.private" not in blob and b"secret name" not in blob


async def test_key_rotation_end_to_end(start_users: StartUsers, sql_url: str) -> None:
    before = await start_users(pii_encryption_key=_b64(K1))
    alice = await before.sign_up("alice", email="alice@example.com", display_name="Alice")
    await before.host.stop(grace=1, drain=0)

    # Prepend a new key: old rows still read, new rows use the new key, the index is unchanged.
    rotated = await start_users(pii_encryption_key=f"{_b64(K2)},{_b64(K1)}")
    assert (
        await rotated.stub.GetUser(users_pb2.GetUserRequest(id=alice.id), metadata=rotated.auth(alice))
        == alice
    )
    bob = await rotated.sign_up("bob", email="bob@example.com")
    duplicate = users_pb2.User(username="alice2", email="ALICE@example.com", password=PASSWORD)
    with pytest.raises(Exception, match="already exists"):
        await rotated.stub.CreateUser(users_pb2.CreateUserRequest(user=duplicate))
    identity = await rotated.internal.VerifyCredentials(
        users_internal_pb2.VerifyCredentialsRequest(username="alice@example.com", password=PASSWORD)
    )
    assert identity.user_id == alice.id
    rows = {row["username"]: row for row in await _raw_rows(sql_url)}
    assert str(rows["alice"]["email"]).startswith(f"pii1:{key_id(K1)}:")
    assert str(rows["bob"]["email"]).startswith(f"pii1:{key_id(K2)}:")

    # Re-encrypt: everything moves to the new key; nothing visible changes.
    settings = Settings(database_url=sql_url, pii_encryption_key=f"{_b64(K2)},{_b64(K1)}")
    assert await reencrypt(settings) == 1
    assert await reencrypt(settings) == 0
    for row in await _raw_rows(sql_url):
        assert str(row["email"]).startswith(f"pii1:{key_id(K2)}:")
        assert str(row["display_name"]).startswith(f"pii1:{key_id(K2)}:")
    after = await rotated.stub.GetUser(users_pb2.GetUserRequest(id=alice.id), metadata=rotated.auth(alice))
    assert after == alice
    assert (await rotated.stub.GetUser(users_pb2.GetUserRequest(id=bob.id), metadata=rotated.admin())) == bob
