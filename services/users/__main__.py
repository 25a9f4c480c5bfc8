"""The users service's command line (see `python -m services.users --help`).

python -m services.users              serve on LISTEN_HOST:USERS_PORT until SIGTERM/SIGINT
python -m services.users migrate      apply its migrations and exit
python -m services.users reencrypt    rewrite personal data under the newest PII key
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from services.kit import cli
from services.users.config import UsersSettings
from services.users.server import create_service, migrate, reencrypt

log = logging.getLogger("services.users")


def _reencrypt(args: argparse.Namespace, settings: UsersSettings) -> int:
    rewritten = asyncio.run(reencrypt(settings))
    log.info("personal data re-encrypted", extra={"accounts": rewritten})
    return 0


COMMANDS: list[cli.Command[UsersSettings]] = [
    cli.serve_command(create_service, lambda settings: settings.users_port, "USERS_PORT"),
    cli.migrate_command(migrate, log),
    cli.Command(
        name="reencrypt",
        help="rewrite personal data under the newest PII key and exit",
        description=(
            "Rewrite every account's personal data under the newest PII key (the first of "
            "PII_ENCRYPTION_KEY), so the older keys can then be removed."
        ),
        run=_reencrypt,
    ),
]


def main(argv: list[str] | None = None) -> int:
    return cli.main(
        "users", "Pinexa's users service: accounts and profiles.", COMMANDS, argv, settings=UsersSettings
    )


if __name__ == "__main__":
    sys.exit(main())
