"""`python -m services.data`: serve the data service on LISTEN_HOST:DATA_PORT until SIGTERM."""

from __future__ import annotations

import asyncio
import sys

from services.data.config import DataSettings
from services.data.server import create_service
from services.kit.cli import run_command, serve


def _serve(settings: DataSettings) -> int:
    asyncio.run(serve(settings, create_service, settings.data_port))
    return 0


def run() -> int:
    return run_command("data", _serve, settings=DataSettings)


if __name__ == "__main__":
    sys.exit(run())
