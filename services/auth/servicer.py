"""`pinexa.auth.v1.AuthService` over gRPC: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import ipaddress
import math
from typing import Any
from urllib.parse import unquote

import grpc

from pinexa.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth.domain import AuthDomain, TokenPair
from services.kit import metrics
from services.kit.context import current_principal, require_principal
from services.kit.errors import ResourceExhausted, Unauthenticated


def _ip(value: str) -> str:
    """`value` as the address to count failures against, or '' when it is not an IP address.

    IPv6 addresses count per /64: one subscriber usually holds a whole /64, and counting single
    addresses would let them rotate through 2^64 of them.
    """
    candidate = unquote(value).strip()
    if candidate.startswith("[") and "]" in candidate:  # [v6] or [v6]:port
        candidate = candidate[1 : candidate.index("]")]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_ip(context: grpc.aio.ServicerContext) -> str:
    """The address of the client behind this call.

    Through Envoy (use_remote_address, no trusted hops, no internal addresses) the client is in
    `x-envoy-external-address`, and also the last entry of `x-forwarded-for` that Envoy appended;
    Envoy strips both from what the client sent. A direct gRPC call has neither, and the peer
    address is used. Auth's gRPC port must therefore be reachable only from Envoy and the other
    services (it is, in k8s, by NetworkPolicy): a direct caller could otherwise claim any address
    and dodge the per-IP counter, though never the per-account one.
    """
    metadata = dict(context.invocation_metadata() or ())
    external = _ip(str(metadata.get("x-envoy-external-address", "")))
    if external:
        return external
    forwarded = str(metadata.get("x-forwarded-for", ""))
    if forwarded:
        last_hop = _ip(forwarded.rsplit(",", 1)[-1])
        if last_hop:
            return last_hop
    kind, _, rest = unquote(str(context.peer() or "")).partition(":")  # ipv4:a.b.c.d:port, ipv6:[..]:port
    return _ip(rest.rsplit(":", 1)[0]) if kind in ("ipv4", "ipv6") else ""


def _fields(pair: TokenPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
    }


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, auth: AuthDomain) -> None:
        self._auth = auth

    async def Login(
        self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LoginResponse:
        try:
            pair = await self._auth.login(
                request.username,
                request.password,
                client_ip=client_ip(context),
                device_token=request.device_token,
            )
        except Unauthenticated:
            metrics.login("failed")
            raise
        except ResourceExhausted as error:
            metrics.login("throttled")
            # RetryInfo is in the status; HTTP clients also get the usual Retry-After header.
            await context.send_initial_metadata((("retry-after", str(math.ceil(error.retry_after))),))
            raise
        metrics.login("succeeded")
        return auth_pb2.LoginResponse(**_fields(pair), device_token=pair.device_token)

    async def Refresh(
        self, request: auth_pb2.RefreshRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RefreshResponse:
        pair = await self._auth.refresh(request.refresh_token)
        return auth_pb2.RefreshResponse(**_fields(pair))

    async def Logout(
        self, request: auth_pb2.LogoutRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LogoutResponse:
        # all_sessions needs a valid access token: require_principal() raises why the presented
        # one was refused (expired, bad signature ...) or that none was sent.
        principal = require_principal() if request.all_sessions else current_principal()
        revoked = await self._auth.logout(
            request.refresh_token, all_sessions=request.all_sessions, principal=principal
        )
        return auth_pb2.LogoutResponse(revoked_sessions=revoked)

    async def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.JsonWebKey(**jwk) for jwk in self._auth.jwks()])
