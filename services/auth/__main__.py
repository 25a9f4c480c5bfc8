"""The auth service's command line.

python -m services.auth            serve on LISTEN_HOST:AUTH_PORT until SIGTERM/SIGINT
python -m services.auth migrate    apply auth's migrations and exit
python -m services.auth keygen     create a new signing key (rotation), see --help
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from services.auth.config import AuthSettings
from services.auth.keys import generate_private_key, private_key_pem, write_new_key
from services.auth.server import create_service, migrate
from services.kit import cli

log = logging.getLogger("services.auth")

KEYGEN_DESCRIPTION = (
    "Create a new private signing key. Written to JWT_KEYS_DIR (or --dir) as "
    "<UTC time>-<alg>.pem with mode 0600; file-name order is creation order, and the newest "
    "active key signs. With --stdout the PEM is printed instead, for a Secret or "
    "JWT_PRIVATE_KEYS (append it after the keys already there)."
)


def _keygen_arguments(keygen: argparse.ArgumentParser) -> None:
    keygen.add_argument("--alg", choices=["ES256", "EdDSA"], default="ES256", help="default: ES256")
    keygen.add_argument("--dir", type=Path, help="folder to write to (default: JWT_KEYS_DIR)")
    keygen.add_argument(
        "--activate-in",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=(
            "publish the key now but sign with it only after this many seconds, so every verifier "
            "(services, Envoy) has fetched it before the first token signed with it arrives"
        ),
    )
    keygen.add_argument("--stdout", action="store_true", help="print the PEM instead of writing a file")


def keygen(args: argparse.Namespace, settings: AuthSettings) -> int:
    activates_at = time.time() + args.activate_in if args.activate_in > 0 else None
    if args.stdout:
        sys.stdout.write(private_key_pem(generate_private_key(args.alg), activates_at=activates_at))
        return 0
    path, key = write_new_key(
        args.dir or settings.jwt_keys_dir, algorithm=args.alg, activates_at=activates_at
    )
    sys.stdout.write(f"wrote {path} (kid {key.kid}, {key.algorithm})\n")
    return 0


COMMANDS: list[cli.Command[AuthSettings]] = [
    cli.serve_command(create_service, lambda settings: settings.auth_port, "AUTH_PORT"),
    cli.migrate_command(migrate, log),
    cli.Command(
        name="keygen",
        help="create a new signing key (rotation) and exit",
        description=KEYGEN_DESCRIPTION,
        arguments=_keygen_arguments,
        run=keygen,
    ),
]


def main(argv: list[str] | None = None) -> int:
    return cli.main(
        "auth",
        "Pinexa's auth service: login, refresh, logout, signing keys.",
        COMMANDS,
        argv,
        settings=AuthSettings,
    )


if __name__ == "__main__":
    sys.exit(main())
