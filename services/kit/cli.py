"""What every service's `__main__` shares: read settings, set up logging, run, and turn a
configuration error into a one-line message and exit status 2 rather than a traceback."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

from services.kit.errors import PinexaError
from services.kit.logs import configure_logging
from services.kit.metrics import serve_metrics
from services.kit.server import ServiceHost, run_until_signal
from services.kit.settings import Settings, SettingsError


def run_command(service: str, command: Callable[[Settings], int]) -> int:
    """Run `command` with the settings from the environment; returns the exit status."""
    try:
        settings = Settings.from_env()
        configure_logging(service, level=settings.log_level, fmt=settings.log_format)
        return command(settings)
    except SettingsError as error:  # also raised at start-up, e.g. for missing keys in production
        sys.stderr.write(f"{service}: configuration error: {error}\n")
        return 2
    except PinexaError as error:  # start-up refused by the service, e.g. ADMIN_USERNAME is taken
        sys.stderr.write(f"{service}: cannot start: {error.message}\n")
        return 2


async def serve(
    settings: Settings, create_service: Callable[[Settings], Awaitable[ServiceHost]], port: int
) -> None:
    """Build the service, expose its metrics, and serve on LISTEN_HOST:port until SIGTERM/SIGINT."""
    host = await create_service(settings)
    serve_metrics(settings.metrics_port, settings.listen_host)
    await run_until_signal(host, f"{settings.listen_host}:{port}")
