"""The kit's mail outbox and worker against a real SMTP server (aiosmtpd, the dev stack's) on a
free port, on SQLite and PostgreSQL: the messages read here are the ones the worker sent."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.mailserver import Mailbox, start_smtp
from services.kit import mail, sql
from services.kit.db import Database
from services.kit.mail import MailSettings, MailWorker, Renderer, SmtpSender, parse_smtp_url
from services.kit.settings import SettingsError
from tests.support import free_port, wait_until

BASE = "https://app.example.test"


@pytest.fixture
async def engine(sql_url: str) -> AsyncIterator[Database]:
    engine = sql.create_engine(sql_url)
    metadata = sa.MetaData()
    mail.outbox_table_in(metadata)
    tables = sa.create_engine(sql.sync_url(sql_url))  # DDL through SQLAlchemy's own sync engine
    try:
        metadata.create_all(tables)
    finally:
        tables.dispose()
    yield engine
    await engine.dispose()


def _renderer() -> Renderer:
    return Renderer(product_name="Acme Notes", public_base_url=BASE + "/", mail_from="Acme <hello@acme.test>")


def _worker(engine: Database, port: int, **kwargs: object) -> MailWorker:
    options: dict[str, object] = {"poll_interval": 60.0, "backoff_base": 0.1, "backoff_max": 0.3, **kwargs}
    return MailWorker(
        engine=engine,
        renderer=_renderer(),
        sender=SmtpSender(parse_smtp_url(f"smtp://127.0.0.1:{port}", timeout=5)),
        **options,  # type: ignore[arg-type]
    )


async def _enqueue(engine: Database, *mails: mail.OutgoingMail) -> list[str]:
    async with engine.begin() as connection:
        return await mail.enqueue_all(connection, list(mails))


async def _rows(engine: Database) -> list[sa.Row[tuple[int, float]]]:
    async with engine.connect() as connection:
        return list(
            (await connection.execute(sa.select(mail.outbox.c.attempts, mail.outbox.c.next_attempt_at))).all()
        )


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def _verify(to: str = "ann@example.com", token: str = "tok-123") -> mail.OutgoingMail:  # noqa: S107
    return mail.verify_email_mail(to=to, username="ann", token=token, ttl_seconds=86400)


async def test_a_mail_goes_out_with_text_and_html_parts_and_the_link(engine: Database) -> None:
    box = Mailbox()
    server = await start_smtp(box, port=(port := free_port()))
    worker = _worker(engine, port)
    await worker.start()
    try:
        started = time.monotonic()
        [mail_id] = await _enqueue(engine, _verify(token="a-token/with+odd=chars"))
        worker.wake()
        [message] = await box.wait_for(1, within=10)
        assert time.monotonic() - started < 5  # woken, not the 60 s poll
    finally:
        await worker.stop()
        server.close()
    assert message["To"] == "ann@example.com"
    assert message["From"] == "Acme <hello@acme.test>"
    assert message["Subject"] == "Confirm your e-mail address for Acme Notes"
    assert message["Message-ID"] == f"<{mail_id}@acme.test>"
    text, html = _parts(message)
    link = f"{BASE}/verify-email?token=a-token%2Fwith%2Bodd%3Dchars"
    assert link in text and "24 hours" in text
    assert f'href="{link}"' in html and "Acme Notes" in html
    assert parse_qs(urlsplit(link).query)["token"] == ["a-token/with+odd=chars"]
    await wait_until(lambda: _empty(engine), timeout=5, what="the outbox to drain")


async def _empty(engine: Database) -> bool:
    return not await _rows(engine)


async def test_the_ehlo_name_is_looked_up_once_not_per_mail(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[str] = []

    def getfqdn(name: str = "") -> str:
        lookups.append(name)
        return "worker-7.pinexa.test"

    monkeypatch.setattr("socket.getfqdn", getfqdn)
    box = Mailbox()
    server = await start_smtp(box, port=(port := free_port()))
    sender = SmtpSender(parse_smtp_url(f"smtp://127.0.0.1:{port}", timeout=5))
    try:
        for n in range(3):
            message = _renderer().render(
                to=f"t{n}@example.com",
                template="password_changed",
                context={"username": "t", "changed_at": "now"},
                message_id=f"m{n}",
            )
            await sender.send(message)
        received = await box.wait_for(3, within=10)
    finally:
        server.close()
    assert sorted(m["To"] for m in received) == ["t0@example.com", "t1@example.com", "t2@example.com"]
    assert len(lookups) == 1


async def test_html_part_escapes_what_the_context_carries(engine: Database) -> None:
    message = _renderer().render(
        to="x@example.com",
        template="email_change_notice",
        context={"username": "<b>eve</b>", "new_email": "a&b@example.com"},
        message_id="m1",
    )
    text, html = _parts(message)
    assert "<b>eve</b>" in text and "&lt;b&gt;eve&lt;/b&gt;" in html and "a&amp;b@example.com" in html


async def test_a_rolled_back_change_sends_nothing(engine: Database) -> None:
    with pytest.raises(RuntimeError):
        async with engine.begin() as connection:
            await mail.enqueue(connection, to="a@example.com", template="verify_email", context={})
            raise RuntimeError("the causing change failed")
    assert await _rows(engine) == []


async def test_an_unknown_template_is_refused_at_enqueue(engine: Database) -> None:
    async with engine.begin() as connection:
        with pytest.raises(ValueError, match="unknown mail template"):
            await mail.enqueue(connection, to="a@example.com", template="nope")


async def test_a_mail_server_outage_loses_nothing(engine: Database) -> None:
    port = free_port()  # nothing listens there yet: the mail server is down
    worker = _worker(engine, port, poll_interval=0.2)
    await worker.start()
    try:
        await _enqueue(engine, _verify("a@example.com"), _verify("b@example.com"))
        worker.wake()

        async def retried() -> bool:
            rows = await _rows(engine)
            return len(rows) == 2 and all(row.attempts >= 2 for row in rows)

        await wait_until(retried, timeout=10, what="failed attempts while the server is down")
        box = Mailbox()
        server = await start_smtp(box, port=port)  # the server comes back; the worker is not restarted
        try:
            messages = await box.wait_for(2, within=10)
            await wait_until(lambda: _empty(engine), timeout=5, what="the outbox to drain")
        finally:
            server.close()
    finally:
        await worker.stop()
    assert sorted(m["To"] for m in messages) == ["a@example.com", "b@example.com"]


_CRASHING_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from services.kit import sql
    from services.kit.mail import MailWorker, Renderer, SmtpSender, parse_smtp_url

    async def main(url, port):
        engine = sql.create_engine(url)
        renderer = Renderer(product_name="P", public_base_url="https://x.test", mail_from="a@x.test")
        sender = SmtpSender(parse_smtp_url(f"smtp://127.0.0.1:{port}", timeout=30))
        worker = MailWorker(engine=engine, renderer=renderer, sender=sender, lease_seconds=1.0)
        await worker.deliver_due()  # killed by the server while it waits for the 250

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


class _KillerMailbox(Mailbox):
    """Kills the sending process after the whole message arrived, before answering 250."""

    victim: subprocess.Popen[bytes] | None = None

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.victim is not None and self.victim.poll() is None:
            os.kill(self.victim.pid, signal.SIGKILL)
            self.victim.wait()
            self.victim = None
        return await super().handle_DATA(server, session, envelope)


async def test_a_worker_killed_after_sending_before_the_ack_causes_at_most_a_repeat(
    engine: Database, sql_url: str
) -> None:
    box = _KillerMailbox()
    server = await start_smtp(box, port=(port := free_port()))
    try:
        [mail_id] = await _enqueue(engine, _verify("c@example.com"))
        victim = box.victim = subprocess.Popen(  # noqa: ASYNC220 (started once, not awaited on)
            [sys.executable, "-c", _CRASHING_WORKER, sql_url, str(port)]
        )
        assert await asyncio.to_thread(victim.wait, 30) == -signal.SIGKILL
        [first] = await box.wait_for(1)
        [row] = await _rows(engine)
        assert row.attempts == 1  # claimed, sent, never acknowledged: still in the outbox
        worker = _worker(engine, port, poll_interval=0.2)
        await worker.start()
        try:
            messages = await box.wait_for(2, within=10)  # once the 1 s lease ran out
            await wait_until(lambda: _empty(engine), timeout=5, what="the outbox to drain")
            await asyncio.sleep(0.5)
        finally:
            await worker.stop()
    finally:
        server.close()
    assert len(box.messages) == 2  # a repeat, never a third
    assert {m["Message-ID"] for m in messages} == {f"<{mail_id}@x.test>", f"<{mail_id}@acme.test>"}
    assert first["To"] == messages[1]["To"] == "c@example.com"


class _StallingMailbox(Mailbox):
    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.started.set()
        await asyncio.sleep(60)
        return "250 late"


async def test_stopping_mid_send_hands_the_mail_back_at_once(engine: Database) -> None:
    box = _StallingMailbox()
    server = await start_smtp(box, port=(port := free_port()))
    worker = _worker(engine, port, lease_seconds=600)
    try:
        await _enqueue(engine, _verify())
        await worker.start()
        worker.wake()
        await asyncio.wait_for(box.started.wait(), 10)
        await worker.stop()
    finally:
        server.close()
    [row] = await _rows(engine)
    assert row.attempts == 1 and row.next_attempt_at <= time.time()  # not leased for 600 s


class _RefusingMailbox(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address.startswith("gone@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def test_a_permanent_refusal_is_dropped_and_the_rest_go_out(engine: Database) -> None:
    box = _RefusingMailbox()
    server = await start_smtp(box, port=(port := free_port()))
    worker = _worker(engine, port)
    await worker.start()
    try:
        await _enqueue(engine, _verify("gone@example.com"), _verify("here@example.com"))
        worker.wake()
        [message] = await box.wait_for(1)
        await wait_until(lambda: _empty(engine), timeout=5, what="the outbox to drain")
    finally:
        await worker.stop()
        server.close()
    assert message["To"] == "here@example.com"


def _self_signed(directory: Path) -> tuple[ssl.SSLContext, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp.pem", directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
async def test_tls_and_login_as_smtp_url_says(tmp_path: Path, scheme: str) -> None:
    """smtp://user:pass@ upgrades with STARTTLS before logging in; smtps:// is TLS from the start.
    The server refuses mail without TLS and a login."""
    context, ca_file = _self_signed(tmp_path)
    box = Mailbox()
    port = free_port()
    server = await start_smtp(
        box, port=port, tls_context=context, implicit_tls=scheme == "smtps", require_auth=True
    )
    try:
        config = parse_smtp_url(f"{scheme}://mailer:p%40ss@127.0.0.1:{port}", ca_file=str(ca_file), timeout=5)
        assert config.password == "p@ss"
        message = _renderer().render(
            to="t@example.com",
            template="password_changed",
            context={"username": "t", "changed_at": "now"},
            message_id="m2",
        )
        await SmtpSender(config).send(message)
        [received] = await box.wait_for(1)
        # Without TLS and a login, the same server takes nothing (the sender would retry).
        if scheme == "smtp":
            with pytest.raises(Exception):  # noqa: B017 (aiosmtplib's refusal, whichever it is)
                await SmtpSender(parse_smtp_url(f"smtp://127.0.0.1:{port}", timeout=5)).send(message)
    finally:
        server.close()
    assert box.logins == ["mailer"]
    assert received["Subject"] == "Your Acme Notes password was changed"


def test_smtp_url_forms() -> None:
    plain = parse_smtp_url("smtp://127.0.0.1:8025")
    assert (plain.host, plain.port, plain.username, plain.start_tls, plain.implicit_tls) == (
        "127.0.0.1",
        8025,
        None,
        None,
        False,
    )
    submission = parse_smtp_url("smtp://u:p@mail.example.com:587")
    assert submission.start_tls is True and submission.username == "u"  # never a password in clear
    implicit = parse_smtp_url("smtps://mail.example.com")
    assert implicit.port == 465 and implicit.implicit_tls
    assert "p" not in repr(parse_smtp_url("smtp://u:secretpw@h:587")).split("password")[0][-3:]
    assert "secretpw" not in repr(parse_smtp_url("smtp://u:secretpw@h:587"))
    for bad in ("http://host", "smtp://", "smtp://host:notaport", "mailto:x@y"):
        with pytest.raises(SettingsError, match="SMTP_URL"):
            parse_smtp_url(bad)


def test_mail_settings() -> None:
    dev = MailSettings.from_env({})
    assert dev.effective_smtp_url == mail.DEV_SMTP_URL
    assert dev.effective_public_base_url == mail.DEV_PUBLIC_BASE_URL
    assert dev.product_name == "Pinexa"
    production = {"PINEXA_ENV": "production", "INTERNAL_TOKEN": "x" * 40}
    assert MailSettings.from_env(production).unset_in_production() == ["SMTP_URL", "PUBLIC_BASE_URL"]
    configured = {
        **production,
        "SMTP_URL": "smtps://u:p@mail.example.com",
        "PUBLIC_BASE_URL": "https://a.test",
    }
    assert MailSettings.from_env(configured).unset_in_production() == []
    assert dev.unset_in_production() == []
    with pytest.raises(SettingsError, match="MAIL_FROM"):
        MailSettings.from_env({"MAIL_FROM": "nobody"})
    with pytest.raises(SettingsError, match="PUBLIC_BASE_URL"):
        MailSettings.from_env({"PUBLIC_BASE_URL": "app.example.com"})
    assert "secretpw" not in repr(MailSettings.from_env({"SMTP_URL": "smtp://u:secretpw@h:587"}))


def test_every_template_renders_both_parts() -> None:
    renderer = _renderer()
    samples = [
        mail.verify_email_mail(to="a@x.test", username="a", token="t", ttl_seconds=3600),
        mail.email_change_notice_mail(to="a@x.test", username="a", new_email="b@x.test"),
        mail.password_reset_mail(to="a@x.test", username="a", token="t", ttl_seconds=1800),
        mail.password_changed_mail(to="a@x.test", username="a", changed_at=0),
        mail.totp_enabled_mail(to="a@x.test", username="a", changed_at=0),
        mail.totp_disabled_mail(to="a@x.test", username="a", changed_at=0, by_admin=True),
        mail.recovery_code_used_mail(to="a@x.test", username="a", used_at=0, codes_left=1),
    ]
    assert sorted(s.template for s in samples) == sorted(mail.TEMPLATES)
    for sample in samples:
        message = renderer.render(
            to=sample.to, template=sample.template, context=sample.context, message_id="m"
        )
        text, html = _parts(message)
        assert text.strip() and "<html" in html
    used = renderer.render(
        to="a@x.test", template="recovery_code_used", context=samples[-1].context, message_id="m"
    )
    assert all("1 unused recovery code remains" in part for part in _parts(used))
    removed = renderer.render(
        to="a@x.test", template="totp_disabled", context=samples[-2].context, message_id="m"
    )
    assert all("An administrator removed" in part for part in _parts(removed))
    reset = renderer.render(
        to="a@x.test", template="password_reset", context=samples[2].context, message_id="m"
    )
    assert f"{BASE}/reset-password?token=t" in _parts(reset)[0] and "30 minutes" in _parts(reset)[0]
    assert mail.duration_text(86400 * 3) == "3 days" and mail.duration_text(60) == "1 minute"
