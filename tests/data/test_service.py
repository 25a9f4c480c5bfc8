"""The internal purge RPC, start-up (indexes, settings), health and reflection of the data service."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pymongo import AsyncMongoClient

from pinexa.data.v1 import data_internal_pb2, data_pb2
from services.data.config import DataSettings
from services.data.server import COLLECTION, DATA_INTERNAL_SERVICE, DATA_SERVICE, create_service
from services.data.store import MongoItemStore
from services.kit.settings import SettingsError
from tests.data.harness import DataClient, data_settings
from tests.support import TestKeys, error_info, free_port, health_status, rpc_error, wait_serving

Purge = data_internal_pb2.PurgeUserDataRequest


async def test_purge_removes_all_of_a_users_items_and_is_idempotent(
    data: DataClient, user_a: str, user_b: str
) -> None:
    for n in range(7):
        await data.create(user_a, f"a{n}")
    kept = await data.create(user_b, "b")
    purge = data.internal.PurgeUserData
    first = await purge(Purge(user_id=user_a), metadata=data.internal_auth())
    assert first.deleted_count == 7
    again = await purge(Purge(user_id=user_a), metadata=data.internal_auth())
    assert again.deleted_count == 0
    assert (await data.list(user_a)).items == []
    assert [i.id for i in (await data.list(user_b)).items] == [kept.id]
    never = await purge(Purge(user_id="never-had-items"), metadata=data.internal_auth())
    assert never.deleted_count == 0


async def test_a_deleted_users_token_creates_nothing_after_the_purge(
    data: DataClient, user_a: str, user_b: str
) -> None:
    """An access token stays valid until it expires, after its account is deleted and purged; an
    item it created then would be orphaned for good. CreateItem refuses it and keeps nothing.
    (The purge's mark is an upsert whose replacement repeats the filter's _id: nx-27017 0.8.1
    would otherwise give it a new ObjectId, where MongoDB takes the filter's _id.)"""
    token = data.auth(user_a)  # minted before the deletion, still unexpired
    await data.create(user_a, "before")
    purged = await data.internal.PurgeUserData(Purge(user_id=user_a), metadata=data.internal_auth())
    assert purged.deleted_count == 1
    error = await rpc_error(
        data.data.CreateItem(data_pb2.CreateItemRequest(item=data_pb2.Item(title="after")), metadata=token),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert error_info(error).reason == "ACCOUNT_DELETED"  # type: ignore[union-attr]
    assert (await data.list("root", role="admin", filter=f'user_id = "{user_a}"')).items == []
    # Other users are unaffected, and the purge stays idempotent.
    assert (await data.create(user_b, "still fine")).user_id == user_b
    again = await data.internal.PurgeUserData(Purge(user_id=user_a), metadata=data.internal_auth())
    assert again.deleted_count == 0


async def test_creates_racing_a_purge_leave_no_orphans(data: DataClient, user_a: str) -> None:
    creates = [data.create(user_a, f"racing {n}") for n in range(30)]
    purge = data.internal.PurgeUserData(Purge(user_id=user_a), metadata=data.internal_auth())
    results = await asyncio.gather(*creates[:15], purge, *creates[15:], return_exceptions=True)
    for result in results:
        if isinstance(result, grpc.aio.AioRpcError):
            assert result.code() == grpc.StatusCode.UNAUTHENTICATED, result
    assert (await data.list("root", role="admin", filter=f'user_id = "{user_a}"')).items == []


async def test_purge_needs_the_internal_token(data: DataClient, user_a: str) -> None:
    await data.create(user_a, "keep me")
    purge = data.internal.PurgeUserData
    for metadata in [
        (),
        (("x-pinexa-internal-token", "wrong"),),
        data.auth(user_a),
        data.auth("root", "admin"),
    ]:
        error = await rpc_error(
            purge(Purge(user_id=user_a), metadata=metadata), grpc.StatusCode.UNAUTHENTICATED
        )
        assert error_info(error).reason == "INTERNAL_ONLY"  # type: ignore[union-attr]
    assert len((await data.list(user_a)).items) == 1


async def test_purge_needs_a_user_id(data: DataClient) -> None:
    await rpc_error(
        data.internal.PurgeUserData(Purge(user_id=" "), metadata=data.internal_auth()),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_health_and_reflection(data: DataClient) -> None:
    serving = health_pb2.HealthCheckResponse.SERVING
    for service in ("", DATA_SERVICE, DATA_INTERNAL_SERVICE):
        assert await health_status(data.address, service) == serving
    stub = reflection_pb2_grpc.ServerReflectionStub(data.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name async for r in responses for s in r.list_services_response.service}
    assert {DATA_SERVICE, DATA_INTERNAL_SERVICE} <= names


async def test_indexes_exist(
    data: DataClient, mongo_client: AsyncMongoClient[dict[str, Any]], is_nx: bool
) -> None:
    collection = mongo_client[data.database][COLLECTION]
    # Creating them again is a no-op.
    await MongoItemStore(collection).ensure_indexes()
    info = await collection.index_information()
    keys = [list(spec["key"]) for spec in info.values()]
    if is_nx:
        # nx-27017 0.8.1 reports its own index names and keys without directions, hides the text
        # index, and breaks writes when an index includes _id, so the list indexes lack the _id
        # tie-breaker there (see store.ensure_indexes).
        fields = [[name for name, _ in key] for key in keys]
        assert ["user_id", "created_at"] in fields
        assert ["user_id", "updated_at"] in fields
        assert ["user_id", "title"] in fields
    else:
        assert info["user_created"]["key"] == [("user_id", 1), ("created_at", -1), ("_id", -1)]
        assert info["user_updated"]["key"] == [("user_id", 1), ("updated_at", -1), ("_id", -1)]
        assert info["user_title"]["key"] == [("user_id", 1), ("title", 1), ("_id", 1)]
        assert info["created"]["key"] == [("created_at", -1), ("_id", -1)]
        assert info["title_content_text"]["weights"] == {"title": 1, "content": 1}


async def test_mongodb_url_is_required() -> None:
    with pytest.raises(SettingsError, match="MONGODB_URL"):
        await create_service(DataSettings(mongodb_url=""))


def test_main_exits_with_a_clear_error_without_mongodb_url() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URL"}
    env["DATA_PORT"] = "0"
    result = subprocess.run(
        [sys.executable, "-m", "services.data"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "MONGODB_URL must be set" in result.stderr


async def test_main_serves_until_sigterm(mongo_url: str, database: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MONGODB_URL": mongo_url, "MONGODB_DATABASE": database, "DATA_PORT": str(port)}
    env["AUTH_ADDRESS"] = f"127.0.0.1:{free_port()}"  # nobody there: fine for health checks
    with (tmp_path / "data.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.data", env=env, stdout=log, stderr=log
        )
    try:
        await wait_serving(f"127.0.0.1:{port}", DATA_SERVICE)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_restart_on_a_collection_with_items(
    data: DataClient, mongo_client: AsyncMongoClient[dict[str, Any]], test_keys: TestKeys
) -> None:
    """A second start on the same, non-empty collection: index creation is a no-op and search
    still works (on nx-27017 this goes through the documented text-index difference)."""
    item = await data.create("u1", "before the restart", content="persistent words")
    second = await create_service(
        data_settings(data.database), verifier=test_keys.verifier(), mongo_client=mongo_client
    )
    await second.start("127.0.0.1:0")
    try:
        again = DataClient(second, test_keys, data.database)
        assert [i.id for i in (await again.list("u1", query="persistent")).items] == [item.id]
        await again.channel.close()
    finally:
        await second.stop(grace=1, drain=0)
