"""Wraps every method handler once, when it is registered, instead of on every call.

A grpc.aio server interceptor is asked for the handler of each incoming call: an awaited
`intercept_service` (and a continuation) per interceptor per call, before any work of its own.
The kit's cross-cutting work (services/kit/interceptor.py, request_stream.py) depends only on the
method, so `WrappingRegistrar` stands in for the server while the servicers, health and reflection
register: each handler they add is replaced by its wrapped form right there, and grpc.aio's own
lookup serves the wrapped one with no interceptor at all.

Generated `add_*Servicer_to_server` functions add both a generic handler and the registered
method handlers (which grpc.aio looks up first); a generic handler on its own (edge reflection)
is wrapped on the first call of each method and kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc

Wrap = Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]


class WrappingRegistrar:
    """What `ServiceSpec.register` and the health and reflection helpers get in place of the
    grpc.aio server: the same registration methods, with every handler wrapped by `wrap`."""

    def __init__(self, server: grpc.aio.Server, wrap: Wrap) -> None:
        self._server = server
        self._wrap = wrap

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers([_WrappedGenericHandler(h, self._wrap) for h in handlers])

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        self._server.add_registered_method_handlers(
            service_name,
            {
                name: self._wrap(f"/{service_name}/{name}", handler)
                for name, handler in method_handlers.items()
            },
        )

    def __getattr__(self, name: str) -> Any:  # anything else a register function asks of the server
        return getattr(self._server, name)


class _WrappedGenericHandler(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler, wrap: Wrap) -> None:
        self._inner = inner
        self._wrap = wrap
        # method -> (the inner handler, ours), rebuilt only if the inner one changes
        self._handlers: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(details)
        if handler is None:
            return None
        method: str = details.method
        cached = self._handlers.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        ours = self._wrap(method, handler)
        self._handlers[method] = (handler, ours)
        return ours
