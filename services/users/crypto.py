"""Encryption at rest of personal data (e-mail address and display name), at the application level.

- **Cipher.** AES-256-GCM. Each value gets a fresh 96-bit random nonce, and is bound to its row
  and column through the associated data (`users.<column>:<user id>`), so a ciphertext copied into
  another row or column does not decrypt.
- **Stored form.** `pii1:<key id>:<base64url(nonce || ciphertext || tag)>`. The key id is derived
  from the key itself (not secret, not reversible), so a keyring can hold several keys.
- **Keys.** PII_ENCRYPTION_KEY is a comma-separated list of base64 32-byte keys, newest first.
  The first encrypts; every listed key decrypts what it encrypted. Sub-keys are derived with
  HKDF-SHA256 per purpose, so the raw key is never used for two things.
- **Lookups.** An encrypted address cannot be searched, so uniqueness and login-by-email use a
  blind index: HMAC-SHA256 of the lower-cased address under a sub-key derived from the **last**
  key in the list (the index anchor). Prepending a new key therefore never changes the index.
- **Rotation.** Prepend a new key (`new,old`), roll it out, then run
  `python -m services.users reencrypt` to rewrite every value under the new key. Keep the last
  key listed: it anchors the blind index.
- **Development.** With no key set, a key is generated on first start into
  DATA_DIR/keys/pii.key (mode 0600) and reused afterwards. Production refuses to start without one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.kit.settings import SettingsError
from services.users.config import UsersSettings
from services.users.config import parse_pii_keys as parse_keys

log = logging.getLogger(__name__)

PREFIX = "pii1"
KEY_BYTES = 32
NONCE_BYTES = 12
_ENCRYPTION_INFO = b"pinexa/users/pii/aes-256-gcm/v1"
_INDEX_INFO = b"pinexa/users/email-index/hmac-sha256/v1"


class DecryptionError(Exception):
    """A stored value could not be decrypted: unknown key id, tampering, or not encrypted.
    The message never contains the value."""


def _subkey(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(key)


def key_id(key: bytes) -> str:
    """A short public name for a key: 8 hex digits of a hash, not enough to learn anything."""
    return hashlib.sha256(b"pinexa-pii-key-id\x00" + key).hexdigest()[:8]


def new_key() -> str:
    """A fresh key in the form PII_ENCRYPTION_KEY takes."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


class PiiCipher:
    """Seals and opens personal data; computes the e-mail blind index."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._ciphers = {key_id(key): AESGCM(_subkey(key, _ENCRYPTION_INFO)) for key in keys}
        if len(self._ciphers) != len(keys):
            raise SettingsError("PII_ENCRYPTION_KEY lists the same key twice")
        self.current_key_id = key_id(keys[0])
        self._current = self._ciphers[self.current_key_id]
        self._current_prefix = f"{PREFIX}:{self.current_key_id}:"
        self._index_key = _subkey(keys[-1], _INDEX_INFO)

    @staticmethod
    def _aad(column: str, row_id: str) -> bytes:
        return f"users.{column}:{row_id}".encode()

    def seal(self, column: str, row_id: str, plaintext: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._current.encrypt(nonce, plaintext.encode(), self._aad(column, row_id))
        return self._current_prefix + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, column: str, row_id: str, stored: str) -> str:
        prefix, _, rest = stored.partition(":")
        kid, _, payload = rest.partition(":")
        if prefix != PREFIX or not payload:
            raise DecryptionError(f"users.{column} of {row_id} is not encrypted")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise DecryptionError(f"users.{column} of {row_id} needs key {kid}, which is not configured")
        try:
            raw = base64.urlsafe_b64decode(payload)
            plaintext = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._aad(column, row_id))
        except (InvalidTag, ValueError, binascii.Error):
            raise DecryptionError(f"users.{column} of {row_id} does not decrypt") from None
        return plaintext.decode()

    def is_current(self, stored: str) -> bool:
        """True when `stored` was sealed with the newest key (nothing for `reencrypt` to do)."""
        return stored.startswith(self._current_prefix)

    def email_lookup(self, email_key: str) -> str:
        """The blind index of a normalized (lower-cased) e-mail address."""
        return hmac.new(self._index_key, email_key.encode(), hashlib.sha256).hexdigest()


def dev_key_path(settings: UsersSettings) -> Path:
    return settings.data_dir / "keys" / "pii.key"


def load_or_create_dev_key(path: Path) -> str:
    """The development key in `path`, created (mode 0600) on first use. Safe when several
    processes start at once: the key is written to a private temporary file and then linked into
    place, which fails for all but one of them, so nobody ever reads a half-written key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, (new_key() + "\n").encode())
        finally:
            os.close(descriptor)
        try:
            os.link(temporary, path)
            log.warning("generated a development PII encryption key", extra={"path": str(path)})
        except FileExistsError:
            pass  # another process won the race; use its key
        finally:
            temporary.unlink()
    if path.stat().st_mode & 0o077:
        log.warning("the PII key file is readable by other users; chmod 600 it", extra={"path": str(path)})
    value = path.read_text().strip()
    if not value:
        raise SettingsError(f"{path} is empty; delete it or set PII_ENCRYPTION_KEY")
    return value


def cipher_from_settings(settings: UsersSettings) -> PiiCipher:
    """The keyring from PII_ENCRYPTION_KEY; in development only, a generated local key."""
    value = settings.pii_encryption_key
    if not value:
        if settings.is_production:
            raise SettingsError(
                "PII_ENCRYPTION_KEY must be set in production (base64 of 32 random bytes, "
                "e.g. `python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())'`)"
            )
        value = load_or_create_dev_key(dev_key_path(settings))
    return PiiCipher(parse_keys(value))
