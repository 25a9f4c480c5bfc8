"""Unary calls whose request message never arrives complete are answered, not left hanging.

grpc.aio reads a unary call's request message before any Python code runs, and when the stream
ends without one whole message (an empty body, a cut-off 5-byte prefix, a length larger than the
data) it takes that for a cancelled call and never answers: the client waits for its deadline,
forever without one. No server option changes that (checked with grpcio 1.85: none of
max_connection_idle/age, keepalive or http2 settings ends such a stream), so this interceptor,
installed outermost, serves every unary method as a stream-unary one — the wire protocol is the
same — and reads the single request message itself:

Server-streaming methods (health's Watch) are served as bidirectional ones in the same way.

- the stream ends without a whole message: INVALID_ARGUMENT `INCOMPLETE_REQUEST` at once;
- the message is not complete within `timeout` seconds (a stalled or very slow client):
  DEADLINE_EXCEEDED `REQUEST_TIMEOUT`, so no client holds a call open past that.

Hand-written because no library offers it; the cost is one awaited read per call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from services.kit.errors import InvalidArgument, PinexaError
from services.kit.request_checks import unparsable_error
from services.kit.wrapping import WrappingInterceptor

# Envoy buffers a whole request before forwarding it, so through Envoy a message arrives at once;
# a direct caller (another service) gets this long to finish sending one.
REQUEST_MESSAGE_TIMEOUT_SECONDS = 4.0


class DeadlineExceeded(PinexaError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "REQUEST_TIMEOUT"


UnaryBehavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class CompleteRequestInterceptor(WrappingInterceptor):
    """Serves unary methods as stream-unary ones that insist on one complete request message."""

    def __init__(self, *, domain: str, timeout: float = REQUEST_MESSAGE_TIMEOUT_SECONDS) -> None:
        super().__init__()
        self._domain = domain
        self._timeout = timeout

    def wrap_handler(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._read_one(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if (
            handler.unary_stream is not None
        ):  # server streaming (health's Watch): the same, then the responses
            return grpc.stream_stream_rpc_method_handler(
                self._read_one(_streamed(handler.unary_stream)),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # already streaming requests

    def _read_one(
        self, behavior: UnaryBehavior
    ) -> Callable[[AsyncIterator[Any], grpc.aio.ServicerContext], Any]:
        async def read_then_call(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            try:
                # asyncio.timeout, not wait_for: no extra task per call.
                async with asyncio.timeout(self._timeout):
                    request = await anext(requests)
            except StopAsyncIteration:
                await self._abort(
                    context,
                    InvalidArgument(
                        "the request ended before one complete message "
                        "(the 5-byte prefix and the bytes it announces)",
                        reason="INCOMPLETE_REQUEST",
                    ),
                )
            except TimeoutError:
                await self._abort(
                    context,
                    DeadlineExceeded(
                        f"the request message did not arrive within {self._timeout:g} s",
                        reason="REQUEST_TIMEOUT",
                    ),
                )
            except Exception:  # the deserializer refused the bytes: they are not this message
                await self._abort(context, unparsable_error())
            return await behavior(request, context)

        return read_then_call

    async def _abort(self, context: grpc.aio.ServicerContext, error: PinexaError) -> None:
        await context.abort_with_status(error.to_status(self._domain))


def _streamed(behavior: Callable[[Any, grpc.aio.ServicerContext], Any]) -> UnaryBehavior:
    """A server-streaming behavior (an async generator, or a coroutine that calls
    context.write) as a coroutine that writes each response itself."""

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> None:
        result = behavior(request, context)
        if hasattr(result, "__aiter__"):
            async for response in result:
                await context.write(response)
        else:
            await result

    return stream
