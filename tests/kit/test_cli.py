"""The services' command-line runner turns start-up refusals into a message and exit status 2."""

from __future__ import annotations

import pytest

from services.data.config import DataSettings
from services.kit.cli import run_command
from services.kit.errors import AlreadyExists
from services.kit.settings import Settings, SettingsError
from services.users.config import UsersSettings


def test_a_configuration_error_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USERS_PORT", "not-a-port")
    assert run_command("users", lambda settings: 0, settings=UsersSettings) == 2
    assert (
        capsys.readouterr().err
        == "users: configuration error: USERS_PORT must be a whole number, got 'not-a-port'\n"
    )


def test_a_refused_start_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    def start(settings: UsersSettings) -> int:
        raise AlreadyExists("ADMIN_USERNAME 'root' belongs to another account")

    assert run_command("users", start, settings=UsersSettings) == 2
    assert (
        capsys.readouterr().err == "users: cannot start: ADMIN_USERNAME 'root' belongs to another account\n"
    )


def test_settings_errors_raised_while_starting_are_caught_too(capsys: pytest.CaptureFixture[str]) -> None:
    def start(settings: Settings) -> int:
        raise SettingsError("production needs signing keys")

    assert run_command("auth", start, settings=Settings) == 2
    assert "auth: configuration error: production needs signing keys" in capsys.readouterr().err


def test_the_command_status_is_returned() -> None:
    assert run_command("data", lambda settings: 0, settings=DataSettings) == 0
