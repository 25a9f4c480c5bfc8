"""`pinexa.auth.v1.AuthService` over gRPC: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import math
from typing import Any

import grpc

from pinexa.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth.domain import AuthDomain, TokenPair
from services.kit import metrics
from services.kit.client import client_ip
from services.kit.context import current_principal, require_principal
from services.kit.errors import ResourceExhausted, Unauthenticated


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
