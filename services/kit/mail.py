"""Mail, for real: a durable outbox in the service's own database and a worker sending over SMTP.

Any SQL-backed service (users, auth) sends mail the same way:

1. its schema adds the outbox table (`outbox_table_in(metadata)`) and a migration creates it
   (`create_outbox_table(op)`);
2. in the transaction of the change that causes a mail, it calls
   `await enqueue(connection, to=..., template=..., context=..., sealer=...)`, so the mail exists
   exactly when the change does; after the commit it calls `worker.wake()`;
3. its `MailWorker` (started with the service) renders the template into a text + HTML message
   and sends it with aiosmtplib: retried with exponential back-off while the mail server is down
   (nothing is lost), each row claimed with a lease first (a worker that dies after sending but
   before deleting the row causes at most one repeat, with the same Message-ID), and removed
   once the server accepted it. A permanent refusal (an SMTP 5xx) is logged and dropped.

The recipient and the context (which holds the link's token) are sealed with the service's
`Sealer` (users: its PII key) and the row is deleted on delivery: the outbox holds a token only
until its mail went out.

Templates live in `mail_templates/`: `<name>.subject.txt`, `<name>.txt` and `<name>.html`
(Jinja2; the HTML part autoescaped). A context with a `token` gets a `link`:
`${PUBLIC_BASE_URL}<path>?token=...`, with the path `TEMPLATES` gives the template.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlencode, urlsplit

import aiosmtplib
import jinja2
import sqlalchemy as sa

from services.kit import metrics
from services.kit.db import Connection, Database
from services.kit.outage import OutageLog
from services.kit.outbox import OutboxWorker
from services.kit.settings import Settings, SettingsError, setting

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).parent / "mail_templates"

# Every template and the path its link points to (None: the mail has no link).
TEMPLATES: dict[str, str | None] = {
    "verify_email": "/verify-email",
    "email_change_notice": None,
    "password_reset": "/reset-password",
    "password_changed": None,
    "totp_enabled": None,
    "totp_disabled": None,
    "recovery_code_used": None,
}

DEV_SMTP_URL = "smtp://127.0.0.1:8025"
DEV_PUBLIC_BASE_URL = "http://127.0.0.1:8080"


# -- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class MailSettings(Settings):
    """The settings of a service that sends mail (mixed into its settings class)."""

    # smtp://[user:pass@]host[:port] (STARTTLS when offered; required with a password),
    # smtps://[user:pass@]host[:port] (implicit TLS). Empty: the dev server at DEV_SMTP_URL.
    smtp_url: str = setting("SMTP_URL", "", secret=True)
    smtp_timeout_seconds: float = setting("SMTP_TIMEOUT_SECONDS", 10.0, minimum=0.1)
    # A PEM file of CA certificates to trust for the SMTP server's TLS (empty: the system's).
    smtp_ca_file: str = setting("SMTP_CA_FILE", "")
    mail_from: str = setting("MAIL_FROM", "Pinexa <no-reply@pinexa.localhost>")
    # Where the links in mails point: the web app that calls the API (no trailing slash needed).
    public_base_url: str = setting("PUBLIC_BASE_URL", "")
    product_name: str = setting("PRODUCT_NAME", "Pinexa")
    # How many mails one address, and one client address, may ask for per window (resends).
    mail_limit_per_address: int = setting("MAIL_LIMIT_PER_ADDRESS", 3, minimum=1)
    mail_limit_per_client: int = setting("MAIL_LIMIT_PER_CLIENT", 10, minimum=1)
    mail_limit_window_seconds: float = setting("MAIL_LIMIT_WINDOW_SECONDS", 3600.0, minimum=1)

    @property
    def effective_smtp_url(self) -> str:
        return self.smtp_url or DEV_SMTP_URL

    @property
    def effective_public_base_url(self) -> str:
        return (self.public_base_url or DEV_PUBLIC_BASE_URL).rstrip("/")

    def validate(self) -> None:
        smtp_config(self)  # raises SettingsError when SMTP_URL is malformed
        if "@" not in parseaddr(self.mail_from)[1]:
            raise SettingsError(f"MAIL_FROM must be an e-mail address, got {self.mail_from!r}")
        base = urlsplit(self.effective_public_base_url)
        if base.scheme not in ("http", "https") or not base.netloc:
            raise SettingsError("PUBLIC_BASE_URL must be an http(s) URL, e.g. https://app.example.com")
        super().validate()

    def unset_in_production(self) -> list[str]:
        """The mail settings a production service runs without (it warns at start-up: its mail
        then waits in the outbox for the dev server, or links point at the dev edge)."""
        if not self.is_production:
            return []
        return [
            name
            for name, value in (("SMTP_URL", self.smtp_url), ("PUBLIC_BASE_URL", self.public_base_url))
            if not value
        ]


@dataclass(frozen=True)
class SmtpConfig:
    """SMTP_URL, parsed."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    implicit_tls: bool = False
    # None: STARTTLS when the server offers it; True: refuse to go on without it.
    start_tls: bool | None = None
    ca_file: str = ""
    timeout: float = 10.0


