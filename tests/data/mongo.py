"""An nx-27017 server run by a test: its own port, data file, log file and pid file.

nx-27017 is a MongoDB wire-protocol server backed by SQLite (see DESIGN.md); the same suite runs
against a real MongoDB when MONGODB_URL is set.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support import free_port

NX_BIN = Path(sys.executable).with_name("nx-27017")


class NxServer:
    """Starts and stops one nx-27017 process by PID; restarting keeps the port and the data file."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.db_path = directory / "nx-27017.db"
        self.log_path = directory / "nx-27017.log"
        self.pid_path = directory / "nx-27017.pid"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "stdout.log").open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(NX_BIN),
                    "--db",
                    str(self.db_path),
                    "--host",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "--log-file",
                    str(self.log_path),
                    "--pid-file",
                    str(self.pid_path),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_accepting(timeout)

    def _wait_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"nx-27017 exited with {self.process.returncode}; see {self.directory}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nx-27017 did not accept connections on {self.port}") from None
                time.sleep(0.05)  # polling the port, not waiting blind

    async def start_async(self, timeout: float = 20.0) -> None:
        await asyncio.to_thread(self.start, timeout)

    def stop(self) -> None:
        """SIGTERM by PID (SIGKILL after 10 s) and wait, so the port and file are free again."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    async def stop_async(self) -> None:
        await asyncio.to_thread(self.stop)
