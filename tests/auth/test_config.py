"""auth's own settings (services/auth/config.py): token lifetimes, login throttling, keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.auth.config import AuthSettings
from services.kit.settings import SettingsError


def test_defaults() -> None:
    settings = AuthSettings.from_env({})
    assert settings.auth_port == 50051
    assert settings.users_address == "127.0.0.1:50052"
    assert settings.refresh_token_ttl_seconds == 30 * 24 * 3600
    assert settings.refresh_reuse_grace_seconds == 10.0
    assert (settings.login_max_failures, settings.login_backoff_base_seconds) == (5, 1.0)
    assert settings.login_backoff_max_seconds == 900.0
    assert settings.login_device_token_ttl_seconds == 90 * 24 * 3600
    assert settings.jwt_keys_dir == Path("var/keys")


def test_values_are_read() -> None:
    settings = AuthSettings.from_env(
        {"LOGIN_DEVICE_TOKEN_TTL_SECONDS": "60", "REFRESH_REUSE_GRACE_SECONDS": "0", "DATA_DIR": "/srv/p"}
    )
    assert settings.login_device_token_ttl_seconds == 60
    assert settings.refresh_reuse_grace_seconds == 0
    assert settings.jwt_keys_dir == Path("/srv/p/keys")  # follows DATA_DIR unless set
    assert AuthSettings.from_env({"JWT_KEYS_DIR": "/k", "DATA_DIR": "/d"}).jwt_keys_dir == Path("/k")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOGIN_DEVICE_TOKEN_TTL_SECONDS": "0"}, "LOGIN_DEVICE_TOKEN_TTL_SECONDS must be at least 1"),
        ({"LOGIN_MAX_FAILURES": "0"}, "LOGIN_MAX_FAILURES must be at least 1"),
        ({"REFRESH_TOKEN_TTL_SECONDS": "a month"}, "REFRESH_TOKEN_TTL_SECONDS must be a whole number"),
        ({"LOGIN_BACKOFF_BASE_SECONDS": "-1"}, "LOGIN_BACKOFF_BASE_SECONDS must be at least 0"),
        ({"AUTH_PORT": "x"}, "AUTH_PORT must be a whole number"),
    ],
)
def test_malformed_values_are_refused_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        AuthSettings.from_env(env)
