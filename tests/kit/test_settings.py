"""Settings come from the environment and refuse unsafe values at start-up.

The kit's loader and shared fields are tested here, on each service's class; each service's own
fields are tested next to it (tests/<svc>/test_config.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.auth.config import AuthSettings
from services.data.config import DataSettings
from services.kit.settings import Settings, SettingsError, SqlSettings, variables
from services.users.config import UsersSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICES: list[type[Settings]] = [AuthSettings, UsersSettings, DataSettings]
# In the README's table but read by no service: the Envoy renderer reads it (devstack, generate).
NOT_A_SERVICE_SETTING = {"CORS_ALLOWED_ORIGINS", "ENVOY_ACCESS_LOG"}


def test_defaults_describe_the_embedded_stack() -> None:
    for cls in SERVICES:
        settings = cls.from_env({})
        assert settings.environment == "development"
        assert settings.jwt_algorithms == ("ES256", "EdDSA")
        assert settings.access_token_ttl_seconds == 900
        assert (settings.log_level, settings.log_format) == ("INFO", "json")
    sql = SqlSettings.from_env({})
    assert sql.sqlite_url("users").startswith("sqlite+aiosqlite:///")
    assert sql.sqlite_url("users").endswith("/var/users.db")
    assert sql.sql_url("users") == sql.sqlite_url("users")
    configured = SqlSettings.from_env({"DATABASE_URL": "postgresql://db/pinexa"})
    assert configured.sql_url("users") == configured.sql_url("auth") == "postgresql://db/pinexa"
    assert (sql.db_statement_timeout_ms, sql.db_pool_timeout_seconds, sql.auto_migrate) == (5000, 5.0, True)
    tuned = SqlSettings.from_env(
        {"DB_STATEMENT_TIMEOUT_MS": "250", "DB_POOL_TIMEOUT_SECONDS": "0.5", "AUTO_MIGRATE": "false"}
    )
    assert (tuned.db_statement_timeout_ms, tuned.db_pool_timeout_seconds, tuned.auto_migrate) == (
        250,
        0.5,
        False,
    )


def test_ports_move_the_default_addresses() -> None:
    assert AuthSettings.from_env({"USERS_PORT": "6000"}).users_address == "127.0.0.1:6000"
    users = UsersSettings.from_env({"AUTH_PORT": "6001", "DATA_PORT": "6002"})
    assert (users.auth_address, users.data_address) == ("127.0.0.1:6001", "127.0.0.1:6002")
    assert DataSettings.from_env({"AUTH_PORT": "6001"}).auth_address == "127.0.0.1:6001"
    assert DataSettings.from_env({"AUTH_ADDRESS": "auth:50051"}).auth_address == "auth:50051"


@pytest.mark.parametrize(
    ("cls", "env", "message"),
    [
        (UsersSettings, {"USERS_PORT": "abc"}, "USERS_PORT must be a whole number"),
        (AuthSettings, {"DB_POOL_SIZE": "0"}, "DB_POOL_SIZE must be at least 1"),
        (UsersSettings, {"DB_STATEMENT_TIMEOUT_MS": "0"}, "DB_STATEMENT_TIMEOUT_MS must be at least 1"),
        (AuthSettings, {"DB_STATEMENT_TIMEOUT_MS": "5s"}, "DB_STATEMENT_TIMEOUT_MS must be a whole number"),
        (UsersSettings, {"DB_POOL_TIMEOUT_SECONDS": "0"}, "DB_POOL_TIMEOUT_SECONDS must be at least"),
        (DataSettings, {"PINEXA_ENV": "staging"}, "PINEXA_ENV must be 'development' or 'production'"),
        (AuthSettings, {"JWT_ALGORITHMS": "HS256"}, "JWT_ALGORITHMS"),
        (DataSettings, {"JWT_ALGORITHMS": "none"}, "JWT_ALGORITHMS"),
        (UsersSettings, {"LOG_FORMAT": "xml"}, "LOG_FORMAT must be 'json' or 'text'"),
        (
            DataSettings,
            {"HEALTH_CHECK_INTERVAL_SECONDS": "0"},
            "HEALTH_CHECK_INTERVAL_SECONDS must be at least",
        ),
        (DataSettings, {"SHUTDOWN_GRACE_SECONDS": "soon"}, "SHUTDOWN_GRACE_SECONDS must be a number"),
        (AuthSettings, {"ACCESS_TOKEN_TTL_SECONDS": "0"}, "ACCESS_TOKEN_TTL_SECONDS must be at least 1"),
    ],
)
def test_malformed_values_are_refused_with_the_variable_named(
    cls: type[Settings], env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        cls.from_env(env)


def test_production_refuses_a_placeholder_internal_token_in_every_service() -> None:
    for cls in SERVICES:
        with pytest.raises(SettingsError, match="INTERNAL_TOKEN"):
            cls.from_env({"PINEXA_ENV": "production", "INTERNAL_TOKEN": "changeme"})
        with pytest.raises(SettingsError, match="INTERNAL_TOKEN"):
            cls.from_env({"PINEXA_ENV": "production"})
        assert cls.from_env({"PINEXA_ENV": "production", "INTERNAL_TOKEN": "x" * 40}).is_production


def test_a_service_reads_and_validates_only_its_own_variables() -> None:
    """Another service's malformed variable does not stop a service that does not use it."""
    assert DataSettings.from_env({"ADMIN_USERNAME": "root", "DATABASE_URL": "x", "DB_POOL_SIZE": "0"})
    assert AuthSettings.from_env({"PII_ENCRYPTION_KEY": "not base64", "MONGODB_URL": "x"})
    assert UsersSettings.from_env({"LOGIN_MAX_FAILURES": "0", "AUTH_PORT": "6001"})
    assert not hasattr(DataSettings.from_env({}), "database_url")
    assert not hasattr(UsersSettings.from_env({}), "login_max_failures")
    assert not hasattr(AuthSettings.from_env({}), "admin_password")
    assert variables(DataSettings).isdisjoint({"DATABASE_URL", "ADMIN_PASSWORD", "JWT_PRIVATE_KEYS"})
    assert variables(AuthSettings).isdisjoint({"MONGODB_URL", "ADMIN_PASSWORD", "PII_ENCRYPTION_KEY"})
    assert variables(UsersSettings).isdisjoint({"MONGODB_URL", "JWT_PRIVATE_KEYS", "LOGIN_MAX_FAILURES"})