def parse_smtp_url(url: str, *, ca_file: str = "", timeout: float = 10.0) -> SmtpConfig:
    """smtp://[user:pass@]host[:port] or smtps://...; a password is never sent without TLS."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise SettingsError("SMTP_URL must be smtp://[user:pass@]host[:port] or smtps://...")
    try:
        port = parts.port
    except ValueError:
        raise SettingsError("SMTP_URL has an invalid port") from None
    implicit = parts.scheme == "smtps"
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return SmtpConfig(
        host=parts.hostname,
        port=port or (465 if implicit else 25),
        username=username,
        password=password,
        implicit_tls=implicit,
        start_tls=None if implicit or username is None else True,
        ca_file=ca_file,
        timeout=timeout,
    )


def smtp_config(settings: MailSettings) -> SmtpConfig:
    return parse_smtp_url(
        settings.effective_smtp_url, ca_file=settings.smtp_ca_file, timeout=settings.smtp_timeout_seconds
    )


# -- what a service enqueues ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """One mail to send: a recipient, a template name (see TEMPLATES) and its context."""

    to: str
    template: str
    context: Mapping[str, Any] = field(default_factory=dict)


class Sealer(Protocol):
    """Encrypts what the outbox stores (users: its PiiCipher). `row_id` binds a value to its row."""

    def seal(self, column: str, row_id: str, plaintext: str) -> str: ...

    def open(self, column: str, row_id: str, stored: str) -> str: ...


class PlainSealer:
    """For a service without an encryption key: stores values as they are."""

    def seal(self, column: str, row_id: str, plaintext: str) -> str:
        return plaintext

    def open(self, column: str, row_id: str, stored: str) -> str:
        return stored


OUTBOX_TABLE = "mail_outbox"


def _outbox_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("recipient", sa.Text, nullable=False),  # sealed
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("context", sa.Text, nullable=False),  # sealed JSON
        sa.Column("created_at", sa.Float, nullable=False),
        # The compare-and-set token of a claim, and how many sends were tried.
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        # When the row may next be tried; a claim pushes it past the send's deadline (a lease).
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
    ]


_OUTBOX_INDEX = ("ix_mail_outbox_next_attempt_at", ["next_attempt_at"])


def outbox_table_in(metadata: sa.MetaData) -> sa.Table:
    """The outbox table in a service's own metadata (its schema module calls this once)."""
    return sa.Table(OUTBOX_TABLE, metadata, *_outbox_columns(), sa.Index(_OUTBOX_INDEX[0], *_OUTBOX_INDEX[1]))


def create_outbox_table(op: Any) -> None:
    """For a service's Alembic migration: `mail.create_outbox_table(op)`."""
    op.create_table(OUTBOX_TABLE, *_outbox_columns())
    op.create_index(_OUTBOX_INDEX[0], OUTBOX_TABLE, _OUTBOX_INDEX[1])


def drop_outbox_table(op: Any) -> None:
    op.drop_index(_OUTBOX_INDEX[0], table_name=OUTBOX_TABLE)
    op.drop_table(OUTBOX_TABLE)


outbox = outbox_table_in(sa.MetaData())  # the kit's handle for its statements


