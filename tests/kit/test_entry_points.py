"""Every `python -m services.<svc>` has the same argparse command line (services/kit/cli.py):
`--help` lists its commands with one line each and exits 0; an unknown command or option exits 2
with the usage line. Run as real processes, the way an operator or the image's entrypoint runs them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Each service's commands; `serve` is what runs without one.
COMMANDS = {
    "auth": ["serve", "migrate", "keygen"],
    "users": ["serve", "migrate", "reencrypt"],
    "data": ["serve"],
}


def _run(service: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PINEXA_", "DATABASE_URL", "MONGODB_"))}
    env["COLUMNS"] = "200"  # argparse wraps help at the terminal's width: one line per command
    return subprocess.run(
        [sys.executable, "-m", f"services.{service}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _listed_commands(help_text: str) -> dict[str, str]:
    """The command lines of argparse's help: `    name    one-line help`."""
    section = help_text.split("commands:", 1)[1]
    return dict(re.findall(r"^    (\w+)\s{2,}(\S.*)$", section, re.MULTILINE))


@pytest.mark.parametrize("service", sorted(COMMANDS))
def test_help_lists_every_command_and_exits_0(service: str) -> None:
    result = _run(service, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m services.{service} "), result.stdout
    listed = _listed_commands(result.stdout)
    assert list(listed) == COMMANDS[service], result.stdout
    assert all(line.strip() for line in listed.values())  # each has its one-line help
    assert "(default)" in listed["serve"]
    assert result.stderr == ""


@pytest.mark.parametrize("service", sorted(COMMANDS))
@pytest.mark.parametrize("args", [("nonsense",), ("--no-such-option",), ("serve", "extra")])
def test_a_wrong_command_exits_2_with_the_usage(service: str, args: tuple[str, ...]) -> None:
    result = _run(service, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"usage: python -m services.{service} "), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_command_has_its_own_help() -> None:
    result = _run("users", "reencrypt", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m services.users reencrypt")
    assert "PII" in result.stdout
