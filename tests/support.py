"""Helpers shared by the test suites: free ports, a test signing key, token minting, waiting."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from services.kit.tokens import StaticKeySource, TokenVerifier

ISSUER = "pinexa-auth"
AUDIENCE = "pinexa"


class FakeClock:
    """A clock the test moves with `advance(seconds)`; calling it gives UNIX seconds (auth's
    clock), `utc()` an aware datetime (users' clock), `utc_ms()` one to the millisecond (data's).

    Frozen at `start` when one is given (the domain tests: nothing moves unless told), else real
    time plus the advances (the real-server tests, whose other parts read the real clock)."""

    def __init__(self, start: float | None = None) -> None:
        self._start = start
        self.offset = 0.0

    def __call__(self) -> float:
        return (time.time() if self._start is None else self._start) + self.offset

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self(), UTC)

    def utc_ms(self) -> datetime:
        """`utc()` floored to the millisecond, as BSON dates hold it (data's clock)."""
        moment = self.utc()
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1 (for processes that can't bind port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def access_claims(sub: str = "user-1", role: str = "user", **overrides: Any) -> dict[str, Any]:
    """The claims auth puts in an access token, valid for 5 minutes; an override of None drops
    that claim."""
    now = int(time.time())
    values = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "role": role,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        **overrides,
    }
    return {k: v for k, v in values.items() if v is not None}


class TestKeys:
    """An ES256 key pair standing in for auth's signing key; tests mint tokens with it."""

    __test__ = False

    def __init__(self, kid: str = "test-key-1") -> None:
        self.kid = kid
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        self.jwk: dict[str, Any] = {**jwk, "kid": kid, "alg": "ES256", "use": "sig"}

    def mint(
        self,
        sub: str,
        role: str = "user",
        *,
        ttl: int = 300,
        headers: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        payload = access_claims(sub, role, exp=int(time.time()) + ttl, **overrides)
        return jwt.encode(
            payload, self.private_key, algorithm="ES256", headers={"kid": self.kid, **(headers or {})}
        )

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(StaticKeySource([self.jwk]), issuer=ISSUER, audience=AUDIENCE)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def rpc_error(
    call: Awaitable[Any], code: grpc.StatusCode | None = None, reason: str | None = None
) -> grpc.aio.AioRpcError:
    """The error a gRPC call fails with; the test fails if the call succeeds, or if the status
    code or the ErrorInfo reason differs from the ones given."""
    try:
        response = await call
    except grpc.aio.AioRpcError as error:
        if code is not None:
            assert error.code() == code, (error.code(), error.details())
        if reason is not None:
            info = error_info(error)
            assert info is not None and info.reason == reason, info
        return error
    raise AssertionError(f"the call succeeded: {response!r}")


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo detail of a failed call, if it carries one."""
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """field → description of a failed call's BadRequest detail."""
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return {v.field: v.description for v in bad.field_violations}
    return {}


async def wait_until(
    predicate: Callable[[], Awaitable[bool]],
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Poll `predicate` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await predicate():
                return
        except Exception:  # not up yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


async def health_status(address: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
        return int(response.status)


async def wait_serving(address: str, service: str = "", timeout: float = 30.0) -> None:
    async def serving() -> bool:
        return await health_status(address, service) == health_pb2.HealthCheckResponse.SERVING

    await wait_until(serving, timeout=timeout, what=f"{address} to report SERVING")
