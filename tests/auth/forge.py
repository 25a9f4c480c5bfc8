"""Forged and broken access tokens, each paired with the ErrorInfo reason that must refuse it.

`forgeries(key)` builds them against a real signing key: some are signed correctly by that key
but carry a bad claim (wrong iss, expired ...), others are attacks on the signature itself
(alg none, HS256 keyed with the public key, a tampered payload ...).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from services.auth.keys import SigningKey
from tests.support import access_claims as claims

# exp - iat of "lifetime longer than access tokens live": one second more than the default
# ACCESS_TOKEN_TTL_SECONDS (900) plus JWT_LEEWAY_SECONDS (30) allow, counted from an iat a minute ago.
MAX_LIFETIME = 900 + 30 + 1 - 60

# The forgeries that issue 3 lists as "rejected at the edge": Envoy's jwt_authn must refuse each
# before it reaches a service (the services refuse all of `forgeries`).
EDGE_REFUSES = (
    "alg none",
    "alg None (case)",
    "HS256 keyed with the public key",
    "wrong iss",
    "wrong aud",
    "expired",
    "nbf in the future",
    "unknown kid",
    "signed by another key under the real kid",
    "tampered payload (role)",
    "tampered payload (sub)",
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def signed(key: SigningKey, payload: dict[str, Any], **headers: Any) -> str:
    return jwt.encode(payload, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid, **headers})


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return f"{segment(header)}.{segment(payload)}.{b64(signature)}"


def hs256_with_public_key(key: SigningKey, payload: dict[str, Any]) -> str:
    """The classic key-confusion attack: HMAC keyed with the verifier's own public key (PEM)."""
    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signing_input = f"{segment(header)}.{segment(payload)}".encode()
    return f"{signing_input.decode()}.{b64(hmac.new(public_pem, signing_input, hashlib.sha256).digest())}"


def tampered(token: str, **changes: Any) -> str:
    """The token with its payload changed and its original signature kept."""
    head, body, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload.update(changes)
    return f"{head}.{segment(payload)}.{signature}"


def other_key(algorithm: str = "ES256") -> ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey:
    return (
        ec.generate_private_key(ec.SECP256R1())
        if algorithm == "ES256"
        else ed25519.Ed25519PrivateKey.generate()
    )


def forgeries(key: SigningKey, sub: str = "user-1") -> dict[str, tuple[str, str]]:
    """name -> (token, the reason it must be refused with)."""
    now = int(time.time())
    good = signed(key, claims(sub))
    stranger = other_key(key.algorithm)
    other_alg = "EdDSA" if key.algorithm == "ES256" else "ES256"
    return {
        "alg none": (unsigned({"alg": "none", "kid": key.kid}, claims(sub)), "TOKEN_ALGORITHM_NOT_ALLOWED"),
        "alg None (case)": (
            unsigned({"alg": "None", "kid": key.kid}, claims(sub)),
            "TOKEN_ALGORITHM_NOT_ALLOWED",
        ),
        "HS256 keyed with the public key": (
            hs256_with_public_key(key, claims(sub)),
            "TOKEN_ALGORITHM_NOT_ALLOWED",
        ),
        "alg not a string": (
            unsigned({"alg": [key.algorithm], "kid": key.kid}, claims(sub), b"x" * 64),
            "TOKEN_ALGORITHM_NOT_ALLOWED",
        ),
        "alg of another key type": (
            jwt.encode(claims(sub), other_key(other_alg), algorithm=other_alg, headers={"kid": key.kid}),
            "TOKEN_ALGORITHM_NOT_ALLOWED",
        ),
        "wrong iss": (signed(key, claims(sub, iss="https://evil.example")), "TOKEN_ISSUER_INVALID"),
        "wrong aud": (signed(key, claims(sub, aud="someone-else")), "TOKEN_AUDIENCE_INVALID"),
        "expired": (signed(key, claims(sub, iat=now - 3600, nbf=now - 3600, exp=now - 120)), "TOKEN_EXPIRED"),
        "nbf in the future": (signed(key, claims(sub, nbf=now + 600, exp=now + 900)), "TOKEN_NOT_YET_VALID"),
        "lifetime longer than access tokens live": (
            signed(key, claims(sub, iat=now - 60, nbf=now - 60, exp=now + MAX_LIFETIME)),
            "TOKEN_LIFETIME_TOO_LONG",
        ),
        "iat in the future": (
            signed(key, claims(sub, iat=now + 600, nbf=None, exp=now + 900)),
            "TOKEN_NOT_YET_VALID",
        ),
        "unknown kid": (
            jwt.encode(claims(sub), stranger, algorithm=key.algorithm, headers={"kid": "no-such-key"}),
            "TOKEN_UNKNOWN_KID",
        ),
        "no kid": (jwt.encode(claims(sub), key.private_key, algorithm=key.algorithm), "TOKEN_UNKNOWN_KID"),
        "signed by another key under the real kid": (
            jwt.encode(claims(sub), stranger, algorithm=key.algorithm, headers={"kid": key.kid}),
            "TOKEN_SIGNATURE_INVALID",
        ),
        "tampered payload (role)": (tampered(good, role="admin"), "TOKEN_SIGNATURE_INVALID"),
        "tampered payload (sub)": (tampered(good, sub="someone-else"), "TOKEN_SIGNATURE_INVALID"),
        "signature stripped": (good.rsplit(".", 1)[0] + ".", "TOKEN_SIGNATURE_INVALID"),
        "missing exp": (signed(key, claims(sub, exp=None)), "TOKEN_INVALID"),
        "no role": (signed(key, claims(sub, role=None)), "TOKEN_INVALID"),
        "unknown role": (signed(key, claims(sub, role="superuser")), "TOKEN_INVALID"),
        "not a JWT": ("not-a-jwt", "TOKEN_MALFORMED"),
    }
