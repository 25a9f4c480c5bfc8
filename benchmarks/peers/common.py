"""What both FastAPI peers share: settings, JWT verification with PyJWT, counters, the reply."""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse


@dataclass(frozen=True)
class PeerSettings:
    database_url: str  # postgresql://... (psycopg) or the SQLAlchemy URL of the same database
    jwks_url: str  # Pinexa's JWKS (Envoy's /.well-known/jwks.json): the keys auth signs with
    issuer: str
    audience: str

    @classmethod
    def from_env(cls) -> PeerSettings:
        return cls(
            database_url=os.environ["PEER_DATABASE_URL"],
            jwks_url=os.environ["PEER_JWKS_URL"],
            issuer=os.environ.get("PEER_JWT_ISSUER", "pinexa-auth"),
            audience=os.environ.get("PEER_JWT_AUDIENCE", "pinexa"),
        )


class Verifier:
    """Verifies every token with PyJWT, on every request (the peers cache nothing)."""

    def __init__(self, settings: PeerSettings) -> None:
        with urllib.request.urlopen(settings.jwks_url, timeout=10) as response:  # noqa: S310 (local URL)
            self._keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(json.loads(response.read())).keys}
        self._issuer = settings.issuer
        self._audience = settings.audience

    def verify(self, authorization: str | None) -> dict[str, Any]:
        if not authorization or not authorization.startswith("Bearer "):
            raise HTTPException(status_code=401, detail="missing bearer token")
        token = authorization[7:]
        try:
            key = self._keys[jwt.get_unverified_header(token).get("kid")]
            return dict(
                jwt.decode(
                    token,
                    key.key,
                    algorithms=["ES256"],
                    audience=self._audience,
                    issuer=self._issuer,
                    options={"require": ["exp", "iat", "iss", "aud", "sub"]},
                )
            )
        except (KeyError, jwt.PyJWTError):
            raise HTTPException(status_code=401, detail="invalid token") from None


@dataclass
class Counters:
    ok: int = 0
    errors: int = 0


def user_json(row: Any) -> dict[str, Any]:
    """The reply: the row's public fields (email and display_name are Pinexa's ciphertext; the
    peers do not decrypt, which Pinexa's profile puts at under 20 µs)."""

    def iso(value: datetime) -> str:
        return value.isoformat() if isinstance(value, datetime) else str(value)

    return {
        "id": row.id,
        "username": row.username,
        "email": row.email,
        "displayName": row.display_name,
        "role": row.role,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
    }


def add_counters(app: FastAPI, counters: Counters) -> None:
    """Count every answer of the GetUser route: 2xx as ok, anything else as an error."""

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        if request.url.path.startswith("/_bench/"):
            return await call_next(request)
        try:
            response = await call_next(request)
        except Exception:
            counters.errors += 1
            raise
        if 200 <= response.status_code < 300:
            counters.ok += 1
        else:
            counters.errors += 1
        return response

    @app.get("/_bench/counters")
    async def read_counters() -> JSONResponse:
        return JSONResponse({"ok": counters.ok, "errors": counters.errors})
