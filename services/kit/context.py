"""Per-request context: who is calling and the request id, set by the kit's interceptor."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from services.kit.errors import PinexaError, Unauthenticated

Role = Literal["user", "admin"]


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified identity behind an access token."""

    user_id: str
    role: Role
    token_id: str
    expires_at: int
    session_id: str = ""  # the "sid" claim: the login this token belongs to

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def can_act_for(self, user_id: str) -> bool:
        """True for the user themself and for an admin."""
        return self.is_admin or self.user_id == user_id


_principal: ContextVar[Principal | None] = ContextVar("pinexa_principal", default=None)
_request_id: ContextVar[str] = ContextVar("pinexa_request_id", default="-")
# On a public method, why a presented token was refused; require_principal() raises it.
_auth_error: ContextVar[PinexaError | None] = ContextVar("pinexa_auth_error", default=None)


def current_principal() -> Principal | None:
    """The caller of the current RPC, or None on a public method without a token."""
    return _principal.get()


def require_principal() -> Principal:
    """The caller of the current RPC; UNAUTHENTICATED when there is none."""
    principal = _principal.get()
    if principal is None:
        error = _auth_error.get()
        if error is not None:
            raise error
        raise Unauthenticated("a bearer access token is required", reason="TOKEN_MISSING")
    return principal


def current_request_id() -> str:
    return _request_id.get()


# The interceptor sets these; everything else only reads.
principal_var = _principal
request_id_var = _request_id
auth_error_var = _auth_error
