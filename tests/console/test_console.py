"""The web console, tested in a real browser: the component tests (Vitest + Testing Library, in
jsdom) and the Playwright journeys in Debian's Chromium (`/usr/bin/chromium`, or CHROMIUM_PATH; no
browser download) against the whole stack serving the console through Envoy. Every page the
journeys visit is checked with axe (no serious or critical violation) and photographed into
console/screenshots/ (gitignored), to be looked at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack import console
from devstack.stack import Stack

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def _run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float) -> None:
    result = subprocess.run(
        argv,
        cwd=console.CONSOLE,
        env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1", "CI": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = f"{result.stdout[-12000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{output}"


@pytest.mark.timeout(300)
def test_component_tests_pass(console_dist: Path) -> None:
    _run([shutil.which("npx") or "npx", "--no-install", "vitest", "run"], timeout=280)


@pytest.mark.timeout(200)
def test_the_console_type_checks(console_dist: Path) -> None:
    _run([shutil.which("npx") or "npx", "--no-install", "tsc", "-b"], timeout=180)


@pytest.mark.timeout(900)
def test_browser_journeys_in_chromium(console_stack: Stack, console_admin: dict[str, str]) -> None:
    assert Path(CHROMIUM).exists(), f"Chromium is needed at {CHROMIUM} (Debian chromium, or CHROMIUM_PATH)"
    _run(
        [shutil.which("npx") or "npx", "--no-install", "playwright", "test"],
        env={
            "CONSOLE_URL": console_stack.rest_url,
            "MAIL_DIR": str(console_stack.mail_dir),
            "CHROMIUM_PATH": CHROMIUM,
            "ADMIN_USERNAME": console_admin["username"],
            "ADMIN_PASSWORD": console_admin["password"],
        },
        timeout=880,
    )