async def enqueue(
    connection: Connection,
    *,
    to: str,
    template: str,
    context: Mapping[str, Any] | None = None,
    sealer: Sealer | None = None,
    now: float | None = None,
) -> str:
    """Write one mail to the outbox in the caller's transaction; returns its id (which is also
    its Message-ID). The caller wakes its worker once the transaction committed."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown mail template {template!r}")
    sealer = sealer or PlainSealer()
    mail_id = str(uuid.uuid4())
    at = time.time() if now is None else now
    await connection.execute(
        sa.insert(outbox).values(
            id=mail_id,
            recipient=sealer.seal("mail_recipient", mail_id, to),
            template=template,
            context=sealer.seal("mail_context", mail_id, json.dumps(dict(context or {}))),
            created_at=at,
            attempts=0,
            next_attempt_at=at,
        )
    )
    return mail_id


async def enqueue_all(
    connection: Connection, mails: Sequence[OutgoingMail], *, sealer: Sealer | None = None
) -> list[str]:
    """`enqueue` each of `mails`, in order, in the caller's transaction."""
    return [
        await enqueue(connection, to=m.to, template=m.template, context=m.context, sealer=sealer)
        for m in mails
    ]


def duration_text(seconds: float) -> str:
    """A token lifetime as a mail says it: "30 minutes", "24 hours", "2 days"."""
    minutes = max(1, round(seconds / 60))
    if minutes < 120 and minutes % 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = round(minutes / 60)
    if hours <= 48:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    days = round(hours / 24)
    return f"{days} days"


# The mails of the account lifecycle, ready to enqueue.


def verify_email_mail(*, to: str, username: str, token: str, ttl_seconds: float) -> OutgoingMail:
    """The link that confirms `to` (sign-up, resend, or the new address of an e-mail change)."""
    return OutgoingMail(
        to,
        "verify_email",
        {"username": username, "email": to, "token": token, "expires_in": duration_text(ttl_seconds)},
    )


def email_change_notice_mail(*, to: str, username: str, new_email: str) -> OutgoingMail:
    """To the old address when a change to `new_email` was asked for."""
    return OutgoingMail(to, "email_change_notice", {"username": username, "new_email": new_email})


def password_reset_mail(*, to: str, username: str, token: str, ttl_seconds: float) -> OutgoingMail:
    """The link to `${PUBLIC_BASE_URL}/reset-password?token=...`."""
    return OutgoingMail(
        to, "password_reset", {"username": username, "token": token, "expires_in": duration_text(ttl_seconds)}
    )


def _when(at: float) -> str:
    """A moment (UNIX seconds) as a notice says it."""
    return time.strftime("%Y-%m-%d at %H:%M UTC", time.gmtime(at))


def password_changed_mail(*, to: str, username: str, changed_at: float) -> OutgoingMail:
    """The notice after a password change or reset; `changed_at` in UNIX seconds."""
    return OutgoingMail(to, "password_changed", {"username": username, "changed_at": _when(changed_at)})


def totp_enabled_mail(*, to: str, username: str, changed_at: float) -> OutgoingMail:
    """The notice after a TOTP second factor was activated."""
    return OutgoingMail(to, "totp_enabled", {"username": username, "changed_at": _when(changed_at)})


def totp_disabled_mail(*, to: str, username: str, changed_at: float, by_admin: bool) -> OutgoingMail:
    """The notice after the account turned its second factor off, or an admin removed it."""
    return OutgoingMail(
        to, "totp_disabled", {"username": username, "changed_at": _when(changed_at), "by_admin": by_admin}
    )


def recovery_code_used_mail(*, to: str, username: str, used_at: float, codes_left: int) -> OutgoingMail:
    """The notice after a recovery code was spent (a login or a reauthentication)."""
    return OutgoingMail(
        to,
        "recovery_code_used",
        {"username": username, "changed_at": _when(used_at), "codes_left": codes_left},
    )


# -- rendering -----------------------------------------------------------------------------------


