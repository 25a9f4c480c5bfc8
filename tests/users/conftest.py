"""Fixtures of the users suite: the real users service on a free port, over a real channel.

The database is real too (`sql_url`: a SQLite file, then a throwaway PostgreSQL database). Two
things are not the production ones, on purpose:
- argon2 runs with the cheapest parameters, passed explicitly to `create_service`, so the suite
  stays fast; production uses argon2-cffi's defaults.
- the data service is a stand-in gRPC server (the real one is another service with its own
  suite); it records which users it was asked to purge.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from argon2 import PasswordHasher

from devstack.mailserver import Mailbox, start_smtp
from pinexa.data.v1 import data_internal_pb2, data_internal_pb2_grpc
from pinexa.users.v1 import users_internal_pb2_grpc, users_pb2, users_pb2_grpc
from services.kit.server import ServiceHost
from services.users.config import UsersSettings
from services.users.passwords import Passwords
from services.users.server import create_service
from tests.support import TestKeys, bearer, free_port

# Test-only argon2id parameters: correct hashes, a fraction of a millisecond each.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)

PASSWORD = "correct horse battery"


class StandInData(data_internal_pb2_grpc.DataInternalServiceServicer):
    """A stand-in for the data service's internal API: records purges, can be started late."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.purged: list[str] = []
        self.received: list[str] = []  # every purge request, answered or not
        self.answer = asyncio.Event()  # clear it to make calls hang (a stalled data service)
        self.answer.set()
        self._server: grpc.aio.Server | None = None

    async def PurgeUserData(
        self, request: data_internal_pb2.PurgeUserDataRequest, context: Any
    ) -> data_internal_pb2.PurgeUserDataResponse:
        self.received.append(request.user_id)
        await self.answer.wait()
        self.purged.append(request.user_id)
        return data_internal_pb2.PurgeUserDataResponse(deleted_count=3)

    async def start(self) -> None:
        self._server = grpc.aio.server()
        data_internal_pb2_grpc.add_DataInternalServiceServicer_to_server(self, self._server)
        self._server.add_insecure_port(self.address)
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None


@dataclass
class Users:
    """A running users service and clients for it."""

    host: ServiceHost
    settings: UsersSettings
    url: str
    keys: TestKeys
    data: StandInData
    data_channel: grpc.aio.Channel
    channel: grpc.aio.Channel
    stub: users_pb2_grpc.UserServiceStub
    internal: users_internal_pb2_grpc.UsersInternalServiceStub
    mailbox: Mailbox
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.host.port}"

    def auth(self, user: users_pb2.User | str, role: str | None = None) -> tuple[tuple[str, str], ...]:
        """Bearer metadata for `user` (a User or an id), with its role unless one is given."""
        if isinstance(user, users_pb2.User):
            user_id = user.id
            role = role or ("admin" if user.role == users_pb2.User.ADMIN else "user")
        else:
            user_id = user
        return bearer(self.keys.mint(user_id, role or "user"))

    def admin(self) -> tuple[tuple[str, str], ...]:
        """A token of an admin that has no account (admins need none to act)."""
        return bearer(self.keys.mint(str(uuid.uuid4()), "admin"))

    async def sign_up(self, username: str | None = None, **fields: Any) -> users_pb2.User:
        username = username or f"u{uuid.uuid4().hex[:12]}"
        values = {"email": f"{username}@example.com", "password": PASSWORD, **fields}
        return await self.stub.CreateUser(
            users_pb2.CreateUserRequest(user=users_pb2.User(username=username, **values))
        )


StartUsers = Callable[..., Awaitable[Users]]


@pytest.fixture
async def start_users(sql_url: str, tmp_path: Path, test_keys: TestKeys) -> AsyncIterator[StartUsers]:
    """Starts users services on `sql_url` (several may share it, like replicas), sending mail to
    a real SMTP server (the dev stack's aiosmtpd) on a free port: `users.mailbox` has the mail."""
    running: list[Users] = []
    data_servers: list[StandInData] = []
    mailbox = Mailbox()
    smtp_port = free_port()
    smtp = await start_smtp(mailbox, port=smtp_port)

    async def start(
        *,
        data: StandInData | None = None,
        start_data: bool = True,
        passwords: Passwords | None = None,
        outbox_poll_interval: float = 0.5,
        clock: Callable[[], datetime] | None = None,
        **overrides: Any,
    ) -> Users:
        if data is None:
            data = StandInData()
            if start_data:
                await data.start()
            data_servers.append(data)
        settings = UsersSettings(
            database_url=sql_url,
            data_dir=tmp_path,
            health_check_interval_seconds=0.2,
            shutdown_grace_seconds=1,
            shutdown_drain_seconds=0,
            **{"smtp_url": f"smtp://127.0.0.1:{smtp_port}", **overrides},
        )
        data_channel = grpc.aio.insecure_channel(data.address)
        host = await create_service(
            settings,
            verifier=test_keys.verifier(),
            data_channel=data_channel,
            passwords=passwords or Passwords(FAST_HASHER),
            outbox_poll_interval=outbox_poll_interval,
            outbox_backoff=(0.05, 0.3),
            **({} if clock is None else {"clock": clock}),
        )
        await host.start("127.0.0.1:0")
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
        users = Users(
            host=host,
            settings=settings,
            url=sql_url,
            keys=test_keys,
            data=data,
            data_channel=data_channel,
            channel=channel,
            stub=users_pb2_grpc.UserServiceStub(channel),
            internal=users_internal_pb2_grpc.UsersInternalServiceStub(channel),
            mailbox=mailbox,
        )
        running.append(users)
        return users

    yield start
    for users in running:
        await users.channel.close()
        await users.host.stop(grace=1, drain=0)
        await users.data_channel.close()
    for data in data_servers:
        await data.stop()
    smtp.close()


@pytest.fixture
async def users(start_users: StartUsers) -> Users:
    return await start_users()
