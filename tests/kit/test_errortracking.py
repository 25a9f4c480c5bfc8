"""SENTRY_DSN: an unexpected error in an RPC reaches Sentry with the request id, through Sentry's
SDK; nothing is sent when it is unset. Sentry itself cannot run here: a fake ingestion endpoint (a
real HTTP server on a free port, speaking the envelope protocol the SDK posts) stands in for it."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest

from pinexa.users.v1 import users_pb2, users_pb2_grpc
from services.kit import errortracking
from services.kit.server import ServiceHost, ServiceSpec
from services.kit.settings import Settings
from tests.kit.test_server import SERVICE, FakeUsers
from tests.support import wait_until


class FakeSentry:
    """Collects the events of the envelopes posted to /api/<project>/envelope/."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.paths: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                received.paths.append(self.path)
                lines = body.split(b"\n")
                for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                    if json.loads(header).get("type") == "event":
                        received.events.append(json.loads(payload))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dsn = f"http://publickey@127.0.0.1:{self.server.server_port}/42"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sentry() -> Iterator[FakeSentry]:
    fake = FakeSentry()
    yield fake
    errortracking.shutdown()
    fake.close()


async def _host() -> ServiceHost:
    fake = FakeUsers()
    spec = ServiceSpec(
        name="users",
        register=lambda server: users_pb2_grpc.add_UserServiceServicer_to_server(fake, server),
        service_names=[SERVICE],
        public_methods=frozenset({f"/{SERVICE}/GetUser"}),
    )
    host = ServiceHost(spec, settings=Settings(), verifier=None)
    await host.start("127.0.0.1:0")
    return host


async def _call_boom(host: ServiceHost, request_id: str) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        try:
            await users_pb2_grpc.UserServiceStub(channel).GetUser(
                users_pb2.GetUserRequest(id="boom"), metadata=(("x-request-id", request_id),), timeout=5
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
    raise AssertionError("the call succeeded")


async def test_an_unexpected_error_reaches_sentry_with_the_request_id(sentry: FakeSentry) -> None:
    assert errortracking.configure("users", Settings(sentry_dsn=sentry.dsn))
    host = await _host()
    try:
        assert await _call_boom(host, "req-sentry-1") == grpc.StatusCode.INTERNAL

        async def received() -> bool:
            return bool(sentry.events)

        await wait_until(received, timeout=10, what="an event at the fake Sentry")
    finally:
        await host.stop(grace=1, drain=0)
    (event,) = sentry.events
    assert sentry.paths == ["/api/42/envelope/"]
    assert event["tags"]["request_id"] == "req-sentry-1"
    assert event["tags"]["service"] == "users"
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert event["logentry"]["message"].startswith("unhandled error in")
    assert "request" not in event  # no request data is collected


async def test_nothing_is_sent_without_sentry_dsn(sentry: FakeSentry) -> None:
    assert not errortracking.configure("users", Settings())
    host = await _host()
    try:
        assert await _call_boom(host, "req-sentry-2") == grpc.StatusCode.INTERNAL
    finally:
        await host.stop(grace=1, drain=0)
    assert sentry.paths == [] and sentry.events == []
