"""The one server interceptor every service installs.

For each RPC, in order: take or make a request id; authenticate the caller (unless the method
is public); refuse a request message that did not parse or has control characters in its text
(services/kit/request_checks.py); run the handler; turn domain errors into a google.rpc.Status;
log one line and record metrics. One wrapper rather than a stack of four keeps per-call overhead low.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc.aio import AbortError

from services.kit import metrics, tracing
from services.kit.context import auth_error_var, principal_var, request_id_var
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
from services.kit.tokens import TokenVerifier, bearer_token
from services.kit.wrapping import WrappingInterceptor

log = logging.getLogger("pinexa.rpc")

INTERNAL_TOKEN_HEADER = "x-pinexa-internal-token"  # noqa: S105 (a header name)
_ALWAYS_PUBLIC_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class PinexaInterceptor(WrappingInterceptor):
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
    ) -> None:
        super().__init__()
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

    def wrap_handler(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        service_name = method[1:].split("/", 1)[0]
        if handler.unary_stream is not None and service_name in self._internal:
            return self._wrap_internal_stream(guard_handler(handler, self._domain))
        if handler.unary_unary is None or method.startswith(_ALWAYS_PUBLIC_PREFIXES):
            return guard_handler(handler, self._domain)  # health, reflection: parse failures only
        if service_name in self._internal:
            mode = "internal"
        elif method in self._public:
            mode = "public"
        else:
            mode = "protected"
        return grpc.unary_unary_rpc_method_handler(
            self._wrap(handler.unary_unary, method, mode),
            request_deserializer=tolerant_deserializer(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, behavior: Behavior, method: str, mode: str) -> Behavior:
        short_method = method.rsplit("/", 1)[-1]
        meter = metrics.MethodMetrics(method)

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = dict(context.invocation_metadata() or ())
            request_id = str(metadata.get("x-request-id") or uuid.uuid4().hex)
            rid_token = request_id_var.set(request_id)
            tracing.set_request_id(request_id)
            meter.started()
            principal_token = principal_var.set(None)
            auth_error_token = auth_error_var.set(None)
            started = time.perf_counter()
            code = "OK"
            user = "-"
            try:
                if request is UNPARSABLE:
                    raise unparsable_error()
                await self._authenticate(mode, metadata)
                principal = principal_var.get()
                user = principal.user_id if principal else "-"
                self._text.check(request)
                return await behavior(request, context)
            except PinexaError as error:
                code = error.code.name
                self._note(error)
                await context.abort_with_status(error.to_status(self._domain))
            except AbortError:
                code = _code_name(context)
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
                elapsed = time.perf_counter() - started
                meter.handled(code, elapsed)
                tracing.record_code(code)
                log.info(
                    "rpc",
                    extra={"method": method, "code": code, "ms": round(elapsed * 1000, 2), "user": user},
                )
                principal_var.reset(principal_token)
                auth_error_var.reset(auth_error_token)
                request_id_var.reset(rid_token)

        return wrapper

    def _wrap_internal_stream(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """A server stream of an internal service (auth's WatchRevocations): the internal token is
        checked before it starts, as for internal unary calls."""
        behavior = handler.unary_stream

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                await self._authenticate("internal", dict(context.invocation_metadata() or ()))
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

    async def _authenticate(self, mode: str, metadata: dict[str, Any]) -> None:
        if mode == "internal":
            if self._internal_token:
                presented = str(metadata.get(INTERNAL_TOKEN_HEADER, "")).encode()
                if not hmac.compare_digest(presented, self._internal_token):
                    raise Unauthenticated(
                        "this internal method needs the internal token", reason="INTERNAL_ONLY"
                    )
            return
        token = bearer_token(metadata.get("authorization"))
        if not token:
            if mode == "public":
                return
            raise Unauthenticated("a bearer access token is required", reason="TOKEN_MISSING")
        if self._verifier is None:
            raise Unauthenticated("this service does not accept tokens", reason="TOKEN_INVALID")
        try:
            principal_var.set(await self._verifier.verify(token))
        except PinexaError as error:
            if mode != "public":
                raise
            auth_error_var.set(error)  # a public method goes on anonymously


def _code_name(context: grpc.aio.ServicerContext) -> str:
    code: object = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "UNKNOWN" if code is None else str(code)
