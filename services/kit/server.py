"""The server factory every service uses: grpc.aio with health, reflection, the interceptor and
graceful shutdown.

A service describes itself with a `ServiceSpec`; `ServiceHost` runs it:

    host = ServiceHost(spec, settings=settings, verifier=verifier)
    port = await host.start("127.0.0.1:0")   # tests bind port 0 and use the port returned
    ...
    await host.stop(grace=5)                  # NOT_SERVING first, then in-flight calls finish

`run_until_signal` is what each service's `__main__` calls: it serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from services.kit import metrics, tracing
from services.kit.edge_reflection import add_edge_reflection
from services.kit.errors import PinexaError
from services.kit.interceptor import PinexaInterceptor
from services.kit.outage import OutageLog
from services.kit.settings import Settings
from services.kit.tokens import TokenVerifier
from services.kit.wrapping import WrappingRegistrar

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# A health service name that is SERVING from start until shutdown, whatever the dependencies say:
# Kubernetes' liveness probe asks for it, so a database outage makes a pod unready (readiness asks
# for the overall status, "") but never gets it restarted.
LIVENESS_SERVICE = "liveness"

MAX_CONNECTION_AGE_MS = 5 * 60 * 1000

# 4 MiB is gRPC's default; data items may carry 1 MiB of content plus attributes. Envoy refuses
# bodies over 2 MiB (EnvoyParams.max_request_bytes) first, so nothing it forwards is refused here.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

# Request metadata (headers) a service accepts. gRPC's defaults (a soft limit of 8 KiB, above which
# calls are refused at random with RESOURCE_EXHAUSTED, and a hard one of 16 KiB) are below what
# Envoy accepts and forwards: headers up to EnvoyParams.max_request_headers_kb (32 KiB) plus what
# Envoy adds (x-envoy-original-path repeats a path of up to 8 KiB, x-request-id, x-forwarded-for,
# ...). Soft and hard limits are equal, so the answer never depends on chance.
# tests/e2e/test_envoy_config.py checks this stays above what Envoy forwards.
MAX_METADATA_BYTES = 64 * 1024


@dataclass(kw_only=True)
class ServiceSpec:
    """What a service contributes to the shared server."""

    name: str
    """Short name for logs, metrics and ErrorInfo.domain (`pinexa.<name>`)."""
    register: Callable[[grpc.aio.Server], None]
    """Adds the servicers to the server."""
    service_names: Sequence[str]
    """Full names of the gRPC services it serves, for health and reflection."""
    public_methods: frozenset[str] = frozenset()
    """Full method names callable without an access token."""
    internal_services: frozenset[str] = frozenset()
    """Services meant for other Pinexa services only (never routed by Envoy)."""
    free_text_fields: frozenset[str] = frozenset()
    """Full names of string fields holding free text, where tab, newline and CR are allowed
    (every other text field refuses all control characters)."""
    readiness: Callable[[], Awaitable[None]] | None = None
    """Raises when the service's own database is unreachable; drives the health status."""
    dependency: str = "database"
    """What `readiness` checks, for the one log line when it goes down and the one when it is back."""
    outage: OutageLog | None = None
    """The record of `dependency`'s state, when other parts of the service (a background
    worker) report to it too; by default the host makes its own."""
    translate_error: Callable[[Exception], PinexaError | None] | None = None
    """Maps an exception a handler let through (e.g. `sql.translate_error`: a database outage)
    to the error the client gets; None leaves it a 500. A `DependencyUnavailable`, raised or
    translated, makes the host re-check health at once."""
    on_start: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Run once after the port is bound (e.g. background workers)."""
    on_stop: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Run after the server has stopped (close pools and clients)."""