def test_secrets_stay_out_of_repr() -> None:
    env = {
        "INTERNAL_TOKEN": "s3cr3t-token-value",
        "ADMIN_USERNAME": "a",
        "ADMIN_EMAIL": "a@b.c",
        "ADMIN_PASSWORD": "hunter2-hunter2",
        "DATABASE_URL": "postgresql://app:db-pa55word@db/pinexa",
        "MONGODB_URL": "mongodb://app:mongo-pa55word@mongo/",
        "JWT_PRIVATE_KEYS": "-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----",
    }
    for cls in SERVICES:
        text = repr(cls.from_env(env))
        for secret in ("s3cr3t", "hunter2", "db-pa55word", "mongo-pa55word", "PRIVATE KEY", "MIGHAgEA"):
            assert secret not in text, cls.__name__
    assert AuthSettings.from_env(env).database_url.endswith("/pinexa")  # still readable where needed
    assert DataSettings.from_env(env).mongodb_url.endswith("@mongo/")


def _readme_table_variables() -> list[str]:
    """The variables of the README's configuration table, in order (a row may name several)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split(" | ")[0])]


def test_the_readme_table_lists_exactly_the_variables_of_the_settings_classes() -> None:
    documented = _readme_table_variables()
    assert len(documented) == len(set(documented)), "a variable is listed twice"
    defined = variables(*SERVICES)
    assert set(documented) - NOT_A_SERVICE_SETTING == defined, (
        f"undocumented: {sorted(defined - set(documented))}; "
        f"documented but read by no service: {sorted(set(documented) - NOT_A_SERVICE_SETTING - defined)}"
    )


def test_the_readme_check_sees_a_missing_or_extra_row() -> None:
    """The check above can fail: variables() and the table parser both see every row and field."""
    documented = set(_readme_table_variables())
    assert {
        "PINEXA_ENV",
        "AUTH_PORT",
        "DATA_ADDRESS",
        "LOGIN_BACKOFF_MAX_SECONDS",
        "ADMIN_EMAIL",
    } <= documented
    assert "LOGIN_MAX_FAILURES" in variables(AuthSettings)
    assert "LOGIN_MAX_FAILURES" not in variables(UsersSettings, DataSettings)
