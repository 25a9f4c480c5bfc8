"""users' settings: the kit's shared, SQL and mail settings, plus the PII encryption keys, the admin
account to bootstrap, and where auth (JWKS) and data (purges) are. Every variable is in the
README's configuration table."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from services.kit.mail import MailSettings
from services.kit.settings import (
    SettingsError,
    SqlSettings,
    address_setting,
    is_placeholder,
    port_setting,
    setting,
)


def parse_pii_keys(value: str) -> list[bytes]:
    """The keys of a PII_ENCRYPTION_KEY value, newest first: base64 of 32 bytes each,
    comma-separated. An empty value lists none."""
    keys = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            key = base64.b64decode(entry, validate=True)
        except ValueError:  # binascii.Error is one
            key = b""
        if len(key) != 32:
            raise SettingsError(
                "PII_ENCRYPTION_KEY must be base64 of 32 random bytes (several, comma-separated, to rotate)"
            )
        keys.append(key)
    if value.strip() and not keys:
        raise SettingsError("PII_ENCRYPTION_KEY lists no key")
    return keys


@dataclass(frozen=True, kw_only=True)
class UsersSettings(SqlSettings, MailSettings):
    users_port: int = port_setting("users")
    auth_address: str = address_setting("auth")
    data_address: str = address_setting("data")
    admin_username: str = setting("ADMIN_USERNAME", "")
    admin_email: str = setting("ADMIN_EMAIL", "")
    admin_password: str = setting("ADMIN_PASSWORD", "", secret=True, strip=False)
    # AES-256-GCM keys for personal data at rest, base64, comma-separated, newest first.
    pii_encryption_key: str = setting("PII_ENCRYPTION_KEY", "", secret=True)
    # How long a verification link works.
    email_verification_ttl_seconds: int = setting("EMAIL_VERIFICATION_TTL_SECONDS", 86400, minimum=60)
    # How long a password reset link works.
    password_reset_ttl_seconds: int = setting("PASSWORD_RESET_TTL_SECONDS", 1800, minimum=60)

    def validate(self) -> None:
        admin = (self.admin_username, self.admin_email, self.admin_password)
        if any(admin) and not all(admin):
            raise SettingsError(
                "set ADMIN_USERNAME, ADMIN_EMAIL and ADMIN_PASSWORD together, or none of them"
            )
        parse_pii_keys(self.pii_encryption_key)
        if self.is_production and self.admin_password and is_placeholder(self.admin_password, min_length=12):
            raise SettingsError("ADMIN_PASSWORD is a placeholder or shorter than 12 characters")
        super().validate()
