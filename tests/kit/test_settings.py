"""Settings come from the environment and refuse unsafe values at start-up."""

from __future__ import annotations

import pytest

from services.kit.settings import Settings, SettingsError


def test_defaults_describe_the_embedded_stack() -> None:
    settings = Settings.from_env({})
    assert settings.environment == "development"
    assert (settings.auth_port, settings.users_port, settings.data_port) == (50051, 50052, 50053)
    assert settings.users_address == "127.0.0.1:50052"
    assert settings.sqlite_url("users").startswith("sqlite+aiosqlite:///")
    assert settings.sqlite_url("users").endswith("/var/users.db")
    assert settings.sql_url("users") == settings.sqlite_url("users")
    configured = Settings.from_env({"DATABASE_URL": "postgresql://db/pinexa"})
    assert configured.sql_url("users") == configured.sql_url("auth") == "postgresql://db/pinexa"
    assert settings.jwt_algorithms == ("ES256", "EdDSA")
    assert settings.access_token_ttl_seconds == 900
    assert settings.login_device_token_ttl_seconds == 90 * 24 * 3600
    assert Settings.from_env({"LOGIN_DEVICE_TOKEN_TTL_SECONDS": "60"}).login_device_token_ttl_seconds == 60
    assert (settings.db_statement_timeout_ms, settings.db_pool_timeout_seconds) == (5000, 5.0)
    tuned = Settings.from_env({"DB_STATEMENT_TIMEOUT_MS": "250", "DB_POOL_TIMEOUT_SECONDS": "0.5"})
    assert (tuned.db_statement_timeout_ms, tuned.db_pool_timeout_seconds) == (250, 0.5)


def test_ports_move_the_default_addresses() -> None:
    settings = Settings.from_env({"USERS_PORT": "6000"})
    assert settings.users_address == "127.0.0.1:6000"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"USERS_PORT": "abc"}, "USERS_PORT must be a whole number"),
        ({"DB_POOL_SIZE": "0"}, "DB_POOL_SIZE must be at least 1"),
        ({"DB_STATEMENT_TIMEOUT_MS": "0"}, "DB_STATEMENT_TIMEOUT_MS must be at least 1"),
        ({"DB_STATEMENT_TIMEOUT_MS": "5s"}, "DB_STATEMENT_TIMEOUT_MS must be a whole number"),
        ({"DB_POOL_TIMEOUT_SECONDS": "0"}, "DB_POOL_TIMEOUT_SECONDS must be at least"),
        ({"LOGIN_DEVICE_TOKEN_TTL_SECONDS": "0"}, "LOGIN_DEVICE_TOKEN_TTL_SECONDS must be at least 1"),
        ({"PINEXA_ENV": "staging"}, "PINEXA_ENV"),
        ({"JWT_ALGORITHMS": "HS256"}, "JWT_ALGORITHMS"),
        ({"JWT_ALGORITHMS": "none"}, "JWT_ALGORITHMS"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"ADMIN_USERNAME": "root"}, "ADMIN_USERNAME, ADMIN_EMAIL and ADMIN_PASSWORD together"),
    ],
)
def test_malformed_values_are_refused_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_production_refuses_placeholder_secrets() -> None:
    base = {"PINEXA_ENV": "production", "INTERNAL_TOKEN": "x" * 40}
    admin = {"ADMIN_USERNAME": "root", "ADMIN_EMAIL": "root@example.com"}
    with pytest.raises(SettingsError, match="ADMIN_PASSWORD"):
        Settings.from_env({**base, **admin, "ADMIN_PASSWORD": "changeme"})
    with pytest.raises(SettingsError, match="INTERNAL_TOKEN"):
        Settings.from_env({"PINEXA_ENV": "production", "INTERNAL_TOKEN": "changeme"})
    settings = Settings.from_env({**base, **admin, "ADMIN_PASSWORD": "a long and random passphrase"})
    assert settings.is_production


def test_development_allows_placeholders() -> None:
    settings = Settings.from_env(
        {"ADMIN_USERNAME": "a", "ADMIN_EMAIL": "a@b.c", "ADMIN_PASSWORD": "changeme"}
    )
    assert settings.admin_password == "changeme"


def test_secrets_stay_out_of_repr() -> None:
    settings = Settings.from_env(
        {
            "INTERNAL_TOKEN": "s3cr3t-token-value",
            "ADMIN_USERNAME": "a",
            "ADMIN_EMAIL": "a@b.c",
            "ADMIN_PASSWORD": "hunter2-hunter2",
            "DATABASE_URL": "postgresql://app:db-pa55word@db/pinexa",
            "MONGODB_URL": "mongodb://app:mongo-pa55word@mongo/",
            "JWT_PRIVATE_KEYS": "-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----",
        }
    )
    text = repr(settings)
    for secret in ("s3cr3t", "hunter2", "db-pa55word", "mongo-pa55word", "PRIVATE KEY", "MIGHAgEA"):
        assert secret not in text
    assert settings.database_url.endswith("/pinexa")  # still readable where it is needed
