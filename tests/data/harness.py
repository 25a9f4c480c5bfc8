"""The data-suite harness: a running data service with stubs, and helpers to make items."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import field_mask_pb2, struct_pb2

from pinexa.data.v1 import data_internal_pb2_grpc, data_pb2, data_pb2_grpc
from services.data.config import DataSettings
from services.kit.server import ServiceHost
from tests.support import TestKeys, bearer

INTERNAL_TOKEN = "test-internal-token-0123456789abcdef"
# Attribute values of every JSON kind, nested, for round trips (over gRPC and through the stores).
ATTRIBUTES = {
    "color": "red",
    "n": 3,
    "ratio": 0.25,
    "ok": True,
    "none": None,
    "tags": ["a", "b"],
    "nested": {"deep": {"list": [1, {"x": "y"}]}},
    "unicode": "grüße ✓",
}


class DataClient:
    """A running data service and stubs to call it, plus token helpers."""

    def __init__(self, host: ServiceHost, keys: TestKeys, database: str) -> None:
        self.host = host
        self.keys = keys
        self.database = database
        self.address = f"127.0.0.1:{host.port}"
        self.channel = grpc.aio.insecure_channel(self.address)
        self.data = data_pb2_grpc.DataServiceStub(self.channel)
        self.internal = data_internal_pb2_grpc.DataInternalServiceStub(self.channel)

    def auth(self, user_id: str, role: str = "user") -> tuple[tuple[str, str], ...]:
        return bearer(self.keys.mint(user_id, role))

    def internal_auth(self) -> tuple[tuple[str, str], ...]:
        return (("x-pinexa-internal-token", INTERNAL_TOKEN),)

    async def create(
        self,
        user_id: str,
        title: str = "a title",
        *,
        content: str = "",
        status: int = data_pb2.Item.STATUS_UNSPECIFIED,
        attributes: dict[str, Any] | None = None,
        role: str = "user",
    ) -> data_pb2.Item:
        item = data_pb2.Item(title=title, content=content, status=status)
        if attributes is not None:
            item.attributes.update(attributes)
        return await self.data.CreateItem(
            data_pb2.CreateItemRequest(item=item), metadata=self.auth(user_id, role)
        )

    async def get(self, user_id: str, item_id: str, *, role: str = "user") -> data_pb2.Item:
        return await self.data.GetItem(data_pb2.GetItemRequest(id=item_id), metadata=self.auth(user_id, role))

    async def update(
        self,
        user_id: str,
        item: data_pb2.Item,
        *,
        mask: list[str] | None = None,
        role: str = "user",
    ) -> data_pb2.Item:
        request = data_pb2.UpdateItemRequest(item=item)
        if mask is not None:
            request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=mask))
        return await self.data.UpdateItem(request, metadata=self.auth(user_id, role))

    async def list(self, user_id: str, *, role: str = "user", **fields: Any) -> data_pb2.ListItemsResponse:
        return await self.data.ListItems(
            data_pb2.ListItemsRequest(**fields), metadata=self.auth(user_id, role)
        )

    async def list_all(self, user_id: str, *, role: str = "user", **fields: Any) -> list[data_pb2.Item]:
        """Every page, following next_page_token."""
        items: list[data_pb2.Item] = []
        token = ""
        while True:
            page = await self.list(user_id, role=role, page_token=token, **fields)
            items.extend(page.items)
            token = page.next_page_token
            if not token:
                return items


def data_settings(database: str, **overrides: Any) -> DataSettings:
    values: dict[str, Any] = {
        "mongodb_database": database,
        "health_check_interval_seconds": 0.1,
        "shutdown_grace_seconds": 2,
        "shutdown_drain_seconds": 0,
        "internal_token": INTERNAL_TOKEN,
        **overrides,
    }
    return DataSettings(**values)


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message
