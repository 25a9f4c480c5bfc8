"""The one interceptor every service installs, applied to each method's handler once.

For each RPC, in order: take or make a request id; authenticate the caller (unless the method
is public); refuse a request message that did not parse or has control characters in its text
(services/kit/request_checks.py); run the handler; turn domain errors into a google.rpc.Status;
log one line and record metrics. One wrapper rather than a stack of four keeps per-call overhead low.

It is not a grpc.aio `ServerInterceptor` (those are asked for the handler on every call):
`wrap_handler` builds the wrapped handler of a method once, when the service registers it
(services/kit/wrapping.py), with everything that depends only on the method decided then — the
authentication mode, the metric label children, the unary-as-stream reading of
services/kit/request_stream.py. A call then costs one pass over its metadata, one context
variable, and the work itself.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc.aio import AbortError

from services.kit import metrics, tracing
from services.kit.client import peer_address
from services.kit.context import CallState, call_var
from services.kit.errors import (
    DependencyUnavailable,
    PinexaError,
    Unauthenticated,
    internal_error_status,
)
from services.kit.request_checks import (
    UNPARSABLE,
    TextChecker,
    guard_handler,
    tolerant_deserializer,
    unparsable_error,
)
from services.kit.request_stream import REQUEST_MESSAGE_TIMEOUT_SECONDS, complete_request
from services.kit.tokens import TokenVerifier, bearer_token

log = logging.getLogger("pinexa.rpc")

INTERNAL_TOKEN_HEADER = "x-pinexa-internal-token"  # noqa: S105 (a header name)
# On internal calls, for the audit trail: the end client's address the calling service saw, and
# the user it acted for (services/kit/channels.py sends them).
CLIENT_ADDRESS_HEADER = "x-pinexa-client-address"
ACTOR_HEADER = "x-pinexa-actor"
_ALWAYS_PUBLIC_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Authenticate = Callable[[CallState, str | None, str | None], Awaitable[None]]


class _RequestIds:
    """Ids for calls that bring no x-request-id: a random per-process prefix and a counter, as
    unique as uuid4's and without its system call per call (a forked child draws its own prefix)."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_request_ids = _RequestIds()


