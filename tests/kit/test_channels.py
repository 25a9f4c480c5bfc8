"""Internal channels spread calls round-robin over every address a target resolves to, as a
Kubernetes headless Service lists every pod. Two real servers on free ports stand in for two pods."""

from __future__ import annotations

from collections import Counter

from pinexa.users.v1 import users_pb2, users_pb2_grpc
from services.kit.channels import internal_channel
from services.kit.server import ServiceHost, ServiceSpec
from services.kit.settings import Settings

SERVICE = "pinexa.users.v1.UserService"


class Pod(users_pb2_grpc.UserServiceServicer):
    def __init__(self, name: str, calls: Counter[str]) -> None:
        self.name = name
        self.calls = calls

    async def CreateUser(self, request: users_pb2.CreateUserRequest, context: object) -> users_pb2.User:
        self.calls[self.name] += 1
        return users_pb2.User(username=self.name)


async def test_calls_are_spread_over_every_resolved_address() -> None:
    calls: Counter[str] = Counter()
    hosts = []
    for name in ("pod-a", "pod-b"):
        pod = Pod(name, calls)
        spec = ServiceSpec(
            name="users",
            register=lambda server, pod=pod: users_pb2_grpc.add_UserServiceServicer_to_server(pod, server),  # type: ignore[misc]
            service_names=[SERVICE],
            public_methods=frozenset({f"/{SERVICE}/CreateUser"}),
        )
        host = ServiceHost(spec, settings=Settings(), verifier=None)
        await host.start("127.0.0.1:0")
        hosts.append(host)
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
