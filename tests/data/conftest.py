"""Fixtures for the data-store suite: one suite, two servers.

`mongo_url` is MONGODB_URL when it is set (a real MongoDB), otherwise `nx_url`: an nx-27017 this
session starts on a free port with its own files and stops by PID at the end. Each test gets a database
of its own, dropped afterwards, and a real data ServiceHost on port 0 to call over gRPC.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.data.server import create_service
from services.data.store import connect
from tests.data.harness import DataClient, data_settings
from tests.data.mongo import NxServer
from tests.support import TestKeys


@pytest.fixture(scope="session")
def nx_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An nx-27017 of this session, started on first use (the conformance suite always runs it)."""
    server = NxServer(tmp_path_factory.mktemp("nx-27017"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mongo_url(request: pytest.FixtureRequest) -> str:
    url = os.environ.get("MONGODB_URL", "").strip()
    return url or str(request.getfixturevalue("nx_url"))


@pytest.fixture(scope="session")
async def mongo_client(mongo_url: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client = connect(mongo_url)
    yield client
    await client.close()


@pytest.fixture(scope="session")
async def is_nx(mongo_client: AsyncMongoClient[dict[str, Any]]) -> bool:
    """True when the server is nx-27017 rather than MongoDB, for the documented differences."""
    info = await mongo_client.admin.command("buildInfo")
    return bool(info.get("process") == "nx_27017")


@pytest.fixture
async def database(mongo_client: AsyncMongoClient[dict[str, Any]]) -> AsyncIterator[str]:
    name = f"pinexa_test_{uuid.uuid4().hex[:12]}"
    yield name
    await mongo_client.drop_database(name)


@pytest.fixture
async def data(
    mongo_client: AsyncMongoClient[dict[str, Any]], database: str, test_keys: TestKeys
) -> AsyncIterator[DataClient]:
    host = await create_service(
        data_settings(database), verifier=test_keys.verifier(), mongo_client=mongo_client
    )
    await host.start("127.0.0.1:0")
    client = DataClient(host, test_keys, database)
    yield client
    await client.channel.close()
    await host.stop(grace=1, drain=0)


@pytest.fixture
def user_a() -> str:
    return f"user-a-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def user_b() -> str:
    return f"user-b-{uuid.uuid4().hex[:8]}"
