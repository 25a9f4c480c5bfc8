"""One typed settings object, read from the environment and validated at start-up.

Every variable is listed in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Environment = Literal["development", "production"]

# Values that are fine on a laptop and never in production.
_PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "password", "admin", "secret", "dev"})


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _str(env: Mapping[str, str], name: str, default: str = "") -> str:
    return env.get(name, "").strip() or default


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
class Settings:
    """Configuration shared by every service; each service reads the parts it needs."""

    environment: Environment = "development"
    listen_host: str = "127.0.0.1"
    auth_port: int = 50051
    users_port: int = 50052
    data_port: int = 50053
    auth_address: str = "127.0.0.1:50051"
    users_address: str = "127.0.0.1:50052"
    data_address: str = "127.0.0.1:50053"
    data_dir: Path = Path("var")
    database_url: str = field(default="", repr=False)  # may hold a password or key
    db_pool_size: int = 10
    db_pool_timeout_seconds: float = 5.0
    db_statement_timeout_ms: int = 5000
    auto_migrate: bool = True
    mongodb_url: str = field(default="", repr=False)  # may hold a password or key
    mongodb_database: str = "pinexa"
    jwt_issuer: str = "pinexa-auth"
    jwt_audience: str = "pinexa"
    jwt_algorithms: tuple[str, ...] = ("ES256", "EdDSA")
    jwt_leeway_seconds: int = 30
    jwt_keys_dir: Path = Path("var/keys")
    jwt_private_keys: str = field(default="", repr=False)  # may hold a password or key
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    refresh_reuse_grace_seconds: float = 10.0
    login_max_failures: int = 5
    login_backoff_base_seconds: float = 1.0
    login_backoff_max_seconds: float = 900.0
    login_device_token_ttl_seconds: int = 90 * 24 * 3600
    internal_token: str = field(default="", repr=False)
    admin_username: str = ""
    admin_email: str = ""
    admin_password: str = field(default="", repr=False)
    # users: AES-256-GCM keys for personal data at rest, base64, comma-separated, newest first.
    pii_encryption_key: str = field(default="", repr=False)
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    shutdown_grace_seconds: float = 10.0
    shutdown_drain_seconds: float = 1.0
    health_check_interval_seconds: float = 2.0
    metrics_port: int = 0

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def sqlite_url(self, name: str) -> str:
        """The embedded default database of one service: a SQLite file under DATA_DIR."""
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{name}.db').resolve()}"

    def sql_url(self, name: str) -> str:
        """The SQL database of service `name`: DATABASE_URL when set, else its SQLite file."""
        return self.database_url or self.sqlite_url(name)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        environment = _str(env, "PINEXA_ENV", "development")
        if environment not in ("development", "production"):
            raise SettingsError(f"PINEXA_ENV must be 'development' or 'production', got {environment!r}")
        log_format = _str(env, "LOG_FORMAT", "json")
        if log_format not in ("json", "text"):
            raise SettingsError(f"LOG_FORMAT must be 'json' or 'text', got {log_format!r}")
        algorithms = tuple(
            a.strip() for a in _str(env, "JWT_ALGORITHMS", "ES256,EdDSA").split(",") if a.strip()
        )
        unsupported = [a for a in algorithms if a not in ("ES256", "EdDSA")]
        if unsupported or not algorithms:
            raise SettingsError(
                f"JWT_ALGORITHMS may name only ES256 and EdDSA, got {unsupported or 'nothing'}"
            )
        data_dir = Path(_str(env, "DATA_DIR", "var"))
        auth_port = _int(env, "AUTH_PORT", 50051)
        users_port = _int(env, "USERS_PORT", 50052)
        data_port = _int(env, "DATA_PORT", 50053)
        settings = cls(
            environment=environment,  # type: ignore[arg-type]
            listen_host=_str(env, "LISTEN_HOST", "127.0.0.1"),
            auth_port=auth_port,
            users_port=users_port,
            data_port=data_port,
            auth_address=_str(env, "AUTH_ADDRESS", f"127.0.0.1:{auth_port}"),
            users_address=_str(env, "USERS_ADDRESS", f"127.0.0.1:{users_port}"),
            data_address=_str(env, "DATA_ADDRESS", f"127.0.0.1:{data_port}"),
            data_dir=data_dir,
            database_url=_str(env, "DATABASE_URL"),
            db_pool_size=_int(env, "DB_POOL_SIZE", 10, minimum=1),
            db_pool_timeout_seconds=_float(env, "DB_POOL_TIMEOUT_SECONDS", 5.0, minimum=0.01),
            db_statement_timeout_ms=_int(env, "DB_STATEMENT_TIMEOUT_MS", 5000, minimum=1),
            auto_migrate=_str(env, "AUTO_MIGRATE", "true").lower() in ("1", "true", "yes"),
            mongodb_url=_str(env, "MONGODB_URL"),
            mongodb_database=_str(env, "MONGODB_DATABASE", "pinexa"),
            jwt_issuer=_str(env, "JWT_ISSUER", "pinexa-auth"),
            jwt_audience=_str(env, "JWT_AUDIENCE", "pinexa"),
            jwt_algorithms=algorithms,
            jwt_leeway_seconds=_int(env, "JWT_LEEWAY_SECONDS", 30),
            jwt_keys_dir=Path(_str(env, "JWT_KEYS_DIR", str(data_dir / "keys"))),
            jwt_private_keys=env.get("JWT_PRIVATE_KEYS", "").strip(),
            access_token_ttl_seconds=_int(env, "ACCESS_TOKEN_TTL_SECONDS", 900, minimum=1),
            refresh_token_ttl_seconds=_int(env, "REFRESH_TOKEN_TTL_SECONDS", 30 * 24 * 3600, minimum=1),
            refresh_reuse_grace_seconds=_float(env, "REFRESH_REUSE_GRACE_SECONDS", 10.0),
            login_max_failures=_int(env, "LOGIN_MAX_FAILURES", 5, minimum=1),
            login_backoff_base_seconds=_float(env, "LOGIN_BACKOFF_BASE_SECONDS", 1.0),
            login_backoff_max_seconds=_float(env, "LOGIN_BACKOFF_MAX_SECONDS", 900.0),
            login_device_token_ttl_seconds=_int(
                env, "LOGIN_DEVICE_TOKEN_TTL_SECONDS", 90 * 24 * 3600, minimum=1
            ),
            internal_token=env.get("INTERNAL_TOKEN", "").strip(),
            admin_username=_str(env, "ADMIN_USERNAME"),
            admin_email=_str(env, "ADMIN_EMAIL"),
            admin_password=env.get("ADMIN_PASSWORD", ""),
            pii_encryption_key=env.get("PII_ENCRYPTION_KEY", "").strip(),
            log_level=_str(env, "LOG_LEVEL", "INFO").upper(),
            log_format=log_format,  # type: ignore[arg-type]
            shutdown_grace_seconds=_float(env, "SHUTDOWN_GRACE_SECONDS", 10.0),
            shutdown_drain_seconds=_float(env, "SHUTDOWN_DRAIN_SECONDS", 1.0),
            health_check_interval_seconds=_float(env, "HEALTH_CHECK_INTERVAL_SECONDS", 2.0, minimum=0.05),
            metrics_port=_int(env, "METRICS_PORT", 0),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse combinations that would be unsafe; placeholders are for development only."""
        admin = (self.admin_username, self.admin_email, self.admin_password)
        if any(admin) and not all(admin):
            raise SettingsError(
                "set ADMIN_USERNAME, ADMIN_EMAIL and ADMIN_PASSWORD together, or none of them"
            )
        parse_pii_keys(self.pii_encryption_key)
        if not self.is_production:
            return
        if self.admin_password and (
            self.admin_password.lower() in _PLACEHOLDER_SECRETS or len(self.admin_password) < 12
        ):
            raise SettingsError("ADMIN_PASSWORD is a placeholder or shorter than 12 characters")
        if self.internal_token.lower() in _PLACEHOLDER_SECRETS or len(self.internal_token) < 32:
            raise SettingsError("INTERNAL_TOKEN must be set to at least 32 random characters in production")
