"""The web console's fixtures: the console built from console/ (devstack/console.py, as `make run`
builds it) and the whole stack serving it at / through Envoy, on free ports, for the session.

The console needs Node.js 20+ with npm (README "The web console"); a machine without them fails
these tests, never skips them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack import console
from devstack.stack import Ports, Stack
from tests.e2e.conftest import make_client, unique_name


@pytest.fixture(scope="session")
def console_dist() -> Path:
    return console.build()


@pytest.fixture(scope="session")
def console_admin() -> dict[str, str]:
    name = unique_name("cadmin")
    return {"username": name, "email": f"{name}@example.com", "password": secrets.token_urlsafe(18)}


@pytest.fixture(scope="session")
def console_stack(
    tmp_path_factory: pytest.TempPathFactory, console_dist: Path, console_admin: dict[str, str]
) -> Iterator[Stack]:
    env = {
        "ADMIN_USERNAME": console_admin["username"],
        "ADMIN_EMAIL": console_admin["email"],
        "ADMIN_PASSWORD": console_admin["password"],
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        # One resend of the verification mail per address, so the journey sees the 429 at once.
        "MAIL_LIMIT_PER_ADDRESS": "1",
    }
    base = tmp_path_factory.mktemp("console-stack")
    with Stack(base, Ports.free(), env=env, envoy_overrides={"console_dir": str(console_dist)}) as running:
        yield running


@pytest.fixture(scope="session")
def console_client(console_stack: Stack) -> Iterator[httpx.Client]:
    with make_client(console_stack.rest_url) as http:
        yield http
