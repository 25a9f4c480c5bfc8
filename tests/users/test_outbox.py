"""Deleting a user purges their data through the durable outbox, even when the data service is down.

The data service here is a stand-in gRPC server (StandInData in conftest.py) on a free port: the
real data service is another service with its own suite and its own database, and these tests
need to stop and start it at will. The users service, its database and the channel are real.
"""

from __future__ import annotations

import asyncio

import grpc
from sqlalchemy import select

from pinexa.users.v1 import users_pb2
from services.kit import sql
from services.users.schema import purge_outbox
from tests.support import rpc_error, wait_until
from tests.users.conftest import StandInData, StartUsers, Users


async def _outbox(url: str) -> dict[str, int]:
    """user_id → attempts of the rows still waiting in the outbox."""
    engine = sql.create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(purge_outbox.c.user_id, purge_outbox.c.attempts))).all()
        return {row.user_id: row.attempts for row in rows}
    finally:
        await engine.dispose()


async def _delete(users: Users, user: users_pb2.User) -> None:
    await users.stub.DeleteUser(users_pb2.DeleteUserRequest(id=user.id), metadata=users.auth(user))


async def test_delete_purges_the_users_data_at_once(start_users: StartUsers) -> None:
    users = await start_users(outbox_poll_interval=60)
    user, keep = await users.sign_up(), await users.sign_up()
    await _delete(users, user)
    # Long before the next poll (60 s): the delete wakes the worker.
    await _wait_purged(users.data, user, timeout=5)
    assert users.data.purged == [user.id]
    assert keep.id not in users.data.purged
    await wait_until(lambda: _empty(users.url), timeout=5, what="the outbox to drain")


async def _empty(url: str) -> bool:
    return not await _outbox(url)


async def _wait_purged(data: StandInData, user: users_pb2.User, *, timeout: float) -> None:
    async def purged() -> bool:
        return user.id in data.purged

    await wait_until(purged, timeout=timeout, what=f"the purge of {user.id}")


async def test_purge_arrives_once_the_data_service_is_back(start_users: StartUsers) -> None:
    data = StandInData()  # not started: the data service is down
    users = await start_users(data=data)
    user = await users.sign_up()
    await _delete(users, user)  # the delete itself succeeds

    async def tried_and_failed() -> bool:
        return (await _outbox(users.url)).get(user.id, 0) >= 2

    await wait_until(tried_and_failed, timeout=10, what="failed delivery attempts")
    assert data.purged == []
    # The account is gone already; only its data purge is pending.
    error = await rpc_error(users.stub.GetUser(users_pb2.GetUserRequest(id=user.id), metadata=users.admin()))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    await data.start()  # the data service comes back; users is not restarted
    await _wait_purged(data, user, timeout=20)
    await wait_until(lambda: _empty(users.url), timeout=5, what="the outbox to drain")
    await data.stop()


async def test_pending_purges_survive_a_restart_of_users(start_users: StartUsers) -> None:
    data = StandInData()
    users = await start_users(data=data)
    user = await users.sign_up()
    await _delete(users, user)
    await users.host.stop(grace=1, drain=0)  # users goes away with the purge undelivered
    assert user.id in await _outbox(users.url)

    await data.start()
    restarted = await start_users(data=data)
    await _wait_purged(data, user, timeout=10)
    await wait_until(lambda: _empty(restarted.url), timeout=5, what="the outbox to drain")
    await data.stop()


async def test_a_purge_interrupted_by_shutdown_is_not_held_back_by_its_lease(start_users: StartUsers) -> None:
    stalled = StandInData()
    stalled.answer.clear()  # the data service accepts the call and never answers
    await stalled.start()
    users = await start_users(data=stalled)
    user = await users.sign_up()
    await _delete(users, user)

    async def in_flight() -> bool:
        return user.id in stalled.received

    await wait_until(in_flight, timeout=5, what="the purge call to be in flight")
    await users.host.stop(grace=1, drain=0)  # users stops mid-call: the row was claimed (leased)
    await stalled.stop()

    data = StandInData()
    await data.start()
    await start_users(data=data)
    # The lease would hold the row for the call timeout + 5 s; a restart delivers it at once.
    await _wait_purged(data, user, timeout=3)
    await data.stop()


async def test_several_replicas_deliver_every_purge(start_users: StartUsers) -> None:
    data = StandInData()
    await data.start()
    replicas = [await start_users(data=data) for _ in range(3)]
    accounts = [await replicas[0].sign_up() for _ in range(12)]
    await asyncio.gather(*(_delete(replicas[i % 3], user) for i, user in enumerate(accounts)))

    async def all_purged() -> bool:
        return {u.id for u in accounts} <= set(data.purged)

    await wait_until(all_purged, timeout=10, what="every purge")
    await wait_until(lambda: _empty(replicas[0].url), timeout=5, what="the outbox to drain")
    # PurgeUserData is idempotent, so a rare duplicate would be harmless; the leases keep them rare.
    assert len(data.purged) <= len(accounts) + 2
    await data.stop()
