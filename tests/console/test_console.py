"""The web console, tested in a real browser: the component tests (Vitest + Testing Library, in
jsdom) and the Playwright journeys in Debian's Chromium (`/usr/bin/chromium`, or CHROMIUM_PATH; no
browser download) against the whole stack serving the console through Envoy. Every page the
journeys visit is checked with axe (no serious or critical violation) and photographed into
console/screenshots/ (gitignored), to be looked at.

Vitest and tsc run in the background while the journeys run (they need neither the stack nor the
browser), so the three take about as long as the journeys alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import console
from devstack.stack import Stack

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ENV = {"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1", "CI": "1"}


def _npx(*args: str) -> list[str]:
    return [shutil.which("npx") or "npx", "--no-install", *args]


class Background:
    """A command started now in console/, its output kept in a file, to be awaited later."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.output = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - open until stop()
        self.child = subprocess.Popen(
            argv, cwd=console.CONSOLE, env={**os.environ, **ENV}, stdout=self.output, stderr=subprocess.STDOUT
        )

    def assert_passed(self, timeout: float) -> None:
        try:
            code = self.child.wait(timeout)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
            code = None
        self.output.seek(0)
        text = self.output.read()[-12000:]
        assert code == 0, f"{' '.join(self.argv)} {'timed out' if code is None else 'failed'}:\n{text}"

    def stop(self) -> None:
        if self.child.poll() is None:
            self.child.kill()
            self.child.wait()
        self.output.close()


@pytest.fixture(scope="module")
def checks(console_dist: Path) -> Iterator[dict[str, Background]]:
    started = {"vitest": Background(_npx("vitest", "run")), "tsc": Background(_npx("tsc", "-b"))}
    yield started
    for check in started.values():
        check.stop()


@pytest.mark.timeout(900)
def test_browser_journeys_in_chromium(
    checks: dict[str, Background], console_stack: Stack, console_admin: dict[str, str]
) -> None:
    assert Path(CHROMIUM).exists(), f"Chromium is needed at {CHROMIUM} (Debian chromium, or CHROMIUM_PATH)"
    result = subprocess.run(
        _npx("playwright", "test"),
        cwd=console.CONSOLE,
        env={
            **os.environ,
            **ENV,
            "CONSOLE_URL": console_stack.rest_url,
            "MAIL_DIR": str(console_stack.mail_dir),
            "CHROMIUM_PATH": CHROMIUM,
            "ADMIN_USERNAME": console_admin["username"],
            "ADMIN_PASSWORD": console_admin["password"],
        },
        capture_output=True,
        text=True,
        timeout=880,
        check=False,
    )
    output = f"{result.stdout[-12000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"playwright test failed:\n{output}"


@pytest.mark.timeout(300)
def test_component_tests_pass(checks: dict[str, Background]) -> None:
    checks["vitest"].assert_passed(timeout=280)


@pytest.mark.timeout(200)
def test_the_console_type_checks(checks: dict[str, Background]) -> None:
    checks["tsc"].assert_passed(timeout=180)
