"""What every service's `__main__` shares: one argparse command line, read settings, set up
logging, run, and turn a configuration error into a one-line message and exit status 2 rather
than a traceback.

    python -m services.<svc> [--help] [COMMAND [ARGS...]]

Each service lists its commands (`serve`, the default, then e.g. `migrate`, `reencrypt`,
`keygen`) as `Command`s and calls `main()`; `--help` lists them with one line each, and an unknown
command or option is argparse's usage error (exit status 2). Parsing comes before the settings
are read, so `--help` works without any configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import uvloop

from services.kit import errortracking, tracing
from services.kit.errors import PinexaError
from services.kit.logs import configure_logging
from services.kit.metrics import serve_metrics
from services.kit.server import ServiceHost, run_until_signal
from services.kit.settings import Settings, SettingsError

S = TypeVar("S", bound=Settings)

DEFAULT_COMMAND = "serve"


@dataclass(frozen=True, kw_only=True)
class Command(Generic[S]):
    """One subcommand: its name, its line in `--help`, and what it runs (exit status returned)."""

    name: str
    help: str
    run: Callable[[argparse.Namespace, S], int]
    description: str | None = None
    """Its own `--help` text (default: `help`)."""
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    """Adds the command's own options, if it has any."""


def serve_command(
    create_service: Callable[[S], Awaitable[ServiceHost]], port: Callable[[S], int], where: str
) -> Command[S]:
    """`serve`: build the service and serve gRPC on LISTEN_HOST:<where> until SIGTERM/SIGINT."""

    def run(args: argparse.Namespace, settings: S) -> int:
        # uvloop, not asyncio's default loop: grpc.aio works on any asyncio loop (its completion
        # queue wakes the loop through a file descriptor), and each call's loop work is cheaper.
        uvloop.run(serve(settings, create_service, port(settings)))
        return 0

    return Command(
        name=DEFAULT_COMMAND,
        help=f"serve on LISTEN_HOST:{where} until SIGTERM (default)",
        run=run,
    )


def migrate_command(migrate: Callable[[S], Coroutine[Any, Any, None]], log: logging.Logger) -> Command[S]:
    """`migrate`: apply the service's SQL migrations (Alembic) to its database and exit."""

    def run(args: argparse.Namespace, settings: S) -> int:
        asyncio.run(migrate(settings))
        log.info("migrations applied")
        return 0

    return Command(
        name="migrate",
        help="apply the SQL migrations to its database and exit",
        run=run,
    )


def parser(service: str, description: str, commands: Sequence[Command[Any]]) -> argparse.ArgumentParser:
    """The command line of `python -m services.<service>`."""
    names = [command.name for command in commands]
    if not names or names[0] != DEFAULT_COMMAND or len(set(names)) != len(names):
        raise ValueError(f"{service}: commands must start with {DEFAULT_COMMAND!r} and be unique: {names}")
    top = argparse.ArgumentParser(
        prog=f"python -m services.{service}",
        usage=f"%(prog)s [-h] [{' | '.join(names)}] [ARGS...]",
        description=description,
        epilog=f"Without a command it runs `{DEFAULT_COMMAND}`. Settings come from the environment "
        "(see the README's configuration table).",
    )
    # prog: the commands' own usage lines start from the program, not from the usage above. The
    # metavar is as wide as a command's name plus its indent, which argparse leaves out when it
    # sizes the column, so no name pushes its help line down.
    subcommands = top.add_subparsers(
        dest="command", title="commands", metavar="COMMAND [ARGS...]", prog=top.prog
    )
    for command in commands:
        sub = subcommands.add_parser(
            command.name, help=command.help, description=command.description or command.help
        )
        if command.arguments is not None:
            command.arguments(sub)
    return top


def main(
    service: str,
    description: str,
    commands: Sequence[Command[S]],
    argv: Sequence[str] | None = None,
    *,
    settings: type[S],
) -> int:
    """Parse `argv` (default: sys.argv[1:]) and run the chosen command with the service's
    `settings` class read from the environment; returns the exit status.
    `--help` and usage errors exit through argparse (status 0 and 2)."""
    args = parser(service, description, commands).parse_args(sys.argv[1:] if argv is None else argv)
    chosen = args.command or DEFAULT_COMMAND
    (command,) = [c for c in commands if c.name == chosen]
    return run_command(service, lambda loaded: command.run(args, loaded), settings=settings)


def run_command(service: str, command: Callable[[S], int], *, settings: type[S]) -> int:
    """Run `command` with the service's `settings` class read from the environment (only the
    variables that class defines); returns the exit status."""
    try:
        loaded = settings.from_env()
        configure_logging(service, level=loaded.log_level, fmt=loaded.log_format)
        # Before any server, channel or database client exists: they are instrumented as made.
        tracing.configure(service)
        errortracking.configure(service, loaded)
        try:
            return command(loaded)
        finally:
            tracing.shutdown()
            errortracking.shutdown()
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