class Renderer:
    """Turns a template and its context into a text + HTML EmailMessage."""

    def __init__(self, *, product_name: str, public_base_url: str, mail_from: str) -> None:
        self._product = product_name
        self._base = public_base_url.rstrip("/")
        self._from = mail_from
        loader = jinja2.FileSystemLoader(TEMPLATE_DIR)
        self._text = jinja2.Environment(loader=loader, autoescape=False, undefined=jinja2.StrictUndefined)  # noqa: S701 (plain text)
        self._html = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)

    @classmethod
    def from_settings(cls, settings: MailSettings) -> Renderer:
        return cls(
            product_name=settings.product_name,
            public_base_url=settings.effective_public_base_url,
            mail_from=settings.mail_from,
        )

    def link(self, template: str, token: str) -> str:
        path = TEMPLATES[template]
        if path is None:
            raise ValueError(f"mail template {template!r} has no link")
        return f"{self._base}{path}?{urlencode({'token': token})}"

    def render(self, *, to: str, template: str, context: Mapping[str, Any], message_id: str) -> EmailMessage:
        values: dict[str, Any] = {"product": self._product, "base_url": self._base, **context}
        if "token" in values and TEMPLATES[template] is not None:
            values["link"] = self.link(template, str(values["token"]))
        subject = self._text.get_template(f"{template}.subject.txt").render(values).strip()
        message = EmailMessage()
        message["Subject"] = subject
        name, address = parseaddr(self._from)
        message["From"] = formataddr((name or self._product, address))
        message["To"] = to
        message["Date"] = formatdate(localtime=False)
        domain = address.rpartition("@")[2] or "pinexa.localhost"
        message["Message-ID"] = f"<{message_id}@{domain}>"
        # 8bit rather than quoted-printable: a link stays one greppable line in the raw message.
        message.set_content(self._text.get_template(f"{template}.txt").render(values), cte="8bit")
        message.add_alternative(
            self._html.get_template(f"{template}.html").render(values), subtype="html", cte="8bit"
        )
        return message


# -- sending -------------------------------------------------------------------------------------


class PermanentFailure(Exception):
    """The mail server refused the message for good (SMTP 5xx): retrying will not help."""