class ServiceHost:
    """One running gRPC server for one service."""

    def __init__(self, spec: ServiceSpec, *, settings: Settings, verifier: TokenVerifier | None) -> None:
        self.spec = spec
        self._settings = settings
        self._verifier = verifier
        self.health = health.aio.HealthServicer()
        self._interceptor = PinexaInterceptor(
            service=spec.name,
            verifier=verifier,
            public_methods=spec.public_methods,
            internal_services=spec.internal_services,
            internal_token=settings.internal_token,
            translate_error=spec.translate_error,
            on_dependency_unavailable=self.recheck_soon,
            free_text_fields=spec.free_text_fields,
        )
        self.outage = spec.outage or OutageLog(log, component=spec.name, dependency=spec.dependency)
        self._check_lock = asyncio.Lock()
        self._recheck: asyncio.Task[None] | None = None
        self.server = grpc.aio.server(
            # The kit's interceptor is applied to each handler as it is registered (`registrar`
            # below), so no call pays for it as a grpc.aio interceptor; only OpenTelemetry's server
            # interceptor is one, when tracing is on (its span encloses everything below it).
            interceptors=tracing.server_interceptors(),
            options=[
                ("grpc.max_metadata_size", MAX_METADATA_BYTES),
                ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                # Close each client connection after a while (gracefully: in-flight calls finish),
                # so clients re-resolve DNS and spread over pods added since they connected.
                ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
                ("grpc.max_connection_age_grace_ms", 30_000),
                # A peer that vanished without closing (no FIN) is found within 80 s: ping an idle
                # connection every 60 s, drop it after 20 s without an answer.
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
                # Envoy pings its idle upstream connections every 30 s (connection_keepalive in the
                # clusters); gRPC's default would count those as abuse (under 5 min apart without
                # data) and close the connection with GOAWAY too_many_pings.
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ],
        )
        # Everything registers through this stand-in for the server, which wraps each handler
        # once with the kit's interceptor (services/kit/wrapping.py).
        registrar: Any = WrappingRegistrar(self.server, self._interceptor.wrap_handler)
        spec.register(registrar)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, registrar)
        # What reflection.enable_server_reflection does for a grpc.aio server (it tells one by
        # its class, which the registrar is not).
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(
                [*spec.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
            ),
            registrar,
        )
        add_edge_reflection(registrar)  # what Envoy serves as reflection: the public API only
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False
        self.port = 0

    async def start(self, address: str) -> int:
        """Bind and start serving; returns the bound port (useful with port 0)."""
        self.port = self.server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"could not bind {address}")
        await self.health.set(LIVENESS_SERVICE, SERVING)
        # grpc's HealthServicer starts "" as SERVING: not ready until the first check says so.
        await self._set_status(NOT_SERVING)
        await self.server.start()
        if self._verifier is not None:
            await self._verifier.start()  # follows auth's revocations from now on
        await self._check_once()
        for hook in self.spec.on_start:
            await hook()
        self._monitor = asyncio.create_task(self._watch_health(), name=f"{self.spec.name}-health")
        log.info("serving", extra={"address": address, "port": self.port})
        return self.port

    async def _set_status(self, status: int) -> None:
        metrics.set_serving(self.spec.name, status == SERVING and not self._stopping)
        for name in ("", *self.spec.service_names):
            await self.health.set(name, status)

    def recheck_soon(self) -> None:
        """Check health now rather than at the next interval (a request just met an outage).
        At most one such check runs at a time; requests meanwhile add none."""
        if self._stopping or (self._recheck is not None and not self._recheck.done()):
            return
        self._recheck = asyncio.get_running_loop().create_task(
            self._check_once(), name=f"{self.spec.name}-health-recheck"
        )

    async def _check_once(self) -> None:
        async with self._check_lock:
            if self._stopping:
                return
            ok = True
            if self.spec.readiness is not None:
                try:
                    with tracing.untraced():  # a ping every few seconds is no one's request
                        await asyncio.wait_for(
                            self.spec.readiness(),
                            timeout=max(1.0, self._settings.health_check_interval_seconds),
                        )
                except Exception as exc:  # any failure means the dependency is not usable
                    ok = False
                    self.outage.down(exc)  # logs once per outage, not once per check
            if ok:
                self.outage.up()
            await self._set_status(SERVING if ok else NOT_SERVING)  # ignored once shutting down

    async def _watch_health(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._settings.health_check_interval_seconds)
            await self._check_once()

    async def stop(self, grace: float | None = None, drain: float | None = None) -> None:
        """Report NOT_SERVING and keep serving for `drain` seconds, so health checkers (Envoy,
        Kubernetes) take this instance out of rotation; then refuse new calls and let
        in-flight calls finish within `grace` seconds."""
        if self._stopping:
            return
        self._stopping = True
        metrics.set_serving(self.spec.name, False)
        grace = self._settings.shutdown_grace_seconds if grace is None else grace
        drain = self._settings.shutdown_drain_seconds if drain is None else drain
        await self.health.enter_graceful_shutdown()
        for task in (self._monitor, self._recheck):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if drain > 0:
            await asyncio.sleep(drain)  # a deliberate drain period, not a wait for readiness
        await self.server.stop(grace)
        if self._verifier is not None:
            await self._verifier.stop()
        for hook in self.spec.on_stop:
            try:
                await hook()
            except Exception:
                log.exception("error while closing %s", self.spec.name)
        log.info("stopped")


async def run_until_signal(host: ServiceHost, address: str) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await host.start(address)
    await stop.wait()
    log.info("signal received; draining")
    await host.stop()
