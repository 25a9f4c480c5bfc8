"""MongoDB going away and coming back: health follows it, requests fail fast with UNAVAILABLE, and
the service recovers by itself with the data intact.

These tests stop and restart the database, so they always run an nx-27017 of their own (a
MONGODB_URL server is not ours to stop).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from pymongo import AsyncMongoClient

from pinexa.data.v1 import data_internal_pb2, data_pb2
from services.data.server import DATA_SERVICE, create_service
from services.data.store import connect
from tests.data.harness import DataClient, data_settings
from tests.data.mongo import NxServer
from tests.support import TestKeys, error_info, health_status, rpc_error, wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def nx(tmp_path: Path) -> AsyncIterator[NxServer]:
    server = NxServer(tmp_path / "nx")
    yield server
    await server.stop_async()


@pytest.fixture
async def client(nx: NxServer) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    mongo = connect(nx.url)  # the production client settings: short timeouts
    yield mongo
    await mongo.close()


async def start_data(mongo: AsyncMongoClient[dict[str, Any]], keys: TestKeys) -> DataClient:
    host = await create_service(data_settings("pinexa_faults"), verifier=keys.verifier(), mongo_client=mongo)
    await host.start("127.0.0.1:0")
    return DataClient(host, keys, "pinexa_faults")


async def stop_data(data: DataClient) -> None:
    await data.channel.close()
    await data.host.stop(grace=1, drain=0)


async def wait_health(data: DataClient, status: int, timeout: float = 15.0) -> None:
    async def reached() -> bool:
        return await health_status(data.address, DATA_SERVICE) == status

    await wait_until(reached, timeout=timeout, what=f"health {status}")


async def assert_unavailable(call: Any) -> None:
    started = time.monotonic()
    error = await rpc_error(call, grpc.StatusCode.UNAVAILABLE)
    assert time.monotonic() - started < 4.0, "fails fast, within the short server-selection timeout"
    assert error_info(error).reason == "DATA_STORE_UNAVAILABLE"  # type: ignore[union-attr]


async def test_mongodb_down_then_back(
    nx: NxServer,
    client: AsyncMongoClient[dict[str, Any]],
    test_keys: TestKeys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    await nx.start_async()
    data = await start_data(client, test_keys)
    try:
        await wait_health(data, SERVING)
        item = await data.create("u1", "survivor", content="kept across restarts", attributes={"k": 1})

        await nx.stop_async()
        await wait_health(data, NOT_SERVING)
        assert await health_status(data.address) == NOT_SERVING
        await asyncio.gather(
            assert_unavailable(data.get("u1", item.id)),
            assert_unavailable(data.create("u1", "lost?")),
            assert_unavailable(data.list("u1")),
            assert_unavailable(data.update("u1", data_pb2.Item(id=item.id, title="lost?"), mask=["title"])),
            assert_unavailable(
                data.data.DeleteItem(data_pb2.DeleteItemRequest(id=item.id), metadata=data.auth("u1"))
            ),
            assert_unavailable(
                data.internal.PurgeUserData(
                    data_internal_pb2.PurgeUserDataRequest(user_id="u1"), metadata=data.internal_auth()
                )
            ),
        )

        # Same port, same data file; no restart of the data service.
        await nx.start_async()
        await wait_health(data, SERVING)
        assert await data.get("u1", item.id) == item
        assert [i.id for i in (await data.list("u1", query="restarts")).items] == [item.id]
        # The create attempted during the outage left nothing behind.
        assert [i.title for i in (await data.list("u1")).items] == ["survivor"]
        updated = await data.update("u1", data_pb2.Item(id=item.id, title="still here"), mask=["title"])
        assert updated.title == "still here"
        # One line when MongoDB went away and one when it came back (the same mechanism as the
        # SQL services'), and no traceback for any of the refused requests.
        events = [
            getattr(r, "outage", None) for r in caplog.records if getattr(r, "dependency", None) == "MongoDB"
        ]
        assert events == ["down", "up"]
        assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
    finally:
        await stop_data(data)


async def test_starts_while_mongodb_is_down_and_catches_up(
    nx: NxServer, client: AsyncMongoClient[dict[str, Any]], test_keys: TestKeys
) -> None:
    data = await start_data(client, test_keys)  # nothing listens on nx.port yet
    try:
        assert await health_status(data.address, DATA_SERVICE) == NOT_SERVING
        await assert_unavailable(data.list("u1"))

        await nx.start_async()
        await wait_health(data, SERVING)
        # The indexes were created once MongoDB answered: full-text search works.
        item = await data.create("u1", "late start", content="indexes arrive late")
        assert [i.id for i in (await data.list("u1", query="arrive")).items] == [item.id]
    finally:
        await stop_data(data)
