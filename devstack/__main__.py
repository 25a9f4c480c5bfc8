"""`make run`: the whole stack on this machine, until Ctrl-C or SIGTERM.

    python -m devstack            # state in $DATA_DIR (default ./var); from the repository root

Starts every service that exists (auth 50051, users 50052, data 50053), nx-27017 on 27017 when
the data service exists and MONGODB_URL is unset, and Envoy on 8080 (admin on 9901); waits for
them to be healthy; prints where everything is; and on Ctrl-C or SIGTERM stops them all. If a
service or Envoy dies on its own, the rest are stopped too and the exit status is non-zero.

nx-27017 is the exception: it is a database, and a database outage is something to watch the
stack ride out (the data service reports NOT_SERVING and answers 503, then recovers by itself), not
a crash. So when it stops, everything else keeps running and the command to start it again is
printed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType

from devstack import console
from devstack.console import ConsoleBuildError
from devstack.stack import MONGO, OTLP, Ports, Stack, StackError, describe


class _Stop(Exception):
    """Raised from the signal handler to leave the wait."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


# Children whose exit is an outage to ride out rather than a reason to stop the stack.
DATABASES = frozenset({MONGO, OTLP})


def _database_stopped(stack: Stack, name: str) -> None:
    child = stack.children[name]
    argv = [os.path.relpath(a) if os.path.isabs(a) and a != os.devnull else a for a in child.argv]
    sys.stderr.write(
        f"\n{name} (the embedded MongoDB) has stopped. The data service now reports NOT_SERVING and\n"
        "answers 503; everything else keeps running. Start it again, in another terminal, with:\n"
        f"  {shlex.join(argv)}\n"
        "and the data service recovers by itself (stop that one with Ctrl-C in its terminal).\n"
    )
    sys.stderr.flush()


def _wait_for_exit(stack: Stack) -> str:
    """Block until a service or Envoy exits; returns its name. Signals interrupt it."""
    gone: set[str] = set()
    while True:
        # WNOWAIT: leave the child for Popen to reap, so its exit status stays readable.
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        for child in stack.children.values():
            if child.name in gone or child.running():  # running() reaps a child that exited
                continue
            if child.name not in DATABASES:
                return child.name
            gone.add(child.name)
            _database_stopped(stack, child.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DATA_DIR", "var")),
        help="state and logs (default: $DATA_DIR or ./var)",
    )
    parser.add_argument("--port", type=int, default=8080, help="Envoy's listener (default 8080)")
    parser.add_argument(
        "--free-ports",
        action="store_true",
        help="choose every port at random among the free ones (to run beside another stack)",
    )
    parser.add_argument(
        "--no-console",
        action="store_true",
        help="do not build and serve the web console at / (it needs Node.js 20+)",
    )
    args = parser.parse_args(argv)

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    out = sys.stdout
    overrides: dict[str, str] = {}
    if not args.no_console:
        try:
            overrides["console_dir"] = str(console.build(out))
        except ConsoleBuildError as error:
            sys.stderr.write(f"The web console is not served: {error}\n")
    # observe: every service's /metrics, and traces to var/traces.jsonl (or OTEL_EXPORTER_OTLP_ENDPOINT).
    stack = Stack(
        args.data_dir,
        Ports.free() if args.free_ports else Ports(envoy=args.port),
        observe=True,
        envoy_overrides=overrides,
    )
    started = ", ".join(stack.services) or "no services yet"
    out.write(f"Starting Pinexa ({started}{', nx-27017' if stack.runs_mongo else ''}, envoy)...\n")
    out.flush()
    try:
        stack.start()
        describe(stack, stream=out)
        dead = _wait_for_exit(stack)
        child = stack.children[dead]
        sys.stderr.write(f"\n{dead} exited unexpectedly; stopping the rest. Its log ({child.log_path}):\n")
        sys.stderr.write(child.log_tail() + "\n")
        return 1
    except _Stop as stop:
        out.write(f"\n{stop}: stopping...\n")
        out.flush()
        return 0
    except StackError as error:
        sys.stderr.write(f"\nCould not start Pinexa: {error}\n")
        return 1
    finally:
        # Ignore further Ctrl-C while shutting down, so the children are always stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        out.write("Stopped.\n")
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
