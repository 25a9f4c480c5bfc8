"""Stateless verification of access tokens against a JWKS.

Every service verifies bearer JWTs locally with `TokenVerifier`, using the public keys that auth
publishes. Keys are cached, refetched when a token names an unknown `kid` (at most once per
`min_refresh_interval`), and kept when auth is briefly unreachable. Verified tokens are cached
until they expire, so a hot client costs one signature check, not one per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import jwt
from google.protobuf.json_format import MessageToDict

from pinexa.auth.v1 import auth_pb2, auth_pb2_grpc
from services.kit.context import Principal
from services.kit.errors import Unauthenticated, Unavailable
from services.kit.outage import OutageLog
from services.kit.revocations import RevocationWatcher

log = logging.getLogger(__name__)

Jwk = dict[str, Any]


class KeySource(Protocol):
    """Where public keys come from: auth's GetJwks over gRPC, or a fixed list."""

    async def fetch(self) -> Sequence[Jwk]: ...


class StaticKeySource:
    """A fixed key set: auth uses its own keys this way, tests use a test key pair."""

    def __init__(self, keys: Sequence[Jwk] | Callable[[], Sequence[Jwk]]) -> None:
        self._keys = keys

    async def fetch(self) -> Sequence[Jwk]:
        return self._keys() if callable(self._keys) else self._keys


class CallableKeySource:
    """Adapts any coroutine function returning JWK dicts (e.g. a gRPC GetJwks call)."""

    def __init__(self, fetch: Callable[[], Awaitable[Sequence[Jwk]]]) -> None:
        self._fetch = fetch

    async def fetch(self) -> Sequence[Jwk]:
        return await self._fetch()


def _reject(reason: str, message: str) -> Unauthenticated:
    return Unauthenticated(message, reason=reason)


DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 900  # Settings.access_token_ttl_seconds' default


