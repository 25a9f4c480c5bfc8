"""Builds the users service: engine, migrations, admin bootstrap, servicers and the outbox worker."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import grpc

from pinexa.users.v1 import users_internal_pb2_grpc, users_pb2_grpc
from services.kit import metrics, sql
from services.kit.audit import AuditSource
from services.kit.audit_grpc import GrpcAuditSource
from services.kit.channels import internal_channel, verifier_from_auth
from services.kit.mail import MailWorker
from services.kit.outage import OutageLog
from services.kit.periodic import PeriodicPurge
from services.kit.server import ServiceHost, ServiceSpec
from services.kit.tokens import TokenVerifier
from services.users.config import UsersSettings
from services.users.crypto import cipher_from_settings
from services.users.domain import MailPolicy, UsersDomain, utc_now
from services.users.outbox import PurgeOutbox
from services.users.passwords import Passwords
from services.users.servicer import UserServicer, UsersInternalServicer
from services.users.store import SqlUserStore

log = logging.getLogger(__name__)

USER_SERVICE = "pinexa.users.v1.UserService"
INTERNAL_SERVICE = "pinexa.users.v1.UsersInternalService"
MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_users"
AUDIT_PURGE_INTERVAL_SECONDS = 3600.0
# What a caller reaches without a token: sign-up, confirming an address from its mail link, and
# asking for a password reset mail.
PUBLIC_METHODS = frozenset(
    f"/{USER_SERVICE}/{m}" for m in ("CreateUser", "VerifyEmail", "RequestPasswordReset")
)


async def migrate(settings: UsersSettings) -> None:
    """Apply every pending migration of the users service (idempotent)."""
    await sql.upgrade(url=settings.sql_url("users"), script_location=MIGRATIONS, version_table=VERSION_TABLE)


async def reencrypt(settings: UsersSettings) -> int:
    """Rewrite personal data under the newest PII key (after prepending one to rotate).
    Returns how many accounts were rewritten."""
    cipher = cipher_from_settings(settings)
    engine = sql.engine_from_settings(settings, "users", pool_size=2)
    try:
        store = SqlUserStore(engine, cipher)
        total = 0
        for _ in range(5):
            rewritten, skipped = await store.reencrypt()
            total += rewritten
            if not skipped:
                return total
        raise RuntimeError("accounts kept changing during re-encryption; run it again")
    finally:
        await engine.dispose()


async def create_service(
    settings: UsersSettings,
    *,
    verifier: TokenVerifier | None = None,
    data_channel: grpc.aio.Channel | None = None,
    audit_peers: Sequence[AuditSource] | None = None,
    passwords: Passwords | None = None,
    outbox_poll_interval: float = 5.0,
    outbox_backoff: tuple[float, float] = (0.5, 60.0),
    mail_backoff: tuple[float, float] = (1.0, 300.0),
    clock: Callable[[], datetime] = utc_now,
) -> ServiceHost:
    """The users service, ready to `start`.

    Production passes only `settings`: the token verifier fetches auth's JWKS, and the outbox
    reaches the data service at DATA_ADDRESS, and the audit trail lists auth's records over the
    same channel to auth as the verifier. Tests pass a test verifier, a channel to a stand-in data
    service, their own source of auth's audit records, a cheaper password hasher, a faster outbox
    and a clock they move (the domain's: TOTP steps, step-up ages, token lifetimes).
    """
    # aiosqlite logs every statement with its parameters (password hashes included) at DEBUG;
    # keep it quiet even when LOG_LEVEL=DEBUG. (SQLAlchemy's own logger defaults to WARNING.)
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    cipher = cipher_from_settings(settings)  # first: production refuses to start without a key
    owned_channels: list[grpc.aio.Channel] = []
    auth_channel: grpc.aio.Channel | None = None
    if verifier is None:
        verifier, auth_channel = verifier_from_auth(settings, settings.auth_address)
        owned_channels.append(auth_channel)
    if audit_peers is None:  # auth's audit records, listed with users' own
        if auth_channel is None:
            auth_channel = internal_channel(settings.auth_address, internal_token=settings.internal_token)
            owned_channels.append(auth_channel)
        audit_peers = [GrpcAuditSource(auth_channel)]
    if data_channel is None:
        data_channel = internal_channel(settings.data_address, internal_token=settings.internal_token)
        owned_channels.append(data_channel)
    passwords = passwords or Passwords()

    engine = sql.engine_from_settings(settings, "users")
    metrics.sql_database_pool("users", engine)
    try:
        store = SqlUserStore(engine, cipher)
        # The health monitor and the outbox share one record of the database's state, so an
        # outage is one "down" line and one "up" line, whichever notices first.
        database = OutageLog(
            logging.getLogger("services.kit.server"), component="users", dependency="database"
        )
        outbox = PurgeOutbox(
            store=store,
            channel=data_channel,
            poll_interval=outbox_poll_interval,
            backoff_base=outbox_backoff[0],
            backoff_max=outbox_backoff[1],
            database_outage=database,
        )
        mailer = MailWorker.from_settings(
            settings,
            engine=engine,
            sealer=cipher,
            component="users mail outbox",
            poll_interval=outbox_poll_interval,
            backoff_base=mail_backoff[0],
            backoff_max=mail_backoff[1],
            database_outage=database,
        )
        domain = UsersDomain(
            store=store,
            passwords=passwords,
            on_delete=outbox.wake,
            on_mail=mailer.wake,
            mail_policy=MailPolicy(
                verification_ttl=settings.email_verification_ttl_seconds,
                reset_ttl=settings.password_reset_ttl_seconds,
                per_address=settings.mail_limit_per_address,
                per_client=settings.mail_limit_per_client,
                window=settings.mail_limit_window_seconds,
            ),
            audit_peers=audit_peers,
            step_up_max_age=settings.step_up_max_age_seconds,
            totp_issuer=settings.product_name,
            clock=clock,
        )
        await passwords.warm_up()

        async def startup() -> None:
            if settings.auto_migrate:
                await migrate(settings)
            if settings.admin_username:
                await domain.ensure_admin(
                    username=settings.admin_username,
                    email=settings.admin_email,
                    password=settings.admin_password,
                )

        # With the database down now, start anyway (NOT_SERVING) and do this once it is back.
        startup_work = sql.StartupWork(startup, service="users")
        await startup_work.run_or_defer()
        retention = PeriodicPurge(
            lambda: store.audit.purge(before=clock().timestamp() - settings.audit_retention_days * 86400),
            interval=AUDIT_PURGE_INTERVAL_SECONDS,
            what="audit records past AUDIT_RETENTION_DAYS",
            ready=startup_work.ensure,
        )
    except Exception:
        await engine.dispose()
        for channel in owned_channels:
            await channel.close()
        passwords.close()
        raise

    users_servicer = UserServicer(domain)
    internal_servicer = UsersInternalServicer(domain)

    def register(server: grpc.aio.Server) -> None:
        users_pb2_grpc.add_UserServiceServicer_to_server(users_servicer, server)
        users_internal_pb2_grpc.add_UsersInternalServiceServicer_to_server(internal_servicer, server)

    async def readiness() -> None:
        await startup_work.ensure()
        await outbox.start()  # once the tables exist; idempotent
        await mailer.start()
        await sql.ping(engine)

    async def close() -> None:
        await startup_work.close()
        await retention.stop()
        await outbox.stop()
        await mailer.stop()
        for channel in owned_channels:
            await channel.close()
        await engine.dispose()
        passwords.close()

    spec = ServiceSpec(
        name="users",
        register=register,
        service_names=[USER_SERVICE, INTERNAL_SERVICE],
        public_methods=PUBLIC_METHODS,
        internal_services=frozenset({INTERNAL_SERVICE}),
        readiness=readiness,
        translate_error=startup_work.translate_error,
        outage=database,
        on_start=[retention.start],
        on_stop=[close],
    )
    return ServiceHost(spec, settings=settings, verifier=verifier)