class SmtpSender:
    """Sends one message per connection with aiosmtplib (a mail a minute needs no pool).

    The name this host gives in EHLO is looked up once: aiosmtplib would otherwise run
    `socket.getfqdn`, a resolver call, in a worker thread for every connection (while users
    drained a burst of sign-up mail, that hop and lookup were about 13% of its CPU samples, and a
    slow resolver would be a wait per mail)."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._tls: ssl.SSLContext | None = None
        if config.ca_file:
            self._tls = ssl.create_default_context(cafile=config.ca_file)
        self._local_hostname: str | None = None

    async def _hostname(self) -> str:
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        return self._local_hostname

    async def send(self, message: EmailMessage) -> None:
        c = self._config
        try:
            await aiosmtplib.send(
                message,
                hostname=c.host,
                port=c.port,
                local_hostname=await self._hostname(),
                username=c.username,
                password=c.password,
                use_tls=c.implicit_tls,
                start_tls=c.start_tls,
                tls_context=self._tls,
                timeout=c.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [r.code for r in error.recipients]
            if codes and all(code >= 500 for code in codes):
                raise PermanentFailure(f"recipient refused ({codes[0]})") from None
            raise
        except aiosmtplib.SMTPResponseException as error:
            if error.code >= 500 and not isinstance(error, aiosmtplib.SMTPAuthenticationError):
                raise PermanentFailure(f"refused ({error.code})") from None
            raise


class Sender(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


@dataclass(frozen=True, slots=True)
class _Due:
    id: str
    attempts: int


class MailWorker(OutboxWorker[_Due, float]):
    """Delivers a service's mail outbox; `start`/`stop` are its on_start/on_stop hooks."""

    def __init__(
        self,
        *,
        engine: Database,
        renderer: Renderer,
        sender: Sender,
        sealer: Sealer | None = None,
        component: str = "mail outbox",
        service: str = "",
        poll_interval: float = 5.0,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
        lease_seconds: float = 60.0,
        batch_size: int = 20,
        clock: Callable[[], float] = time.time,
        database_outage: OutageLog | None = None,
    ) -> None:
        super().__init__(
            name=component,
            log=log,
            clock=clock,
            poll_interval=poll_interval,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            batch_size=batch_size,
            database_outage=database_outage,
        )
        self._engine = engine
        self._renderer = renderer
        self._sender = sender
        self._sealer = sealer or PlainSealer()
        self._lease = lease_seconds
        self._smtp = OutageLog(log, component=component, dependency="mail server")
        # The `service` label of the mail metrics (pinexa_mail_sent_total, the outbox gauges).
        self._service = service or component

    @classmethod
    def from_settings(cls, settings: MailSettings, *, engine: Database, **kwargs: Any) -> MailWorker:
        config = smtp_config(settings)
        for name in settings.unset_in_production():
            log.warning("%s is not set: mail cannot reach its recipients correctly until it is", name)
        return cls(
            engine=engine,
            renderer=Renderer.from_settings(settings),
            sender=SmtpSender(config),
            lease_seconds=config.timeout * 2 + 10,
            **kwargs,
        )

    async def due(self, now: float, limit: int) -> list[_Due]:
        statement = (
            sa.select(outbox.c.id, outbox.c.attempts)
            .where(outbox.c.next_attempt_at <= now)
            .order_by(outbox.c.next_attempt_at)
            .limit(limit)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [_Due(row.id, row.attempts) for row in rows]

    async def seconds_until_next(self) -> float | None:
        async with self._engine.connect() as connection:
            due = (await connection.execute(sa.select(sa.func.min(outbox.c.next_attempt_at)))).scalar()
        return None if due is None else float(due) - self._clock()

    async def report_backlog(self) -> None:
        statement = sa.select(sa.func.count(), sa.func.min(outbox.c.created_at))
        async with self._engine.connect() as connection:
            depth, oldest = (await connection.execute(statement)).one()
        age = 0.0 if oldest is None else self._clock() - float(oldest)
        metrics.outbox(self._service, "mail", depth=int(depth), oldest_age_seconds=age)

    async def pending(self) -> int:
        """How many mails wait in the outbox (for tests and operators)."""
        async with self._engine.connect() as connection:
            return int(
                (await connection.execute(sa.select(sa.func.count()).select_from(outbox))).scalar() or 0
            )

    async def _claim(self, item: _Due) -> Any:
        """Take the row for one send (the attempt counter is the compare-and-set token) and read
        it; None if another worker claimed it first."""
        async with self._engine.begin() as connection:
            claimed = await connection.execute(
                sa.update(outbox)
                .where(outbox.c.id == item.id, outbox.c.attempts == item.attempts)
                .values(attempts=item.attempts + 1, next_attempt_at=self._clock() + self._lease)
            )
            if claimed.rowcount != 1:
                return None
            return (
                await connection.execute(
                    sa.select(outbox.c.recipient, outbox.c.template, outbox.c.context).where(
                        outbox.c.id == item.id
                    )
                )
            ).first()

    async def _reschedule(self, item: _Due, attempts: int, at: float, error: str) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                sa.update(outbox)
                .where(outbox.c.id == item.id, outbox.c.attempts == attempts)
                .values(next_attempt_at=at, last_error=error[:500])
            )

    async def _finish(self, item: _Due) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(sa.delete(outbox).where(outbox.c.id == item.id))

    async def deliver(self, item: _Due) -> bool:
        row = await self._claim(item)
        if row is None:
            return False
        attempts = item.attempts + 1
        fields = {"mail": item.id, "template": row.template, "attempts": attempts}
        try:
            message = self._renderer.render(
                to=self._sealer.open("mail_recipient", item.id, row.recipient),
                template=row.template,
                context=json.loads(self._sealer.open("mail_context", item.id, row.context)),
                message_id=item.id,
            )
        except Exception:
            # A template or row that cannot be rendered will not render on a retry either.
            log.exception("a mail could not be rendered; dropped", extra=fields)
            await self._finish(item)
            return False
        try:
            await self._sender.send(message)
        except asyncio.CancelledError:
            # Shutting down mid-send: hand the row back now rather than at the end of the lease,
            # so a restarted or other worker sends it at once (at most a repeat).
            await asyncio.shield(self._reschedule(item, attempts, self._clock(), "stopped mid-send"))
            raise
        except PermanentFailure as failure:
            self._smtp.up()
            log.warning(
                "the mail server refused a mail for good; dropped", extra={**fields, "error": str(failure)}
            )
            metrics.MAIL_FAILED.labels(self._service).inc()
            await self._finish(item)
            return False
        except Exception as error:  # connection refused, timeout, 4xx: the server is not there now
            delay = self.backoff(attempts)
            detail = f"{type(error).__name__}: {error}"
            self._smtp.down(type(error).__name__)
            metrics.MAIL_FAILED.labels(self._service).inc()
            log.debug("mail send failed; will retry", extra={**fields, "retry_in_s": round(delay, 2)})
            await self._reschedule(item, attempts, self._clock() + delay, detail)
            return False
        self._smtp.up()
        await self._finish(item)
        metrics.MAIL_SENT.labels(self._service).inc()
        log.info("mail sent", extra=fields)
        return True
