"""Internal channels spread calls round-robin over every address a target resolves to, as a
Kubernetes headless Service lists every pod. Two real servers on free ports stand in for two pods."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import grpc

from pinexa.users.v1 import users_pb2, users_pb2_grpc
from services.kit.channels import internal_channel
from services.kit.server import ServiceHost, ServiceSpec
from services.kit.settings import Settings
from tests.support import free_port

SERVICE = "pinexa.users.v1.UserService"


class Pod(users_pb2_grpc.UserServiceServicer):
    def __init__(self, name: str, calls: Counter[str]) -> None:
        self.name = name
        self.calls = calls

    async def CreateUser(self, request: users_pb2.CreateUserRequest, context: object) -> users_pb2.User:
        self.calls[self.name] += 1
        return users_pb2.User(username=self.name)


async def start_pod(name: str, calls: Counter[str], address: str = "127.0.0.1:0") -> ServiceHost:
    pod = Pod(name, calls)
    spec = ServiceSpec(
        name="users",
        register=lambda server: users_pb2_grpc.add_UserServiceServicer_to_server(pod, server),
        service_names=[SERVICE],
        public_methods=frozenset({f"/{SERVICE}/CreateUser"}),
    )
    host = ServiceHost(spec, settings=Settings(), verifier=None)
    await host.start(address)
    return host


async def test_calls_are_spread_over_every_resolved_address() -> None:
    calls: Counter[str] = Counter()
    hosts = [await start_pod(name, calls) for name in ("pod-a", "pod-b")]
    target = "ipv4:" + ",".join(f"127.0.0.1:{h.port}" for h in hosts)
    channel = internal_channel(target)
    try:
        stub = users_pb2_grpc.UserServiceStub(channel)
        for _ in range(20):
            await stub.CreateUser(users_pb2.CreateUserRequest(), timeout=5)
    finally:
        await channel.close()
        for host in hosts:
            await host.stop(grace=0, drain=0)
    assert calls["pod-a"] >= 5 and calls["pod-b"] >= 5, calls


async def test_a_peer_back_after_a_long_outage_is_reached_within_a_second_or_so() -> None:
    """gRPC's default reconnect back-off grows to 120 s (1 s x 1.6 per attempt), so after a
    12-second outage a peer that is back would be found only seconds later (5 s and more, seen
    in the chaos suite). Internal channels cap it at 1 s."""
    port = free_port()
    channel = internal_channel(f"127.0.0.1:{port}")
    stub = users_pb2_grpc.UserServiceStub(channel)
    host: ServiceHost | None = None
    try:
        outage_ends = time.monotonic() + 12
        while time.monotonic() < outage_ends:  # nothing listens: every call fails, back-off grows
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stub.CreateUser(users_pb2.CreateUserRequest(), timeout=0.5)
            await asyncio.sleep(0.2)
        host = await start_pod("pod-a", Counter(), f"127.0.0.1:{port}")
        back = time.monotonic()
        while True:
            try:
                await stub.CreateUser(users_pb2.CreateUserRequest(), timeout=0.5)
                break
            except grpc.aio.AioRpcError:
                assert time.monotonic() - back < 10, "the peer was never reached"
                await asyncio.sleep(0.05)
        assert time.monotonic() - back < 1.6, f"reached {time.monotonic() - back:.2f} s after its return"
    finally:
        await channel.close()
        if host is not None:
            await host.stop(grace=0, drain=0)
