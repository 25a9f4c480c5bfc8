"""`python -m services.users` serves the users service; `python -m services.users migrate`
applies its migrations and exits."""

from __future__ import annotations

import asyncio
import logging
import sys

from services.kit.logs import configure_logging
from services.kit.metrics import serve_metrics
from services.kit.server import run_until_signal
from services.kit.settings import Settings, SettingsError
from services.users.server import create_service, migrate

log = logging.getLogger("services.users")

USAGE = "usage: python -m services.users [migrate]"


async def serve(settings: Settings) -> None:
    host = await create_service(settings)
    serve_metrics(settings.metrics_port, settings.listen_host)
    await run_until_signal(host, f"{settings.listen_host}:{settings.users_port}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["migrate"]):
        sys.stderr.write(USAGE + "\n")
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        sys.stderr.write(f"users: {error}\n")
        return 2
    configure_logging("users", level=settings.log_level, fmt=settings.log_format)
    if args == ["migrate"]:
        asyncio.run(migrate(settings))
        log.info("migrations applied")
        return 0
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
