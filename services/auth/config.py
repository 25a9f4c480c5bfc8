"""auth's settings: the kit's shared and SQL settings, plus signing keys, token lifetimes and login
throttling. Every variable is in the README's configuration table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.kit.settings import SqlSettings, address_setting, port_setting, setting


@dataclass(frozen=True, kw_only=True)
class AuthSettings(SqlSettings):
    auth_port: int = port_setting("auth")
    users_address: str = address_setting("users")
    jwt_keys_dir: Path = setting(
        "JWT_KEYS_DIR",
        Path("var/keys"),
        default_from=lambda env: Path(env.get("DATA_DIR", "").strip() or "var") / "keys",
    )
    jwt_private_keys: str = setting("JWT_PRIVATE_KEYS", "", secret=True)
    refresh_token_ttl_seconds: int = setting("REFRESH_TOKEN_TTL_SECONDS", 30 * 24 * 3600, minimum=1)
    refresh_reuse_grace_seconds: float = setting("REFRESH_REUSE_GRACE_SECONDS", 10.0)
    login_max_failures: int = setting("LOGIN_MAX_FAILURES", 5, minimum=1)
    login_backoff_base_seconds: float = setting("LOGIN_BACKOFF_BASE_SECONDS", 1.0)
    login_backoff_max_seconds: float = setting("LOGIN_BACKOFF_MAX_SECONDS", 900.0)
    login_device_token_ttl_seconds: int = setting("LOGIN_DEVICE_TOKEN_TTL_SECONDS", 90 * 24 * 3600, minimum=1)
    # Refuse logins (403 EMAIL_NOT_VERIFIED) of accounts whose e-mail address is not verified.
    require_verified_email: bool = setting("REQUIRE_VERIFIED_EMAIL", False)
    # How long the mfa_token of a right password (401 MFA_REQUIRED) waits for the second step.
    mfa_token_ttl_seconds: int = setting("MFA_TOKEN_TTL_SECONDS", 300, minimum=1)
