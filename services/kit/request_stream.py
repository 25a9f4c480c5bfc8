"""Unary calls whose request message never arrives complete are answered, not left hanging.

grpc.aio reads a unary call's request message before any Python code runs, and when the stream
ends without one whole message (an empty body, a cut-off 5-byte prefix, a length larger than the
data) it takes that for a cancelled call and never answers: the client waits for its deadline,
forever without one. No server option changes that (checked with grpcio 1.85: none of
max_connection_idle/age, keepalive or http2 settings ends such a stream), so the kit serves every
unary method as a stream-unary one — the wire protocol is the same — and reads the single request
message itself (`complete_request`, applied to each handler once, when it is registered):

- the stream ends without a whole message: INVALID_ARGUMENT `INCOMPLETE_REQUEST` at once;
- the message is not complete within `timeout` seconds (a stalled or very slow client):
  DEADLINE_EXCEEDED `REQUEST_TIMEOUT`, so no client holds a call open past that.

Server-streaming methods (health's Watch) are served as bidirectional ones in the same way.

Hand-written because no library offers it. The message is read with `context.read()`, not
through the request iterator grpc.aio hands a stream-unary method (an async generator around
that same call): measured on a GetUser-shaped call, this costs about as much as grpc.aio's own
unary path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from services.kit.errors import InvalidArgument, PinexaError
from services.kit.request_checks import unparsable_error

# Envoy buffers a whole request before forwarding it, so through Envoy a message arrives at once;
# a direct caller (another service) gets this long to finish sending one.
REQUEST_MESSAGE_TIMEOUT_SECONDS = 4.0


class DeadlineExceeded(PinexaError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "REQUEST_TIMEOUT"


UnaryBehavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def complete_request(
    handler: grpc.RpcMethodHandler, *, domain: str, timeout: float = REQUEST_MESSAGE_TIMEOUT_SECONDS
) -> grpc.RpcMethodHandler:
    """`handler` served as a stream-unary (unary) or stream-stream (server-streaming) method that
    insists on one complete request message; streaming-request handlers are returned as they are."""
    if handler.unary_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _read_one(handler.unary_unary, domain, timeout),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:  # server streaming (health's Watch): the same, then the responses
        return grpc.stream_stream_rpc_method_handler(
            _read_one_then_stream(handler.unary_stream, domain, timeout),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler  # already streaming requests


async def _abort(context: grpc.aio.ServicerContext, domain: str, error: PinexaError) -> None:
    await context.abort_with_status(error.to_status(domain))


async def _read_request(context: grpc.aio.ServicerContext, domain: str, limit: float) -> Any:
    """The call's one request message, or the call aborted with why there is none. (Runs on every
    call: nothing in it is built per call beyond the read itself.)"""
    try:
        # asyncio.timeout, not wait_for: no extra task per call.
        async with asyncio.timeout(limit):
            request = await context.read()
    except TimeoutError:
        await _abort(
            context,
            domain,
            DeadlineExceeded(
                f"the request message did not arrive within {limit:g} s", reason="REQUEST_TIMEOUT"
            ),
        )
    except Exception:  # the deserializer refused the bytes: they are not this message
        await _abort(context, domain, unparsable_error())
    if request is grpc.aio.EOF:
        await _abort(
            context,
            domain,
            InvalidArgument(
                "the request ended before one complete message "
                "(the 5-byte prefix and the bytes it announces)",
                reason="INCOMPLETE_REQUEST",
            ),
        )
    return request


def _read_one(
    behavior: UnaryBehavior, domain: str, timeout: float
) -> Callable[[AsyncIterator[Any], grpc.aio.ServicerContext], Any]:
    async def read_then_call(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        return await behavior(await _read_request(context, domain, timeout), context)

    return read_then_call


def _read_one_then_stream(
    behavior: Callable[[Any, grpc.aio.ServicerContext], Any], domain: str, timeout: float
) -> Callable[[AsyncIterator[Any], grpc.aio.ServicerContext], AsyncIterator[Any]]:
    """A server-streaming behavior (an async generator, or a coroutine that calls
    context.write) behind the request reader, as an async generator: what OpenTelemetry's aio
    server interceptor iterates when tracing is on (a coroutine there fails every stream)."""

    async def read_then_stream(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        result = behavior(await _read_request(context, domain, timeout), context)
        if hasattr(result, "__aiter__"):
            async for response in result:
                yield response
        else:
            await result

    return read_then_stream
