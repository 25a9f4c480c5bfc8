"""Signing keys: loading, choosing the one that signs, publishing them as a JWKS, and creating new ones.

Where keys come from, in this order:

1. `JWT_PRIVATE_KEYS`: one or more PEM private keys (PKCS#8) pasted one after another, as a
   Kubernetes Secret exposes them through an environment variable;
2. `JWT_KEYS_DIR`: every `*.pem` file in that folder, in file-name order (a Secret mounted as a
   volume works the same way).

"Newest" is the position in that order: the last key signs, every key is published in the JWKS.
`python -m services.auth keygen` names files by their UTC creation time
(`20260501T120000.000000Z-es256.pem`), so file-name order is creation order; the development key
is `0000-dev-es256.pem`, which sorts before them, so a key added with keygen takes over.

A key may carry an `Activates-At:` line before its PEM block (RFC 7468 allows explanatory text
there): until then it is published but does not sign, which lets every verifier learn a key before
the first token signed with it arrives.

The key id (`kid`) is the key's RFC 7638 JWK thumbprint (SHA-256, base64url), so it is stable, needs
no bookkeeping and cannot collide between two different keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from services.kit.settings import SettingsError

log = logging.getLogger(__name__)

Algorithm = Literal["ES256", "EdDSA"]
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_PEM_BLOCK = re.compile(
    r"(?P<text>(?:^(?!-----BEGIN)[^\n]*\n)*)"
    r"(?P<pem>^-----BEGIN (?P<label>[A-Z ]+)-----\n.*?^-----END (?P=label)-----$)",
    re.MULTILINE | re.DOTALL,
)
_ACTIVATES_AT = re.compile(r"^\s*Activates-At:\s*(\S+)\s*$", re.MULTILINE | re.IGNORECASE)
DEV_KEY_NAME = "0000-dev-es256.pem"  # sorts before keygen's time-stamped names


class KeyConfigError(SettingsError):
    """The configured keys are missing or unusable; the message says which and why."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(private_key: PrivateKey) -> dict[str, str]:
    """The public half of a key as a JWK (without kid/alg/use)."""
    public = private_key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        if not isinstance(public.curve, ec.SECP256R1):
            raise KeyConfigError(f"EC keys must be on P-256 for ES256, not {public.curve.name}")
        numbers = public.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
        }
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, without whitespace; base64url."""
    required = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("crv", "kty", "x")
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class SigningKey:
    """One private key, with what the JWKS says about it."""

    private_key: PrivateKey = field(repr=False)
    algorithm: Algorithm
    kid: str
    source: str
    """Where it came from (`JWT_PRIVATE_KEYS[0]` or a file name), for logs; never the key."""
    activates_at: float = 0.0

    @classmethod
    def from_private_key(
        cls, private_key: PrivateKey, *, source: str, activates_at: float = 0.0
    ) -> SigningKey:
        algorithm: Algorithm = "ES256" if isinstance(private_key, ec.EllipticCurvePrivateKey) else "EdDSA"
        return cls(
            private_key=private_key,
            algorithm=algorithm,
            kid=thumbprint(public_jwk(private_key)),
            source=source,
            activates_at=activates_at,
        )

    @property
    def jwk(self) -> dict[str, str]:
        crv_alg = {"alg": self.algorithm, "use": "sig", "kid": self.kid}
        return {**public_jwk(self.private_key), **crv_alg}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims, self.private_key, algorithm=self.algorithm, headers={"kid": self.kid, "typ": "at+jwt"}
        )


def _parse_time(value: str, source: str) -> float:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise KeyConfigError(f"{source}: Activates-At must be an ISO 8601 time, got {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_pem_keys(text: str, *, source: str) -> list[SigningKey]:
    """Every private key in `text` (one or more PEM blocks, each optionally preceded by an
    `Activates-At:` line), in the order written."""
    keys: list[SigningKey] = []
    normalized = text.replace("\r\n", "\n").replace("\\n", "\n").strip() + "\n"
    for index, match in enumerate(_PEM_BLOCK.finditer(normalized)):
        name = f"{source}[{index}]" if source.startswith("JWT_PRIVATE_KEYS") else source
        if "PRIVATE KEY" not in match.group("label"):
            raise KeyConfigError(f"{name}: expected a private key, found a {match.group('label')} block")
        try:
            private_key = serialization.load_pem_private_key(match.group("pem").encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise KeyConfigError(f"{name}: not a readable unencrypted PEM private key ({exc})") from None
        if not isinstance(private_key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise KeyConfigError(f"{name}: only EC P-256 (ES256) and Ed25519 (EdDSA) keys are supported")
        activation = _ACTIVATES_AT.search(match.group("text"))
        activates_at = _parse_time(activation.group(1), name) if activation else 0.0
        keys.append(SigningKey.from_private_key(private_key, source=name, activates_at=activates_at))
    if not keys and normalized.strip():
        raise KeyConfigError(f"{source}: no PEM private key found")
    return keys


def load_key_files(directory: Path) -> list[SigningKey]:
    """The `*.pem` files of `directory` in file-name order; a missing folder holds no keys."""
    if not directory.is_dir():
        return []
    keys: list[SigningKey] = []
    for path in sorted(directory.glob("*.pem")):
        mode = path.stat().st_mode & 0o777
        # Group-readable is normal (a Kubernetes Secret volume is readable by the pod's fsGroup).
        if mode & 0o007:
            log.warning("signing key file %s is readable by other users (mode %o); use 0600", path.name, mode)
        keys.extend(parse_pem_keys(path.read_text(), source=path.name))
    return keys


class KeyRing:
    """The keys auth holds: every one is published, the newest active one signs."""

    def __init__(
        self,
        keys: Sequence[SigningKey],
        *,
        algorithms: Sequence[str] = ("ES256", "EdDSA"),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise KeyConfigError("no signing keys are configured")
        refused = [k.source for k in keys if k.algorithm not in algorithms]
        if refused:
            raise KeyConfigError(
                f"keys {refused} use an algorithm outside JWT_ALGORITHMS ({', '.join(algorithms)})"
            )
        unique: dict[str, SigningKey] = {}
        for key in keys:  # the same key twice (env and file) is published once, at its later place
            unique.pop(key.kid, None)
            unique[key.kid] = key
        self._keys = list(unique.values())
        self._clock = clock
        if all(k.activates_at > clock() for k in self._keys):
            raise KeyConfigError("every configured key has an Activates-At in the future; none can sign yet")

    @property
    def keys(self) -> list[SigningKey]:
        return list(self._keys)

    def signing_key(self) -> SigningKey:
        """The last key, in configuration order, whose activation time has come."""
        now = self._clock()
        active = [k for k in self._keys if k.activates_at <= now]
        return active[-1] if active else self._keys[0]

    def jwks(self) -> list[dict[str, str]]:
        """Every public key, newest first."""
        return [k.jwk for k in reversed(self._keys)]


def generate_private_key(algorithm: Algorithm = "ES256") -> PrivateKey:
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def private_key_pem(private_key: PrivateKey, *, activates_at: float | None = None) -> str:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    if activates_at:
        # The header has whole seconds: round up, so the key never signs before the time asked for.
        stamp = (
            datetime.fromtimestamp(math.ceil(activates_at), UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z")
        )
        pem = f"Activates-At: {stamp}\n{pem}"
    return pem


def _write_exclusive(path: Path, content: str) -> bool:
    """Create `path` with mode 0600 unless it exists; False when someone else created it first."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    return True


