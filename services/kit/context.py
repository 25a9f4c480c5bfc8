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
    amr: tuple[str, ...] = ()  # how the user signed in: ("pwd",) or ("pwd", "otp")
    auth_time: int = 0  # when they last proved it (login or reauthentication), Unix seconds

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def can_act_for(self, user_id: str) -> bool:
        """True for the user themself and for an admin."""
        return self.is_admin or self.user_id == user_id


class CallState:
    """What the interceptor knows about the current RPC: one object in one context variable (set
    once per call), filled in as authentication goes."""

    __slots__ = ("auth_error", "principal", "request_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.principal: Principal | None = None
        # On a public method, why a presented token was refused; require_principal() raises it.
        self.auth_error: PinexaError | None = None


_call: ContextVar[CallState | None] = ContextVar("pinexa_call", default=None)


def current_principal() -> Principal | None:
    """The caller of the current RPC, or None on a public method without a token."""
    call = _call.get()
    return None if call is None else call.principal


def require_principal() -> Principal:
    """The caller of the current RPC; UNAUTHENTICATED when there is none."""
    call = _call.get()
    if call is not None:
        if call.principal is not None:
            return call.principal
        if call.auth_error is not None:
            raise call.auth_error
    raise Unauthenticated("a bearer access token is required", reason="TOKEN_MISSING")


def current_request_id() -> str:
    call = _call.get()
    return "-" if call is None else call.request_id


# The interceptor sets this; everything else only reads.
call_var = _call
