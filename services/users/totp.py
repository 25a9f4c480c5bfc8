"""The TOTP second factor's primitives: secrets, RFC 6238 codes, recovery codes, the QR code.

- **Codes.** RFC 6238 with SHA-1, 6 digits and 30-second steps (what every authenticator app
  does by default), computed by pyotp. A code is accepted in its own step and one step either
  side (±30 s of clock drift); `matching_step` says which step it matched, so the caller can
  refuse a second use of the same step (replay).
- **Secrets.** 160 random bits (RFC 4226's recommended length), base32 as the apps take them.
  The store keeps them sealed with the PII keys (crypto.py), never in plaintext.
- **Recovery codes.** Ten per account, each 80 random bits shown as `xxxx-xxxx-xxxx-xxxx`
  (base32, lower case). Stored only as SHA-256: with 80 bits of entropy a fast hash is as safe
  as a slow one, and a code is found by its hash, so no secret is ever compared.
- **QR code.** segno renders the otpauth:// URI as an SVG document.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets

import pyotp
import segno

STEP_SECONDS = 30
DIGITS = 6
TOLERANCE_STEPS = 1
RECOVERY_CODE_COUNT = 10
_RECOVERY_CODE_BYTES = 10  # 80 bits: 16 base32 characters


def new_secret() -> str:
    """A fresh 160-bit secret, base32 without padding."""
    return pyotp.random_base32(length=32)


def step_at(now: float) -> int:
    """The RFC 6238 time step `now` (a Unix time) falls in."""
    return int(now // STEP_SECONDS)


def code_at_step(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The step (current ±1) whose code `code` is, or None. Every candidate is compared, in
    constant time, so the answer's timing does not say which step matched or how nearly."""
    code = code.strip()
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    current = step_at(now)
    matched = None
    for step in range(current - TOLERANCE_STEPS, current + TOLERANCE_STEPS + 1):
        if hmac.compare_digest(code_at_step(secret, step).encode(), code.encode()):
            matched = step
    return matched


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The otpauth:// URI authenticator apps read (Key Uri Format)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """The URI as a QR code, a standalone SVG document: with the SVG namespace, so that it renders
    as an image file (an <img> with a data: URL) as well as inline; no XML declaration."""
    buffer = io.BytesIO()
    qr = segno.make(uri, error="m")
    qr.save(buffer, kind="svg", scale=4, border=4, xmldecl=False, svgns=True, nl=False)
    return buffer.getvalue().decode()


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    codes = []
    for _ in range(count):
        raw = base64.b32encode(secrets.token_bytes(_RECOVERY_CODE_BYTES)).decode().lower()
        codes.append("-".join(raw[i : i + 4] for i in range(0, len(raw), 4)))
    return codes


def recovery_code_hash(code: str) -> str:
    """What is stored for a recovery code: SHA-256 of its normalised form (no dashes or spaces,
    lower case), so `ABCD EFGH…` as typed finds `abcd-efgh-…`."""
    normalised = "".join(code.split()).replace("-", "").lower()
    return hashlib.sha256(b"pinexa-recovery-code\x00" + normalised.encode()).hexdigest()
