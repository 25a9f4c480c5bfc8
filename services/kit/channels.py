"""Client channels for service-to-service calls.

Create one channel per target per process at start-up and reuse it: a channel multiplexes calls
over HTTP/2 and reconnects by itself. It balances round-robin over every address the target
resolves to (a Kubernetes headless Service lists every pod), and servers close connections after
a few minutes (see server.py) so clients re-resolve and find new pods. Calls are retried on
UNAVAILABLE (a peer restarting), channels reconnect at most a second apart, and calls carry the
request id and, when configured, the internal token.
Callers set their own deadline; the service config's timeout only bounds calls that forget to.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc

from services.kit import tracing
from services.kit.context import current_actor_id, current_client_address, current_request_id
from services.kit.interceptor import ACTOR_HEADER, CLIENT_ADDRESS_HEADER, INTERNAL_TOKEN_HEADER
from services.kit.revocations import GrpcRevocationSource, RevocationWatcher, RevokedSessions
from services.kit.settings import Settings
from services.kit.tokens import TokenVerifier, auth_key_source, verifier_from_settings

_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{}],
                "timeout": "30s",
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


class _Metadata:
    """The metadata every internal call carries: the request id, the internal token, and for the
    audit trail the client's address and the acting user (services/kit/audit.py)."""

    def __init__(self, internal_token: str) -> None:
        self._internal_token = internal_token

    def details(self, call_details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = list(call_details.metadata or [])
        present = {key for key, _ in metadata}
        # The request's context, unless the caller set it (or there is none: "-", outside a request).
        request_id = current_request_id()
        if "x-request-id" not in present and request_id != "-":
            metadata.append(("x-request-id", request_id))
        address = current_client_address()
        if address and CLIENT_ADDRESS_HEADER not in present:
            metadata.append((CLIENT_ADDRESS_HEADER, address))
        actor = current_actor_id()
        if actor and ACTOR_HEADER not in present:
            metadata.append((ACTOR_HEADER, actor))
        if self._internal_token:
            metadata.append((INTERNAL_TOKEN_HEADER, self._internal_token))
        return grpc.aio.ClientCallDetails(
            call_details.method,
            call_details.timeout,
            metadata,
            call_details.credentials,
            call_details.wait_for_ready,
        )


# grpc.aio files each interceptor under one call kind only (the first its class matches), so
# unary calls and server streams (auth's WatchRevocations) need an interceptor each.
class _UnaryMetadataInterceptor(_Metadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self.details(call_details), request)


class _StreamMetadataInterceptor(_Metadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self.details(call_details), request)


def internal_channel(address: str, *, internal_token: str = "") -> grpc.aio.Channel:
    """A channel to another Pinexa service at `host:port`."""
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            # gRPC's default reconnect back-off grows to 120 s, so a peer back after an outage
            # of a few seconds would be found only seconds later; retry at most every second
            # (loopback or in-cluster connects are cheap).
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1_000),
        ],
        # OpenTelemetry's (when tracing is on) first: its span covers the call and sends traceparent.
        interceptors=[
            *tracing.client_interceptors(),
            _UnaryMetadataInterceptor(internal_token),
            _StreamMetadataInterceptor(internal_token),
        ],
    )


def verifier_from_auth(settings: Settings, auth_address: str) -> tuple[TokenVerifier, grpc.aio.Channel]:
    """How users and data verify tokens: against the JWKS of auth at `auth_address` (their
    AUTH_ADDRESS), refusing the sessions auth's revocation stream names, over an internal channel
    that the caller owns and closes at shutdown. The host starts and stops the watcher."""
    channel = internal_channel(auth_address, internal_token=settings.internal_token)
    verifier = verifier_from_settings(settings, auth_key_source(channel))
    verifier.watch_revocations(RevocationWatcher(GrpcRevocationSource(channel), RevokedSessions()))
    return verifier, channel
