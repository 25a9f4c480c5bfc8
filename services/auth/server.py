"""Builds the auth service: migrations, signing keys, engine, the users channel and the servicer."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from pinexa.auth.v1 import auth_internal_pb2_grpc, auth_pb2_grpc
from services.auth.config import AuthSettings
from services.auth.domain import FAILURE_MEMORY_SECONDS, AuthDomain, AuthPolicy
from services.auth.keys import KeyRing, load_keys
from services.auth.model import AuthStore
from services.auth.revocations import AuthInternalServicer, RevocationLog
from services.auth.servicer import AuthServicer, CookiePolicy
from services.auth.store import SqlAuthStore
from services.auth.users_client import GrpcUsersClient
from services.kit import metrics, sql
from services.kit.channels import internal_channel
from services.kit.periodic import PeriodicPurge
from services.kit.revocations import RevocationWatcher, RevokedSessions
from services.kit.server import ServiceHost, ServiceSpec
from services.kit.tokens import StaticKeySource, verifier_from_settings

log = logging.getLogger(__name__)

AUTH_SERVICE = "pinexa.auth.v1.AuthService"
INTERNAL_SERVICE = "pinexa.auth.v1.AuthInternalService"
PUBLIC_METHODS = frozenset(
    f"/{AUTH_SERVICE}/{m}"
    for m in ("Login", "LoginMfa", "Refresh", "Logout", "GetJwks", "ConfirmPasswordReset")
)
MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_auth"
PURGE_INTERVAL_SECONDS = 3600.0
# Spent refresh tokens are kept this long past their expiry before they are purged.
TOKEN_RETENTION_SECONDS = 7 * 24 * 3600


async def migrate(settings: AuthSettings) -> None:
    """Apply every pending migration of the auth service (idempotent)."""
    await sql.upgrade(url=settings.sql_url("auth"), script_location=MIGRATIONS, version_table=VERSION_TABLE)


def key_ring(settings: AuthSettings, *, clock: Callable[[], float] = time.time) -> KeyRing:
    """The signing keys from JWT_PRIVATE_KEYS and JWT_KEYS_DIR (a dev key in development)."""
    return load_keys(
        private_keys=settings.jwt_private_keys,
        keys_dir=settings.jwt_keys_dir,
        production=settings.is_production,
        algorithms=settings.jwt_algorithms,
        clock=clock,
    )


def _purge(
    store: AuthStore, clock: Callable[[], float], audit_retention_days: int
) -> Callable[[], Awaitable[int]]:
    """Hourly: long-expired tokens, forgotten failure counters and audit records past retention."""

    async def work() -> int:
        now = clock()
        removed = await store.purge(
            now=now,
            tokens_expired_before=now - TOKEN_RETENTION_SECONDS,
            failures_before=now - FAILURE_MEMORY_SECONDS,
        )
        return removed + await store.audit.purge(before=now - audit_retention_days * 86400)

    return work


async def create_service(
    settings: AuthSettings,
    *,
    users_channel: grpc.aio.Channel | None = None,
    keys: KeyRing | None = None,
    clock: Callable[[], float] = time.time,
) -> ServiceHost:
    """The auth service, ready to `start`.

    Production passes only `settings`: keys come from JWT_PRIVATE_KEYS / JWT_KEYS_DIR, users is
    reached at USERS_ADDRESS. Tests may pass a channel to a users server, a key ring and a clock.
    Auth verifies the access tokens it receives (Logout with all_sessions) against its own
    published keys, with the same verifier every other service uses.
    """
    ring = keys or key_ring(settings, clock=clock)

    async def startup() -> None:
        if settings.auto_migrate:
            await migrate(settings)

    # With the database down now, start anyway (NOT_SERVING) and migrate once it is back.
    startup_work = sql.StartupWork(startup, service="auth")
    await startup_work.run_or_defer()
    owned_channel = users_channel is None
    channel = users_channel or internal_channel(
        settings.users_address, internal_token=settings.internal_token
    )
    engine = sql.engine_from_settings(settings, "auth")
    metrics.sql_database_pool("auth", engine)
    store = SqlAuthStore(engine)
    revocation_log = RevocationLog(store, clock=clock)
    auth = AuthDomain(
        store=store,
        users=GrpcUsersClient(channel),
        keys=ring,
        policy=AuthPolicy.from_settings(settings),
        clock=clock,
        is_outage=sql.is_outage,
        on_revoke=revocation_log.notify,
    )
    verifier = verifier_from_settings(settings, StaticKeySource(ring.jwks))
    # Auth refuses revoked sessions' tokens too, reading its own log in-process.
    verifier.watch_revocations(RevocationWatcher(revocation_log, RevokedSessions(), component="auth"))
    servicer = AuthServicer(
        auth,
        cookies=CookiePolicy(
            secure=settings.environment != "development", max_age_seconds=settings.refresh_token_ttl_seconds
        ),
    )
    internal_servicer = AuthInternalServicer(
        revocation_log, store.audit, translate_error=startup_work.translate_error
    )
    purger = PeriodicPurge(
        _purge(store, clock, settings.audit_retention_days),
        interval=PURGE_INTERVAL_SECONDS,
        what="expired auth rows",
        ready=startup_work.ensure,
    )

    def register(server: grpc.aio.Server) -> None:
        auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server)
        auth_internal_pb2_grpc.add_AuthInternalServiceServicer_to_server(internal_servicer, server)

    async def readiness() -> None:
        await startup_work.ensure()
        await sql.ping(engine)

    async def close() -> None:
        await startup_work.close()
        await purger.stop()
        if owned_channel:
            await channel.close()
        await engine.dispose()

    spec = ServiceSpec(
        name="auth",
        register=register,
        service_names=[AUTH_SERVICE, INTERNAL_SERVICE],
        public_methods=PUBLIC_METHODS,
        internal_services=frozenset({INTERNAL_SERVICE}),
        readiness=readiness,
        translate_error=startup_work.translate_error,
        on_start=[purger.start],
        on_stop=[close],
    )
    return ServiceHost(spec, settings=settings, verifier=verifier)