class TokenVerifier:
    """Verifies ES256/EdDSA access tokens: signature, kid, alg allow-list, iss, aud, exp, nbf,
    and a lifetime (exp - iat) no longer than `max_lifetime_seconds` plus the leeway: auth never
    issues a longer one, so a correctly signed token that lives longer (a leaked signing key, a
    bug) is refused even before it expires. Envoy's jwt_authn cannot check this; the services do.
    """

    def __init__(
        self,
        source: KeySource,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str] = ("ES256", "EdDSA"),
        leeway_seconds: int = 30,
        max_lifetime_seconds: int = DEFAULT_ACCESS_TOKEN_TTL_SECONDS,
        min_refresh_interval: float = 5.0,
        max_key_age: float = 300.0,
        cache_size: int = 10_000,
    ) -> None:
        self._source = source
        self._issuer = issuer
        self._audience = audience
        self._algorithms = frozenset(algorithms)
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime_seconds + leeway_seconds
        self._min_refresh_interval = min_refresh_interval
        self._max_key_age = max_key_age
        self._cache_size = cache_size
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._last_attempt = float("-inf")
        self._refresh_lock = asyncio.Lock()
        self._jwks_outage = OutageLog(log, component="token verifier", dependency="auth's JWKS")
        # token digest -> (principal, kid); an entry is used only while its key is still published
        self._cache: OrderedDict[bytes, tuple[Principal, str]] = OrderedDict()
        self.revocations: RevocationWatcher | None = None

    def watch_revocations(self, watcher: RevocationWatcher) -> None:
        """Refuse tokens of the sessions `watcher` reports revoked (started by `start`)."""
        self.revocations = watcher

    async def start(self) -> None:
        """Start following revocations, if a watcher was given; the service host calls this."""
        if self.revocations is not None:
            self.revocations.start()

    async def stop(self) -> None:
        if self.revocations is not None:
            await self.revocations.stop()

    def _check_session(self, principal: Principal) -> Principal:
        if self.revocations is not None and principal.session_id in self.revocations.revoked:
            raise _reject("SESSION_REVOKED", "the session of this access token has ended")
        return principal

    async def refresh_keys(self, *, force: bool = False) -> None:
        """Refetch the key set; failures keep the keys we have (auth may be restarting)."""
        async with self._refresh_lock:
            now = time.monotonic()
            if not force and now - self._last_attempt < self._min_refresh_interval:
                return
            self._last_attempt = now
            try:
                jwks = await self._source.fetch()
            except Exception as exc:  # any transport failure: keep serving with cached keys
                self._jwks_outage.down(f"{type(exc).__name__}; keeping {len(self._keys)} cached keys")
                return
            self._jwks_outage.up()
            keys: dict[str, jwt.PyJWK] = {}
            for jwk in jwks:
                try:
                    key = jwt.PyJWK(jwk)
                except jwt.PyJWTError:
                    log.warning("ignoring a malformed JWK with kid %r", jwk.get("kid"))
                    continue
                if key.key_id and key.algorithm_name in self._algorithms:
                    keys[key.key_id] = key
            self._keys = keys
            self._fetched_at = now

    async def _refresh_if_stale(self) -> None:
        """Refetch keys older than `max_key_age`, so that a key withdrawn from the JWKS stops
        verifying. One caller waits for the fetch; while it runs, the others go on with the keys
        we have instead of queueing behind it (auth may be slow or down)."""
        if time.monotonic() - self._fetched_at > self._max_key_age and not self._refresh_lock.locked():
            await self.refresh_keys()

    async def _key_for(self, kid: str) -> jwt.PyJWK:
        if kid not in self._keys:
            await self.refresh_keys()  # waits for a fetch in flight: it may bring this kid
        key = self._keys.get(kid)
        if key is not None:
            return key
        if not self._keys and self._fetched_at == float("-inf"):
            raise Unavailable(
                "the signing keys could not be fetched; try again shortly", reason="JWKS_UNAVAILABLE"
            )
        raise _reject("TOKEN_UNKNOWN_KID", "the access token was signed with an unknown key")

    async def verify(self, token: str) -> Principal:
        if not token:
            raise _reject("TOKEN_MISSING", "a bearer access token is required")
        await self._refresh_if_stale()  # before the lookup: no await between reading and changing the cache
        cache_key = hashlib.blake2b(token.encode(), digest_size=20).digest()
        cached = self._cache.get(cache_key)
        if cached is not None:
            principal, kid = cached
            if principal.expires_at + self._leeway > time.time() and kid in self._keys:
                self._cache.move_to_end(cache_key)
                return self._check_session(principal)
            del self._cache[cache_key]
        principal, kid = await self._verify_uncached(token)
        self._cache[cache_key] = (principal, kid)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return self._check_session(principal)

    async def _verify_uncached(self, token: str) -> tuple[Principal, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _reject("TOKEN_MALFORMED", "the access token is not a well-formed JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:  # a list or dict is unhashable
            raise _reject("TOKEN_ALGORITHM_NOT_ALLOWED", f"tokens signed with {alg!r} are not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _reject("TOKEN_UNKNOWN_KID", "the access token names no signing key")
        key = await self._key_for(kid)
        if key.algorithm_name != alg:
            raise _reject("TOKEN_ALGORITHM_NOT_ALLOWED", "the token's algorithm does not match its key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise _reject("TOKEN_EXPIRED", "the access token has expired") from None
        except jwt.ImmatureSignatureError:
            raise _reject("TOKEN_NOT_YET_VALID", "the access token is not valid yet") from None
        except jwt.InvalidIssuerError:
            raise _reject("TOKEN_ISSUER_INVALID", "the access token has the wrong issuer") from None
        except jwt.InvalidAudienceError:
            raise _reject("TOKEN_AUDIENCE_INVALID", "the access token has the wrong audience") from None
        except jwt.InvalidSignatureError:
            raise _reject("TOKEN_SIGNATURE_INVALID", "the access token's signature does not verify") from None
        except jwt.PyJWTError:
            raise _reject("TOKEN_INVALID", "the access token is invalid") from None
        if not _lifetime_within(claims, self._max_lifetime):
            raise _reject(
                "TOKEN_LIFETIME_TOO_LONG", "the access token lives longer than access tokens are issued for"
            )
        role = claims.get("role")
        if role not in ("user", "admin"):
            raise _reject("TOKEN_INVALID", "the access token carries no valid role")
        sid = claims.get("sid", "")
        amr = claims.get("amr", [])
        auth_time = claims.get("auth_time", 0)
        principal = Principal(
            user_id=str(claims["sub"]),
            role=role,
            token_id=str(claims["jti"]),
            expires_at=int(claims["exp"]),
            session_id=sid if isinstance(sid, str) else "",
            amr=tuple(m for m in amr if isinstance(m, str)) if isinstance(amr, list) else (),
            auth_time=auth_time if isinstance(auth_time, int) and not isinstance(auth_time, bool) else 0,
        )
        return principal, kid


def _lifetime_within(claims: dict[str, Any], limit: int) -> bool:
    exp, iat = claims["exp"], claims["iat"]  # both required, and numbers: PyJWT checked them
    return isinstance(exp, int | float) and isinstance(iat, int | float) and exp - iat <= limit


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or '' when there is none."""
    if not authorization:
        return ""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def auth_key_source(channel: Any) -> CallableKeySource:
    """Keys fetched from auth's GetJwks over an internal gRPC channel."""
    stub = auth_pb2_grpc.AuthServiceStub(channel)

    async def fetch() -> list[Jwk]:
        response = await stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=3)
        return [MessageToDict(key, preserving_proto_field_name=True) for key in response.keys]

    return CallableKeySource(fetch)


def verifier_from_settings(settings: Any, source: KeySource) -> TokenVerifier:
    """The verifier every service builds from its Settings."""
    return TokenVerifier(
        source,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        algorithms=settings.jwt_algorithms,
        leeway_seconds=settings.jwt_leeway_seconds,
        max_lifetime_seconds=settings.access_token_ttl_seconds,
    )