class PinexaInterceptor:
    """Request id, authentication, error mapping, logging and metrics for unary RPCs.

    `public_methods` need no token; a valid one is still used, and why an invalid one was refused
    is kept for `require_principal()`.
    Methods of `internal_services` need no user token; when `internal_token` is set they need
    that shared secret instead, compared in constant time.
    """

    def __init__(
        self,
        *,
        service: str,
        verifier: TokenVerifier | None,
        public_methods: frozenset[str] = frozenset(),
        internal_services: frozenset[str] = frozenset(),
        internal_token: str = "",
        translate_error: Callable[[Exception], PinexaError | None] | None = None,
        on_dependency_unavailable: Callable[[], None] | None = None,
        free_text_fields: frozenset[str] = frozenset(),
        request_timeout: float = REQUEST_MESSAGE_TIMEOUT_SECONDS,
    ) -> None:
        self._service = service
        # translate_error: the service's mapping of its store's own exceptions (a database
        # outage) to a PinexaError, so servicers need not wrap every call; on_dependency_unavailable:
        # told whenever a DependencyUnavailable reaches a client (the host re-checks health).
        self._translate = translate_error
        self._on_unavailable = on_dependency_unavailable
        self._domain = f"pinexa.{service}"
        self._verifier = verifier
        self._public = public_methods
        self._internal = internal_services
        self._internal_token = internal_token.encode()
        self._text = TextChecker(free_text_fields)
        self._request_timeout = request_timeout

    def wrap_handler(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler to serve `method` with, in place of `handler` (built once per method)."""
        service_name = method[1:].split("/", 1)[0]
        if handler.unary_stream is not None and service_name in self._internal:
            guarded = self._wrap_internal_stream(guard_handler(handler, self._domain))
        elif handler.unary_unary is None or method.startswith(_ALWAYS_PUBLIC_PREFIXES):
            # health, reflection, streaming: parse failures only
            guarded = guard_handler(handler, self._domain)
        else:
            if service_name in self._internal:
                authenticate = self._authenticate_internal
            elif method in self._public:
                authenticate = self._authenticate_public
            else:
                authenticate = self._authenticate_protected
            guarded = grpc.unary_unary_rpc_method_handler(
                self._wrap(handler.unary_unary, method, authenticate),
                request_deserializer=tolerant_deserializer(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return complete_request(guarded, domain=self._domain, timeout=self._request_timeout)

    def _wrap(self, behavior: Behavior, method: str, authenticate: Authenticate) -> Behavior:
        short_method = method.rsplit("/", 1)[-1]
        internal = authenticate == self._authenticate_internal
        meter = metrics.MethodMetrics(method)
        check_text = self._text.check
        next_request_id = _request_ids.next
        perf_counter = time.perf_counter

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            authorization = request_id = internal_token = external = forwarded = actor = None
            for key, value in context.invocation_metadata() or ():
                if key == "authorization":
                    authorization = value
                elif key == "x-request-id":
                    request_id = value
                elif key == INTERNAL_TOKEN_HEADER:
                    internal_token = value
                elif key == "x-envoy-external-address":
                    external = value
                elif key == CLIENT_ADDRESS_HEADER:
                    forwarded = value
                elif key == ACTOR_HEADER:
                    actor = value
            # The forwarded headers count only on internal methods, where the internal token guards
            # them; Envoy strips a client's own x-envoy-external-address.
            if not internal:
                forwarded = actor = None
            call = CallState(
                str(request_id or next_request_id()),
                client_address=_client_address(str(forwarded or external or ""), context),
                forwarded_actor=str(actor or "")[:64],
            )
            reset = call_var.set(call)
            tracing.set_request_id(call.request_id)
            meter.started()
            started = perf_counter()
            code = "OK"
            try:
                if request is UNPARSABLE:
                    raise unparsable_error()
                await authenticate(call, authorization, internal_token)
                check_text(request)
                return await behavior(request, context)
            except PinexaError as error:
                code = error.code.name
                self._note(error)
                await context.abort_with_status(error.to_status(self._domain))
            except AbortError:
                code = _code_name(context)
                raise
            except asyncio.CancelledError:  # the client went away, or shutdown's grace ran out
                code = "CANCELLED"
                raise
            except NotImplementedError:  # a generated servicer base method nobody overrode
                code = "UNIMPLEMENTED"
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{short_method} is not implemented")
            except Exception as exc:
                translated = self._translate(exc) if self._translate is not None else None
                if translated is None:
                    code = "INTERNAL"
                    log.exception("unhandled error in %s", method)
                    await context.abort_with_status(internal_error_status(self._domain))
                else:  # e.g. the database is down: logged once by the health monitor, not here
                    code = translated.code.name
                    self._note(translated)
                    await context.abort_with_status(translated.to_status(self._domain))
            finally:
                elapsed = perf_counter() - started
                meter.handled(code, elapsed)
                tracing.record_code(code)
                if log.isEnabledFor(logging.INFO):
                    principal = call.principal
                    log.info(
                        "rpc",
                        extra={
                            "method": method,
                            "code": code,
                            "ms": round(elapsed * 1000, 2),
                            "user": principal.user_id if principal else "-",
                        },
                    )
                call_var.reset(reset)

        return wrapper

    def _wrap_internal_stream(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """A server stream of an internal service (auth's WatchRevocations): the internal token is
        checked before it starts, as for internal unary calls."""
        behavior = handler.unary_stream

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = context.invocation_metadata() or ()
            token = next((value for key, value in metadata if key == INTERNAL_TOKEN_HEADER), None)
            try:
                await self._authenticate_internal(CallState("-"), None, token)
            except PinexaError as error:
                await context.abort_with_status(error.to_status(self._domain))
            async for response in behavior(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(
            stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _note(self, error: PinexaError) -> None:
        if isinstance(error, DependencyUnavailable) and self._on_unavailable is not None:
            self._on_unavailable()

    async def _authenticate_internal(
        self, call: CallState, authorization: str | None, internal_token: str | None
    ) -> None:
        if self._internal_token:
            presented = str(internal_token or "").encode()
            if not hmac.compare_digest(presented, self._internal_token):
                raise Unauthenticated("this internal method needs the internal token", reason="INTERNAL_ONLY")

    async def _authenticate_protected(
        self, call: CallState, authorization: str | None, internal_token: str | None
    ) -> None:
        token = bearer_token(authorization)
        if not token:
            raise Unauthenticated("a bearer access token is required", reason="TOKEN_MISSING")
        if self._verifier is None:
            raise Unauthenticated("this service does not accept tokens", reason="TOKEN_INVALID")
        call.principal = await self._verifier.verify(token)

    async def _authenticate_public(
        self, call: CallState, authorization: str | None, internal_token: str | None
    ) -> None:
        token = bearer_token(authorization)
        if not token:
            return
        if self._verifier is None:
            raise Unauthenticated("this service does not accept tokens", reason="TOKEN_INVALID")
        try:
            call.principal = await self._verifier.verify(token)
        except PinexaError as error:
            call.auth_error = error  # a public method goes on anonymously


def _code_name(context: grpc.aio.ServicerContext) -> str:
    code: object = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "UNKNOWN" if code is None else str(code)


def _client_address(address: str, context: grpc.aio.ServicerContext) -> str:
    """The end client's address for the audit trail: what Envoy saw (or a calling service
    forwarded), else the peer's address (a direct gRPC caller)."""
    return (address or peer_address(context))[:64]
