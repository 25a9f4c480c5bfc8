"""`python -m services.users` serves the users service.

`python -m services.users migrate` applies its migrations and exits;
`python -m services.users reencrypt` rewrites personal data under the newest PII key.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from services.kit.cli import run_command, serve
from services.users.config import UsersSettings
from services.users.server import create_service, migrate, reencrypt

log = logging.getLogger("services.users")

USAGE = "usage: python -m services.users [migrate | reencrypt]"


def _run(args: list[str], settings: UsersSettings) -> int:
    if args == ["migrate"]:
        asyncio.run(migrate(settings))
        log.info("migrations applied")
    elif args == ["reencrypt"]:
        rewritten = asyncio.run(reencrypt(settings))
        log.info("personal data re-encrypted", extra={"accounts": rewritten})
    else:
        asyncio.run(serve(settings, create_service, settings.users_port))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["migrate"], ["reencrypt"]):
        sys.stderr.write(USAGE + "\n")
        return 2
    return run_command("users", lambda settings: _run(args, settings), settings=UsersSettings)


if __name__ == "__main__":
    sys.exit(main())