def write_new_key(
    directory: Path,
    *,
    algorithm: Algorithm = "ES256",
    activates_at: float | None = None,
    now: float | None = None,
) -> tuple[Path, SigningKey]:
    """Create a key file named by its UTC creation time, so file-name order is creation order."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    private_key = generate_private_key(algorithm)
    pem = private_key_pem(private_key, activates_at=activates_at)
    for attempt in range(1000):  # two keys in the same microsecond: the later name sorts later
        stamp = created + timedelta(microseconds=attempt)
        path = directory / f"{stamp:%Y%m%dT%H%M%S.%f}Z-{algorithm.lower()}.pem"
        if _write_exclusive(path, pem):
            return path, SigningKey.from_private_key(
                private_key, source=path.name, activates_at=activates_at or 0.0
            )
    raise KeyConfigError(f"could not find a free file name for a new key in {directory}")


def load_keys(
    *,
    private_keys: str,
    keys_dir: Path,
    production: bool,
    algorithms: Sequence[str] = ("ES256", "EdDSA"),
    clock: Callable[[], float] = time.time,
) -> KeyRing:
    """The key ring from JWT_PRIVATE_KEYS and JWT_KEYS_DIR.

    In development with nothing configured, an ES256 key is generated once into
    `keys_dir/0000-dev-es256.pem` (mode 0600) and reused on every later start. In production a missing
    key is an error: tokens signed by a throwaway key would stop verifying at the next restart.
    """
    keys = parse_pem_keys(private_keys, source="JWT_PRIVATE_KEYS") if private_keys else []
    keys += load_key_files(keys_dir)
    if not keys:
        if production:
            raise KeyConfigError(
                "no signing keys: set JWT_PRIVATE_KEYS or put PEM files in JWT_KEYS_DIR "
                f"({keys_dir}); create one with `python -m services.auth keygen`"
            )
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = keys_dir / DEV_KEY_NAME
        if _write_exclusive(path, private_key_pem(generate_private_key("ES256"))):
            log.warning("generated a development signing key in %s; never use it in production", path)
        keys = load_key_files(keys_dir)
    ring = KeyRing(keys, algorithms=algorithms, clock=clock)
    log.info(
        "signing keys loaded",
        extra={"kids": [k.kid for k in ring.keys], "signing_kid": ring.signing_key().kid},
    )
    return ring
