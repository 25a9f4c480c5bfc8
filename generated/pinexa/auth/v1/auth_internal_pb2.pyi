from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRevocationsRequest(_message.Message):
    __slots__ = ("after",)
    AFTER_FIELD_NUMBER: _ClassVar[int]
    after: int
    def __init__(self, after: _Optional[int] = ...) -> None: ...

class RevocationBatch(_message.Message):
    __slots__ = ("revocations", "cursor", "reset")
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    revocations: _containers.RepeatedCompositeFieldContainer[Revocation]
    cursor: int
    reset: bool
    def __init__(self, revocations: _Optional[_Iterable[_Union[Revocation, _Mapping]]] = ..., cursor: _Optional[int] = ..., reset: _Optional[bool] = ...) -> None: ...

class Revocation(_message.Message):
    __slots__ = ("session_id", "expires_at")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    expires_at: int
    def __init__(self, session_id: _Optional[str] = ..., expires_at: _Optional[int] = ...) -> None: ...

class ListAuditRecordsRequest(_message.Message):
    __slots__ = ("filter", "subject_id", "after_occurred_at_ms", "after_id", "limit")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_OCCURRED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    filter: str
    subject_id: str
    after_occurred_at_ms: int
    after_id: str
    limit: int
    def __init__(self, filter: _Optional[str] = ..., subject_id: _Optional[str] = ..., after_occurred_at_ms: _Optional[int] = ..., after_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAuditRecordsResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AuditRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[AuditRecord, _Mapping]]] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("id", "occurred_at_ms", "type", "outcome", "actor_id", "subject_id", "client_address", "request_id", "detail")
    class DetailEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    id: str
    occurred_at_ms: int
    type: str
    outcome: str
    actor_id: str
    subject_id: str
    client_address: str
    request_id: str
    detail: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., occurred_at_ms: _Optional[int] = ..., type: _Optional[str] = ..., outcome: _Optional[str] = ..., actor_id: _Optional[str] = ..., subject_id: _Optional[str] = ..., client_address: _Optional[str] = ..., request_id: _Optional[str] = ..., detail: _Optional[_Mapping[str, str]] = ...) -> None: ...
