"""The chaos suite's figures reach the terminal summary whether or not pytest runs with `-s`."""

from __future__ import annotations

import pytest

REPORT: pytest.StashKey[list[str]] = pytest.StashKey()


def report_lines(config: pytest.Config) -> list[str]:
    """Where a chaos test puts the lines it wants printed at the end of the run."""
    return config.stash.setdefault(REPORT, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(REPORT, [])
    if lines:
        terminalreporter.section("chaos suite figures")
        for line in lines:
            terminalreporter.write_line(line)
