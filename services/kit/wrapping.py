"""A server interceptor that wraps each method's handler once, not on every call.

grpc.aio asks every interceptor for the handler of each incoming call. Building the wrapped
handler anew per call costs allocations on the hot path, so subclasses say how to wrap a
handler (`wrap_handler`) and this base keeps the result per method, rebuilt only if the handler
below changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        # method -> (the handler below us, ours)
        self._handlers: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def wrap_handler(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler to serve `method` with, in place of `handler`."""
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method: str = details.method
        cached = self._handlers.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        ours = self.wrap_handler(method, handler)
        self._handlers[method] = (handler, ours)
        return ours
