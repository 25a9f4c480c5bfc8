"""nx-27017 as `make run` starts it: the same command line, logging warnings and errors only.

nx-27017 logs every command it serves at INFO ("Calling db.command with: {'ping': 1}" and what it
returned: two lines per health ping, every 2 s), which drowns `tail -f var/logs/*.log`, and it has
no option for the level (only -v for DEBUG). Its main() calls logging.basicConfig(level=INFO) on
the root logger; setting its own "nx_27017" logger (and so every child logger) to WARNING first
keeps its warnings, errors and tracebacks and drops the per-command lines.
"""

from __future__ import annotations

import logging
import sys

from nx_27017.nx_27017 import main

if __name__ == "__main__":
    logging.getLogger("nx_27017").setLevel(logging.WARNING)
    logging.getLogger("neosqlite").setLevel(logging.WARNING)
    sys.exit(main())
