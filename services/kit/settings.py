"""Typed settings, read from the environment and validated at start-up.

The kit holds the loader and the fields every service shares (`Settings`, and `SqlSettings` for the
services with a SQL database); each service adds its own fields in `services/<svc>/config.py`, a
subclass loaded by the same `from_env`, so a service reads and validates only what it uses.

A field names its variable with `setting(...)`; the loader reads every such field of the class, with
one set of parsers and one wording of errors. Hand-written rather than pydantic-settings: the
parsing is a few lines, the error messages name the variable exactly as the README documents it,
and the services need no further dependency.

Every variable of every settings class is listed in the README's configuration table
(tests/kit/test_settings.py checks that the two agree).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

Environment = Literal["development", "production"]

# Values that are fine on a laptop and never in production.
_PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "password", "admin", "secret", "dev"})

# Each service's gRPC port; its address, where the others reach it, defaults to 127.0.0.1:<port>.
DEFAULT_PORTS = {"auth": 50051, "users": 50052, "data": 50053}

_VAR = "pinexa.env"  # the dataclass field metadata key that names a field's variable

S = TypeVar("S", bound="Settings")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def is_placeholder(secret: str, *, min_length: int) -> bool:
    """A secret that must not be used in production: a known placeholder, or too short."""
    return secret.lower() in _PLACEHOLDER_SECRETS or len(secret) < min_length


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


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    return raw.lower() in ("1", "true", "yes")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _str(env, name, default)
    if value not in choices:
        allowed = " or ".join(repr(c) for c in choices)
        raise SettingsError(f"{name} must be {allowed}, got {value!r}")
    return value


def _algorithms(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    algorithms = tuple(a.strip() for a in _str(env, name, ",".join(default)).split(",") if a.strip())
    unsupported = [a for a in algorithms if a not in ("ES256", "EdDSA")]
    if unsupported or not algorithms:
        raise SettingsError(f"{name} may name only ES256 and EdDSA, got {unsupported or 'nothing'}")
    return algorithms


@dataclass(frozen=True)
class _Var:
    """How the loader reads one field: its variable, and a parser (env, name, default) -> value."""

    name: str
    parse: Callable[[Mapping[str, str], str, Any], Any]
    default_from: Callable[[Mapping[str, str]], Any] | None

    def read(self, env: Mapping[str, str], default: Any) -> Any:
        if self.default_from is not None:
            default = self.default_from(env)
        return self.parse(env, self.name, default)


def setting(
    name: str,
    default: Any,
    *,
    minimum: float | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
    strip: bool = True,
    default_from: Callable[[Mapping[str, str]], Any] | None = None,
    parse: Callable[[Mapping[str, str], str, Any], Any] | None = None,
) -> Any:
    """A settings field read from variable `name`, parsed by the type of its default.

    `minimum` bounds a number; `choices` lists a string's allowed values; a `secret` stays out of
    repr (it may hold a password or key); `strip=False` keeps surrounding spaces (passwords);
    `default_from` computes the default from other variables (an address from a port).
    """
    if parse is None:
        if isinstance(default, bool):
            parse = _bool
        elif isinstance(default, int):
            low = int(minimum or 0)
            parse = lambda env, var, dflt: _int(env, var, dflt, minimum=low)  # noqa: E731
        elif isinstance(default, float):
            low_f = float(minimum or 0.0)
            parse = lambda env, var, dflt: _float(env, var, dflt, minimum=low_f)  # noqa: E731
        elif isinstance(default, Path):
            parse = lambda env, var, dflt: Path(_str(env, var, str(dflt)))  # noqa: E731
        elif choices is not None:
            options = choices
            parse = lambda env, var, dflt: _choice(env, var, dflt, options)  # noqa: E731
        elif strip:
            parse = _str
        else:
            parse = lambda env, var, dflt: env.get(var, dflt)  # noqa: E731
    return field(default=default, repr=not secret, metadata={_VAR: _Var(name, parse, default_from)})


def port_setting(service: str) -> Any:
    """The gRPC port `service` listens on: <SERVICE>_PORT."""
    return setting(f"{service.upper()}_PORT", DEFAULT_PORTS[service])


def address_setting(service: str) -> Any:
    """Where the other services reach `service`: <SERVICE>_ADDRESS, by default 127.0.0.1:<its port>."""
    default = f"127.0.0.1:{DEFAULT_PORTS[service]}"
    port_var = f"{service.upper()}_PORT"
    return setting(
        f"{service.upper()}_ADDRESS",
        default,
        default_from=lambda env: f"127.0.0.1:{_int(env, port_var, DEFAULT_PORTS[service])}",
    )


def variables(*classes: type[Settings]) -> set[str]:
    """The variables the settings classes define, one per field."""
    names: set[str] = set()
    for cls in classes:
        for f in dataclasses.fields(cls):
            var = f.metadata.get(_VAR)
            if var is not None:
                names.add(var.name)
    return names


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What every service reads: the environment, logging, shutdown, health, metrics, the internal
    token, and how access tokens are verified. A service's own fields are in its `config.py`."""

    environment: Environment = setting("PINEXA_ENV", "development", choices=("development", "production"))
    listen_host: str = setting("LISTEN_HOST", "127.0.0.1")
    data_dir: Path = setting("DATA_DIR", Path("var"))
    internal_token: str = setting("INTERNAL_TOKEN", "", secret=True)
    jwt_issuer: str = setting("JWT_ISSUER", "pinexa-auth")
    jwt_audience: str = setting("JWT_AUDIENCE", "pinexa")
    jwt_algorithms: tuple[str, ...] = setting("JWT_ALGORITHMS", ("ES256", "EdDSA"), parse=_algorithms)
    jwt_leeway_seconds: int = setting("JWT_LEEWAY_SECONDS", 30)
    access_token_ttl_seconds: int = setting("ACCESS_TOKEN_TTL_SECONDS", 900, minimum=1)
    # Step-up: on an account with a second factor, sensitive changes need a token whose second
    # factor (amr "otp", auth_time) is at most this old; else 401 REAUTHENTICATION_REQUIRED.
    step_up_max_age_seconds: int = setting("STEP_UP_MAX_AGE_SECONDS", 600, minimum=1)
    log_level: str = setting("LOG_LEVEL", "INFO", parse=lambda env, var, d: _str(env, var, d).upper())
    log_format: Literal["json", "text"] = setting("LOG_FORMAT", "json", choices=("json", "text"))
    shutdown_grace_seconds: float = setting("SHUTDOWN_GRACE_SECONDS", 10.0)
    shutdown_drain_seconds: float = setting("SHUTDOWN_DRAIN_SECONDS", 1.0)
    health_check_interval_seconds: float = setting("HEALTH_CHECK_INTERVAL_SECONDS", 2.0, minimum=0.05)
    metrics_port: int = setting("METRICS_PORT", 0)
    sentry_dsn: str = setting("SENTRY_DSN", "", secret=True)

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @classmethod
    def from_env(cls: type[S], env: Mapping[str, str] | None = None) -> S:
        """Read every field of this class from `env` (default: the process environment), then
        validate the whole."""
        env = os.environ if env is None else env
        values = {
            f.name: f.metadata[_VAR].read(env, f.default)
            for f in dataclasses.fields(cls)
            if _VAR in f.metadata
        }
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse combinations that would be unsafe; placeholders are for development only.
        A subclass checks its own fields and then calls this."""
        if self.is_production and is_placeholder(self.internal_token, min_length=32):
            raise SettingsError("INTERNAL_TOKEN must be set to at least 32 random characters in production")


@dataclass(frozen=True, kw_only=True)
class SqlSettings(Settings):
    """The shared settings plus a SQL database (users and auth)."""

    database_url: str = setting("DATABASE_URL", "", secret=True)
    db_pool_size: int = setting("DB_POOL_SIZE", 10, minimum=1)
    db_pool_timeout_seconds: float = setting("DB_POOL_TIMEOUT_SECONDS", 5.0, minimum=0.01)
    db_statement_timeout_ms: int = setting("DB_STATEMENT_TIMEOUT_MS", 5000, minimum=1)
    auto_migrate: bool = setting("AUTO_MIGRATE", True)

    def sqlite_url(self, name: str) -> str:
        """The embedded default database of one service: a SQLite file under DATA_DIR."""
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{name}.db').resolve()}"

    def sql_url(self, name: str) -> str:
        """The SQL database of service `name`: DATABASE_URL when set, else its SQLite file."""
        return self.database_url or self.sqlite_url(name)
