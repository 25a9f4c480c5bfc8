"""Fixtures of the auth suite: the real auth and users services on free ports, over real channels.

Everything runs for real: both gRPC servers (kit interceptor, health, error mapping), the users
database and auth's own (`sql_url`: a SQLite file, then a throwaway PostgreSQL database), argon2,
the JWT signing and the JWKS fetch. Users verifies access tokens against auth's JWKS over gRPC,
as in production. What differs, on purpose:
- argon2 runs with the cheapest parameters (one test raises them to measure timing);
- the data service is a stand-in that accepts PurgeUserData (the real one has its own suite);
- auth's and users' clock is one `FakeClock` the tests move, so grace windows, back-offs and
  TOTP steps need no sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from argon2 import PasswordHasher

from devstack.mailserver import Mailbox, start_smtp
from pinexa.auth.v1 import auth_pb2, auth_pb2_grpc
from pinexa.data.v1 import data_internal_pb2, data_internal_pb2_grpc
from pinexa.users.v1 import users_pb2, users_pb2_grpc
from services.auth.config import AuthSettings
from services.auth.keys import KeyRing
from services.auth.server import create_service as create_auth
from services.kit.audit import AuditEvent, AuditQuery
from services.kit.audit_grpc import GrpcAuditSource
from services.kit.channels import internal_channel
from services.kit.revocations import Batch, GrpcRevocationSource, RevocationWatcher, RevokedSessions
from services.kit.server import ServiceHost
from services.kit.tokens import CallableKeySource, Jwk, TokenVerifier, auth_key_source
from services.users.config import UsersSettings
from services.users.passwords import Passwords
from services.users.server import create_service as create_users
from tests.support import FakeClock, bearer, free_port

# Test-only argon2id parameters: correct hashes, a fraction of a millisecond each.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
PASSWORD = "correct horse battery"


class StandInData(data_internal_pb2_grpc.DataInternalServiceServicer):
    """Accepts the purge users sends when an account is deleted."""

    async def PurgeUserData(
        self, request: data_internal_pb2.PurgeUserDataRequest, context: Any
    ) -> data_internal_pb2.PurgeUserDataResponse:
        return data_internal_pb2.PurgeUserDataResponse(deleted_count=0)


@dataclass
class Stack:
    """Running auth and users services, and clients for both."""

    auth_host: ServiceHost
    users_host: ServiceHost
    settings: AuthSettings
    users_settings: UsersSettings
    clock: FakeClock
    auth_channel: grpc.aio.Channel
    users_channel: grpc.aio.Channel
    auth: auth_pb2_grpc.AuthServiceStub
    users: users_pb2_grpc.UserServiceStub
    jwks_from: dict[str, grpc.aio.Channel]
    """jwks_from["auth"] is the channel users fetches auth's JWKS and follows its revocations
    over; a test may repoint it."""
    mailbox: Mailbox
    """What users mailed, as a real SMTP server (aiosmtpd, on a free port) received it."""

    @property
    def auth_address(self) -> str:
        return f"127.0.0.1:{self.auth_host.port}"

    @property
    def users_address(self) -> str:
        return f"127.0.0.1:{self.users_host.port}"

    async def sign_up(self, username: str | None = None, password: str = PASSWORD) -> users_pb2.User:
        username = username or f"u{uuid.uuid4().hex[:12]}"
        return await self.users.CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(username=username, email=f"{username}@example.com", password=password)
            )
        )

    async def login(
        self,
        username: str,
        password: str = PASSWORD,
        *,
        metadata: Sequence[tuple[str, str]] = (),
        device_token: str = "",
    ) -> auth_pb2.LoginResponse:
        request = auth_pb2.LoginRequest(username=username, password=password)
        if device_token:
            request.device_token = device_token
        return await self.auth.Login(request, metadata=tuple(metadata))

    async def refresh(self, refresh_token: str) -> auth_pb2.RefreshResponse:
        return await self.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=refresh_token))

    async def me(self, access_token: str) -> users_pb2.User:
        return await self.users.GetMe(users_pb2.GetMeRequest(), metadata=bearer(access_token))


StartStack = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def start_stack(sql_url: str, tmp_path: Path) -> AsyncIterator[StartStack]:
    """Starts users + auth on `sql_url`; keyword arguments override fields of AuthSettings or
    UsersSettings (each service gets the ones its class has; a name in neither is an error)."""
    cleanup: list[Callable[[], Awaitable[None]]] = []
    mailbox = Mailbox()
    smtp_port = free_port()
    smtp = await start_smtp(mailbox, port=smtp_port)

    async def start(
        *, keys: KeyRing | None = None, hasher: PasswordHasher = FAST_HASHER, **overrides: Any
    ) -> Stack:
        values: dict[str, Any] = {
            "database_url": sql_url,
            "data_dir": tmp_path,
            "jwt_keys_dir": tmp_path / "keys",
            "health_check_interval_seconds": 0.2,
            "shutdown_grace_seconds": 1,
            "shutdown_drain_seconds": 0,
            "smtp_url": f"smtp://127.0.0.1:{smtp_port}",
            **overrides,
        }
        auth_fields = {f.name for f in dataclasses.fields(AuthSettings)}
        users_fields = {f.name for f in dataclasses.fields(UsersSettings)}
        unknown = set(values) - auth_fields - users_fields
        assert not unknown, f"no service has the settings {sorted(unknown)}"
        settings = AuthSettings(**{k: v for k, v in values.items() if k in auth_fields})
        users_settings = UsersSettings(**{k: v for k, v in values.items() if k in users_fields})
        clock = FakeClock()

        data_server = grpc.aio.server()
        data_internal_pb2_grpc.add_DataInternalServiceServicer_to_server(StandInData(), data_server)
        data_port = data_server.add_insecure_port("127.0.0.1:0")
        await data_server.start()
        cleanup.append(lambda: data_server.stop(0))
        data_channel = grpc.aio.insecure_channel(f"127.0.0.1:{data_port}")
        cleanup.append(data_channel.close)

        # Users verifies tokens against auth's JWKS over gRPC; auth's port is known only once it
        # has started, so the key source looks the channel up when it first fetches.
        channels: dict[str, grpc.aio.Channel] = {}

        async def fetch_jwks() -> Sequence[Jwk]:
            return await auth_key_source(channels["auth"]).fetch()

        # The production verifier, except that an unknown kid may refetch at once instead of
        # after 5 s, so rotation tests need no sleep.
        verifier = TokenVerifier(
            CallableKeySource(fetch_jwks),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            algorithms=settings.jwt_algorithms,
            leeway_seconds=settings.jwt_leeway_seconds,
            max_lifetime_seconds=settings.access_token_ttl_seconds,
            min_refresh_interval=0.0,
        )

        # Users follows auth's revocation stream as in production (verifier_from_auth), over
        # whatever channel channels["auth"] is when it (re)connects. Users starts first, so its
        # watcher waits for auth's channel (production has the channel from the start, and the
        # stream fails with UNAVAILABLE until auth answers) rather than failing with a KeyError.
        auth_known = asyncio.Event()

        class Revocations:
            async def watch(self, after: int) -> AsyncGenerator[Batch, None]:
                await auth_known.wait()
                async with contextlib.aclosing(
                    GrpcRevocationSource(channels["auth"]).watch(after)
                ) as batches:
                    async for batch in batches:
                        yield batch

        verifier.watch_revocations(RevocationWatcher(Revocations(), RevokedSessions()))

        # Users lists auth's audit records as in production (GrpcAuditSource), over the same channel.
        class AuthAudit:
            async def list(self, query: AuditQuery) -> list[AuditEvent]:
                return await GrpcAuditSource(channels["auth"]).list(query)

        users_host = await create_users(
            users_settings,
            verifier=verifier,
            audit_peers=[AuthAudit()],
            data_channel=data_channel,
            passwords=Passwords(hasher),
            outbox_poll_interval=0.5,
            outbox_backoff=(0.05, 0.3),
            clock=clock.utc,
        )
        await users_host.start("127.0.0.1:0")
        cleanup.append(lambda: users_host.stop(grace=1, drain=0))
        # The kit's internal channel, as production builds it: it forwards the request id, the
        # client's address and the acting user (what users' audit records hold).
        users_channel = internal_channel(f"127.0.0.1:{users_host.port}")
        cleanup.append(users_channel.close)
        # The tests' own calls to users go over a plain channel, as an outside client's would: the
        # internal one retries UNAVAILABLE, which would hide the answer a fault test checks.
        users_client_channel = grpc.aio.insecure_channel(f"127.0.0.1:{users_host.port}")
        cleanup.append(users_client_channel.close)

        auth_host = await create_auth(settings, users_channel=users_channel, keys=keys, clock=clock)
        await auth_host.start("127.0.0.1:0")
        cleanup.append(lambda: auth_host.stop(grace=1, drain=0))
        auth_channel = grpc.aio.insecure_channel(f"127.0.0.1:{auth_host.port}")
        channels["auth"] = auth_channel
        auth_known.set()
        cleanup.append(auth_channel.close)
        # Users' revocation watcher stops before that channel closes (as in production, where
        # the host stops it before its channels close): no call is ever made on a closed channel.
        cleanup.append(verifier.stop)

        return Stack(
            auth_host=auth_host,
            users_host=users_host,
            settings=settings,
            users_settings=users_settings,
            clock=clock,
            auth_channel=auth_channel,
            users_channel=users_channel,
            auth=auth_pb2_grpc.AuthServiceStub(auth_channel),
            users=users_pb2_grpc.UserServiceStub(users_client_channel),
            jwks_from=channels,
            mailbox=mailbox,
        )

    yield start
    for step in reversed(cleanup):
        await step()
    smtp.close()


@pytest.fixture
async def stack(start_stack: StartStack) -> Stack:
    return await start_stack()
