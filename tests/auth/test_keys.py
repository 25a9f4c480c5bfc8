"""Signing keys: where they come from, which one signs, the kid, dev keys and the keygen CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from services.auth.keys import (
    KeyConfigError,
    KeyRing,
    SigningKey,
    generate_private_key,
    load_key_files,
    load_keys,
    parse_pem_keys,
    private_key_pem,
    thumbprint,
    write_new_key,
)

REPO = Path(__file__).resolve().parents[2]


def test_kid_is_the_rfc7638_thumbprint() -> None:
    # RFC 8037, appendix A.3: the thumbprint of the example Ed25519 public key.
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_a_key_signs_tokens_that_its_jwk_verifies(algorithm: str) -> None:
    key = SigningKey.from_private_key(generate_private_key(algorithm), source="t")  # type: ignore[arg-type]
    jwk = key.jwk
    assert jwk["kid"] == thumbprint(jwk) and jwk["alg"] == algorithm and jwk["use"] == "sig"
    assert "d" not in jwk
    token = key.sign({"sub": "u1", "aud": "pinexa"})
    header = jwt.get_unverified_header(token)
    assert header == {"alg": algorithm, "kid": key.kid, "typ": "at+jwt"}
    public = jwt.PyJWK(jwk)
    assert jwt.decode(token, public.key, algorithms=[algorithm], audience="pinexa")["sub"] == "u1"


def test_several_pem_blocks_in_one_variable_keep_their_order() -> None:
    a, b = generate_private_key("ES256"), generate_private_key("EdDSA")
    text = private_key_pem(a) + "\n" + private_key_pem(b)
    keys = parse_pem_keys(text, source="JWT_PRIVATE_KEYS")
    assert [k.algorithm for k in keys] == ["ES256", "EdDSA"]
    assert [k.source for k in keys] == ["JWT_PRIVATE_KEYS[0]", "JWT_PRIVATE_KEYS[1]"]
    # Some tools put a PEM into one line with literal "\n"; that works too.
    one_line = parse_pem_keys(text.replace("\n", "\\n"), source="JWT_PRIVATE_KEYS")
    assert [k.kid for k in one_line] == [k.kid for k in keys]


def test_the_last_key_signs_and_all_are_published_newest_first(tmp_path: Path) -> None:
    env_key = private_key_pem(generate_private_key())
    _, older = write_new_key(tmp_path, now=time.time() - 86400)
    _, newer = write_new_key(tmp_path, algorithm="EdDSA")
    ring = load_keys(private_keys=env_key, keys_dir=tmp_path, production=True)
    assert ring.signing_key().kid == newer.kid
    kids = [k["kid"] for k in ring.jwks()]
    assert kids[:2] == [newer.kid, older.kid] and len(kids) == 3


def test_a_key_with_a_future_activation_is_published_but_does_not_sign(tmp_path: Path) -> None:
    now = [time.time()]
    _, current = write_new_key(tmp_path, now=now[0] - 10)
    _, upcoming = write_new_key(tmp_path, activates_at=now[0] + 600)
    ring = load_keys(private_keys="", keys_dir=tmp_path, production=True, clock=lambda: now[0])
    assert upcoming.kid in [k["kid"] for k in ring.jwks()]
    assert ring.signing_key().kid == current.kid
    now[0] += 601
    assert ring.signing_key().kid == upcoming.kid


def test_a_key_never_signs_before_the_activation_time_asked_for(tmp_path: Path) -> None:
    # The file holds whole seconds; a fraction asked for rounds up, never down.
    asked = 1_700_000_000.4
    now = [asked - 0.3]
    _, current = write_new_key(tmp_path, now=asked - 10)
    _, upcoming = write_new_key(tmp_path, activates_at=asked)
    ring = load_keys(private_keys="", keys_dir=tmp_path, production=True, clock=lambda: now[0])
    assert ring.signing_key().kid == current.kid  # 0.1 s past the whole second below
    now[0] = asked
    assert ring.signing_key().kid == current.kid
    now[0] = 1_700_000_001.0
    assert ring.signing_key().kid == upcoming.kid


def test_key_files_are_created_private_and_named_in_creation_order(tmp_path: Path) -> None:
    first, _ = write_new_key(tmp_path, now=1_700_000_000)
    second, _ = write_new_key(tmp_path, now=1_700_000_000)  # same second: still a new name
    assert first.name == "20231114T221320.000000Z-es256.pem"
    assert second.name == "20231114T221320.000001Z-es256.pem"
    assert sorted(tmp_path.glob("*.pem")) == [first, second]
    for path in (first, second):
        assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("mode", "warns"), [(0o600, False), (0o440, False), (0o644, True)])
def test_only_a_key_file_readable_by_other_users_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, warns: bool
) -> None:
    # 0440 is how a Kubernetes Secret volume with an fsGroup presents the key: not a mistake.
    path, _ = write_new_key(tmp_path, now=1_700_000_000)
    path.chmod(mode)
    with caplog.at_level("WARNING", logger="services.auth.keys"):
        assert len(load_key_files(tmp_path)) == 1
    assert ("readable by other users" in caplog.text) is warns


def test_development_generates_one_key_and_keeps_it(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    first = load_keys(private_keys="", keys_dir=keys_dir, production=False)
    second = load_keys(private_keys="", keys_dir=keys_dir, production=False)
    assert first.signing_key().kid == second.signing_key().kid
    (path,) = keys_dir.glob("*.pem")
    assert path.stat().st_mode & 0o777 == 0o600
    assert keys_dir.stat().st_mode & 0o777 == 0o700
    # Rotating away from the dev key: a key made with keygen signs from the next start on.
    _, added = write_new_key(keys_dir)
    rotated = load_keys(private_keys="", keys_dir=keys_dir, production=False)
    assert rotated.signing_key().kid == added.kid
    assert first.signing_key().kid in [k["kid"] for k in rotated.jwks()]


def test_production_refuses_to_start_without_keys(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="no signing keys"):
        load_keys(private_keys="", keys_dir=tmp_path / "none", production=True)
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("garbage", "no PEM private key"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "not a readable"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "expected a private key"),
    ],
)
def test_unusable_key_material_is_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message):
        parse_pem_keys(text, source="JWT_PRIVATE_KEYS")


def test_a_key_outside_the_algorithm_allow_list_is_refused() -> None:
    key = SigningKey.from_private_key(generate_private_key("EdDSA"), source="k.pem")
    with pytest.raises(KeyConfigError, match="outside JWT_ALGORITHMS"):
        KeyRing([key], algorithms=("ES256",))


def test_rsa_keys_are_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    with pytest.raises(KeyConfigError, match="only EC P-256"):
        parse_pem_keys(pem, source="JWT_PRIVATE_KEYS")


def test_keygen_cli_writes_a_new_key_that_signs_next(tmp_path: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path), "JWT_KEYS_DIR": str(tmp_path / "keys")}
    for algorithm in ("ES256", "EdDSA"):
        result = subprocess.run(
            [sys.executable, "-m", "services.auth", "keygen", "--alg", algorithm],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "wrote" in result.stdout and "BEGIN" not in result.stdout + result.stderr
    ring = load_keys(private_keys="", keys_dir=tmp_path / "keys", production=True)
    assert [k.algorithm for k in ring.keys] == ["ES256", "EdDSA"]
    assert ring.signing_key().algorithm == "EdDSA"

    printed = subprocess.run(
        [sys.executable, "-m", "services.auth", "keygen", "--stdout", "--activate-in", "600"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    (key,) = parse_pem_keys(printed, source="JWT_PRIVATE_KEYS")
    assert key.activates_at > time.time() + 500
