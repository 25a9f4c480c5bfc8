"""The audit trail across services: auth serves its records over AuthInternalService.ListAuditRecords
and users lists them with its own (services/kit/audit.py `list_page`). Both sides' conversions are
here, so the wire shape is defined once."""

from __future__ import annotations

import logging
from typing import Any

import grpc

from pinexa.auth.v1 import auth_internal_pb2, auth_internal_pb2_grpc
from services.kit import audit
from services.kit.errors import InvalidArgument, Unavailable
from services.kit.outage import OutageLog

log = logging.getLogger(__name__)

MAX_LIMIT = 101  # a page of at most 100, plus one to tell whether there is more


def to_record(event: audit.AuditEvent) -> auth_internal_pb2.AuditRecord:
    return auth_internal_pb2.AuditRecord(
        id=event.id,
        occurred_at_ms=event.occurred_at,
        type=event.type,
        outcome=event.outcome,
        actor_id=event.actor_id,
        subject_id=event.subject_id,
        client_address=event.client_address,
        request_id=event.request_id,
        detail={key: str(value) for key, value in event.detail.items()},
    )


def from_record(record: auth_internal_pb2.AuditRecord, *, service: str) -> audit.AuditEvent:
    return audit.AuditEvent(
        id=record.id,
        occurred_at=record.occurred_at_ms,
        service=service,
        type=record.type,
        outcome=record.outcome,
        actor_id=record.actor_id,
        subject_id=record.subject_id,
        client_address=record.client_address,
        request_id=record.request_id,
        detail=dict(record.detail),
    )


def query_of(request: auth_internal_pb2.ListAuditRecordsRequest) -> audit.AuditQuery:
    """The query a ListAuditRecords request asks; INVALID_ARGUMENT for a bad filter or limit."""
    if not 1 <= request.limit <= MAX_LIMIT:
        raise InvalidArgument("limit must be 1 to 101", [("limit", "must be 1 to 101")])
    after = (request.after_occurred_at_ms, request.after_id) if request.after_id else None
    node = audit.parse_filter(request.filter)
    return audit.AuditQuery(node, request.subject_id, after, request.limit, filter_text=request.filter)


class GrpcAuditSource:
    """auth's audit records, as users lists them: one `audit.AuditSource` over an internal channel.
    auth down (or answering UNAVAILABLE) is 503 AUTH_UNAVAILABLE: a page without auth's records
    would silently miss logins, so none is given."""

    def __init__(self, channel: Any, *, service: str = "auth") -> None:
        self._stub = auth_internal_pb2_grpc.AuthInternalServiceStub(channel)
        self._service = service
        self._outage = OutageLog(log, component="users", dependency="auth's audit records")

    async def list(self, query: audit.AuditQuery) -> list[audit.AuditEvent]:
        request = auth_internal_pb2.ListAuditRecordsRequest(
            filter=query.filter_text,
            subject_id=query.subject_id,
            after_occurred_at_ms=query.after[0] if query.after else 0,
            after_id=query.after[1] if query.after else "",
            limit=query.limit,
        )
        try:
            response = await self._stub.ListAuditRecords(request, timeout=5)
        except grpc.aio.AioRpcError as error:
            self._outage.down(f"ListAuditRecords: {error.code().name}")
            raise Unavailable(
                "auth's audit records are unavailable; try again shortly", reason="AUTH_UNAVAILABLE"
            ) from None
        self._outage.up()
        return [from_record(record, service=self._service) for record in response.records]
