"""Domain errors and their wire form: a google.rpc.Status with ErrorInfo and BadRequest details.

Domain code raises these; the kit's interceptor turns them into the gRPC status, which Envoy's
transcoder turns into JSON with the matching HTTP status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


class PinexaError(Exception):
    """Base of every error a client may see. `reason` is a stable UPPER_SNAKE code."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})

    def details(self) -> list[any_pb2.Any]:
        """Extra google.rpc detail messages beyond ErrorInfo; subclasses add theirs."""
        return []

    def to_status(self, domain: str) -> grpc.Status:
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=domain, metadata=self.metadata))
        status = status_pb2.Status(
            code=self.code.value[0], message=self.message, details=[info, *self.details()]
        )
        return rpc_status.to_status(status)


class InvalidArgument(PinexaError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_INPUT"

    def __init__(self, message: str, violations: Iterable[tuple[str, str]] = (), **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.violations = list(violations)

    def details(self) -> list[any_pb2.Any]:
        if not self.violations:
            return []
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in self.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        return [packed]


class Unauthenticated(PinexaError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(PinexaError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class FailedPrecondition(PinexaError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class NotFound(PinexaError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(PinexaError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class EtagMismatch(PinexaError):
    """A stale etag (AIP-154): someone else changed the resource first."""

    code = grpc.StatusCode.ABORTED
    default_reason = "ETAG_MISMATCH"


class ResourceExhausted(PinexaError):
    """Too many attempts; `retry_after` seconds go out as a google.rpc.RetryInfo."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after

    def details(self) -> list[any_pb2.Any]:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(self.retry_after * 1e9))
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        return [packed]


class Unavailable(PinexaError):
    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class DependencyUnavailable(Unavailable):
    """The service's own store is down, cut off or overloaded (UNAVAILABLE, REST 503).

    Raised (or translated, see `ServiceSpec.translate_error`) for an outage of the database the
    service's health follows; the server re-checks health at once when one reaches a client.
    A write that fails this way may or may not have been applied: clients retry idempotently.
    """

    default_reason = "DATABASE_UNAVAILABLE"


def internal_error_status(domain: str) -> grpc.Status:
    """What a client sees for an unexpected failure: no exception text, no stack."""
    return PinexaError("internal error", reason="INTERNAL").to_status(domain)


class Violations:
    """Collects field violations so one response can name every bad field at once."""

    def __init__(self) -> None:
        self._items: list[tuple[str, str]] = []

    def add(self, field: str, description: str) -> None:
        self._items.append((field, description))

    def check(self, ok: bool, field: str, description: str) -> None:
        if not ok:
            self.add(field, description)

    def report(self, field: str, problem: str | None) -> None:
        """Add `problem` for `field` unless it is None (a validator's "no problem")."""
        if problem is not None:
            self.add(field, problem)

    def __bool__(self) -> bool:
        return bool(self._items)

    def raise_if_any(self, message: str = "the request has invalid fields") -> None:
        if self._items:
            summary = "; ".join(f"{f}: {d}" for f, d in self._items)
            raise InvalidArgument(f"{message}: {summary}", self._items)


__all__ = [
    "AlreadyExists",
    "DependencyUnavailable",
    "EtagMismatch",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "PinexaError",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Violations",
    "internal_error_status",
]
