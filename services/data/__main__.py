"""`python -m services.data`: serve the data service on LISTEN_HOST:DATA_PORT until SIGTERM."""

from __future__ import annotations

import asyncio
import sys

from services.data.server import create_service
from services.kit.logs import configure_logging
from services.kit.metrics import serve_metrics
from services.kit.server import run_until_signal
from services.kit.settings import Settings, SettingsError


async def main(settings: Settings) -> None:
    host = await create_service(settings)
    await run_until_signal(host, f"{settings.listen_host}:{settings.data_port}")


def run() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.stderr.write(f"data: configuration error: {exc}\n")
        return 2
    configure_logging("data", level=settings.log_level, fmt=settings.log_format)
    serve_metrics(settings.metrics_port, settings.listen_host)
    try:
        asyncio.run(main(settings))
    except SettingsError as exc:
        sys.stderr.write(f"data: configuration error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run())
