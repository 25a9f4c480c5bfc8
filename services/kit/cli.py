"""What every service's `__main__` shares: read settings, set up logging, run, and turn a
configuration error into a one-line message and exit status 2 rather than a traceback."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.kit.errors import PinexaError
from services.kit.logs import configure_logging
from services.kit.metrics import serve_metrics
from services.kit.server import ServiceHost, run_until_signal
from services.kit.settings import Settings, SettingsError

S = TypeVar("S", bound=Settings)


def run_command(service: str, command: Callable[[S], int], *, settings: type[S]) -> int:
    """Run `command` with the service's `settings` class read from the environment (only the
    variables that class defines); returns the exit status."""
    try:
        loaded = settings.from_env()
        configure_logging(service, level=loaded.log_level, fmt=loaded.log_format)
        return command(loaded)
    except SettingsError as error:  # also raised at start-up, e.g. for missing keys in production
        sys.stderr.write(f"{service}: configuration error: {error}\n")
        return 2
    except PinexaError as error:  # start-up refused by the service, e.g. ADMIN_USERNAME is taken
        sys.stderr.write(f"{service}: cannot start: {error.message}\n")
        return 2


async def serve(settings: S, create_service: Callable[[S], Awaitable[ServiceHost]], port: int) -> None:
    """Build the service, expose its metrics, and serve on LISTEN_HOST:port until SIGTERM/SIGINT."""
    host = await create_service(settings)
    serve_metrics(settings.metrics_port, settings.listen_host)
    await run_until_signal(host, f"{settings.listen_host}:{port}")
