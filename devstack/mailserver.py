"""The dev stack's SMTP server (aiosmtpd): accepts every mail and writes it to a folder as .eml.

    python -m devstack.mailserver --port 8025 --dir var/mail

`make run` starts it and points the services' SMTP_URL at it, so a sign-up's verification mail
lands in var/mail/ as a file to open. The tests use the same server (`Mailbox`, `start_smtp`) on
a free port, to read the real messages a service sent.

It relays nothing and checks no password (any AUTH succeeds): it is for one machine only, and
listens on 127.0.0.1 by default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import itertools
import logging
import os
import signal
import ssl
import time
import warnings
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

log = logging.getLogger("devstack.mailserver")


class Mailbox:
    """An aiosmtpd handler that keeps every message (and, given a folder, writes it there)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.messages: list[EmailMessage] = []
        self.logins: list[str] = []  # the usernames that authenticated, in order
        self._arrived = asyncio.Condition()
        self._serial = itertools.count(1)
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        message = email.message_from_bytes(data, policy=email.policy.default)
        if self.directory is not None:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            name = f"{stamp}-{os.getpid()}-{next(self._serial):04d}.eml"
            partial = self.directory / f".{name}.part"
            partial.write_bytes(data)
            partial.rename(self.directory / name)  # whole files only: a reader never sees half a mail
            log.info("mail to %s saved as %s", ", ".join(envelope.rcpt_tos), name)
        async with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    async def wait_for(self, count: int, within: float = 10.0) -> list[EmailMessage]:
        """Wait until at least `count` messages arrived (at most `within` seconds); returns them."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.messages) >= count)
        return list(self.messages)

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """Any username and password: the dev server checks nothing, it records who logged in."""
        if isinstance(data, LoginPassword):
            self.logins.append(data.login.decode())
        return AuthResult(success=True)


async def start_smtp(
    mailbox: Mailbox,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    require_auth: bool = False,
) -> asyncio.Server:
    """An SMTP server on `host:port` on the running loop. With `tls_context` it offers STARTTLS
    (or, with `implicit_tls`, speaks TLS from the first byte); `require_auth` refuses mail from a
    client that did not log in (AUTH is offered only over TLS)."""

    def protocol() -> SMTP:
        with warnings.catch_warnings():
            # "AUTH without requiring TLS": with implicit TLS the whole session is TLS.
            warnings.simplefilter("ignore", UserWarning)
            return _smtp()

    def _smtp() -> SMTP:
        return SMTP(
            mailbox,
            hostname="pinexa-dev-mail",
            tls_context=None if implicit_tls else tls_context,
            require_starttls=require_auth and not implicit_tls,
            authenticator=mailbox.authenticate,
            auth_required=require_auth,
            auth_require_tls=not implicit_tls,  # implicit TLS: the whole session is TLS
        )

    loop = asyncio.get_running_loop()
    return await loop.create_server(protocol, host, port, ssl=tls_context if implicit_tls else None)


async def _serve(host: str, port: int, directory: Path) -> None:
    server = await start_smtp(Mailbox(directory), host=host, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("dev SMTP server on %s:%d, writing mail to %s", host, port, directory)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.mailserver", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", type=Path, default=Path("var/mail"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command lines
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
