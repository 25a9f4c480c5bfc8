"""`python -m services.users` serves the users service.

`python -m services.users migrate` applies its migrations and exits;
`python -m services.users reencrypt` rewrites personal data under the newest PII key.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from services.kit.logs import configure_logging
from services.kit.metrics import serve_metrics
from services.kit.server import run_until_signal
from services.kit.settings import Settings, SettingsError
from services.users.server import create_service, migrate, reencrypt

log = logging.getLogger("services.users")

USAGE = "usage: python -m services.users [migrate | reencrypt]"


async def serve(settings: Settings) -> None:
    host = await create_service(settings)
    serve_metrics(settings.metrics_port, settings.listen_host)
    await run_until_signal(host, f"{settings.listen_host}:{settings.users_port}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["migrate"], ["reencrypt"]):
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
    if args == ["reencrypt"]:
        try:
            rewritten = asyncio.run(reencrypt(settings))
        except SettingsError as error:
            sys.stderr.write(f"users: {error}\n")
            return 2
        log.info("personal data re-encrypted", extra={"accounts": rewritten})
        return 0
    try:
        asyncio.run(serve(settings))
    except SettingsError as error:
        sys.stderr.write(f"users: {error}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
