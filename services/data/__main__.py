"""The data service's command line (see `python -m services.data --help`).

python -m services.data            serve on LISTEN_HOST:DATA_PORT until SIGTERM/SIGINT
"""

from __future__ import annotations

import sys

from services.data.config import DataSettings
from services.data.server import create_service
from services.kit import cli

COMMANDS: list[cli.Command[DataSettings]] = [
    cli.serve_command(create_service, lambda settings: settings.data_port, "DATA_PORT")
]


def main(argv: list[str] | None = None) -> int:
    return cli.main(
        "data",
        "Pinexa's data service: items that users own (MongoDB).",
        COMMANDS,
        argv,
        settings=DataSettings,
    )


if __name__ == "__main__":
    sys.exit(main())
