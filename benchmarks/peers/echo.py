"""Peer 3: a bare grpc.aio unary echo (the Python ceiling for one gRPC call).

    python -m benchmarks.peers.echo PORT

`/bench.Echo/Echo` returns the request's bytes unchanged (no protobuf decoding: a generic
handler with no deserializer); `/bench.Echo/Count` returns how many Echo calls were answered,
as ASCII digits, so the harness can check the server side's count.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc


async def serve(port: int) -> None:
    answered = 0

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        nonlocal answered
        answered += 1
        return request

    async def count(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return str(answered).encode()

    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Count": grpc.unary_unary_rpc_method_handler(count),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
