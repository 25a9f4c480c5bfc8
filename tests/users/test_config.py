"""users' own settings (services/users/config.py): the admin account and the PII keys."""

from __future__ import annotations

import pytest

from services.kit.settings import SettingsError
from services.users.config import UsersSettings


def test_defaults() -> None:
    settings = UsersSettings.from_env({})
    assert settings.users_port == 50052
    assert (settings.auth_address, settings.data_address) == ("127.0.0.1:50051", "127.0.0.1:50053")
    assert (settings.admin_username, settings.admin_email, settings.admin_password) == ("", "", "")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ADMIN_USERNAME": "root"}, "ADMIN_USERNAME, ADMIN_EMAIL and ADMIN_PASSWORD together"),
        ({"ADMIN_PASSWORD": "a long passphrase"}, "ADMIN_USERNAME, ADMIN_EMAIL and ADMIN_PASSWORD together"),
        ({"PII_ENCRYPTION_KEY": "not base64"}, "PII_ENCRYPTION_KEY must be base64 of 32 random bytes"),
        ({"USERS_PORT": "abc"}, "USERS_PORT must be a whole number"),
    ],
)
def test_malformed_values_are_refused_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        UsersSettings.from_env(env)


def test_production_refuses_placeholder_secrets() -> None:
    base = {"PINEXA_ENV": "production", "INTERNAL_TOKEN": "x" * 40}
    admin = {"ADMIN_USERNAME": "root", "ADMIN_EMAIL": "root@example.com"}
    with pytest.raises(SettingsError, match="ADMIN_PASSWORD"):
        UsersSettings.from_env({**base, **admin, "ADMIN_PASSWORD": "changeme"})
    with pytest.raises(SettingsError, match="ADMIN_PASSWORD"):
        UsersSettings.from_env({**base, **admin, "ADMIN_PASSWORD": "short pass"})
    with pytest.raises(SettingsError, match="INTERNAL_TOKEN"):
        UsersSettings.from_env({"PINEXA_ENV": "production", "INTERNAL_TOKEN": "changeme"})
    settings = UsersSettings.from_env({**base, **admin, "ADMIN_PASSWORD": "a long and random passphrase"})
    assert settings.is_production


def test_development_allows_placeholders() -> None:
    settings = UsersSettings.from_env(
        {"ADMIN_USERNAME": "a", "ADMIN_EMAIL": "a@b.c", "ADMIN_PASSWORD": "changeme"}
    )
    assert settings.admin_password == "changeme"
    assert (
        UsersSettings.from_env(
            {"ADMIN_USERNAME": "a", "ADMIN_EMAIL": "a@b.c", "ADMIN_PASSWORD": " x "}
        ).admin_password
        == " x "
    )
