"""Thin protobuf <-> domain adapters for DataService and DataInternalService."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2, struct_pb2

from pinexa.data.v1 import data_internal_pb2, data_internal_pb2_grpc, data_pb2, data_pb2_grpc
from services.data.domain import DataDomain, ItemInput
from services.data.model import Item
from services.kit.context import require_principal

_STATUS_NAMES = {
    data_pb2.Item.DRAFT: "DRAFT",
    data_pb2.Item.PUBLISHED: "PUBLISHED",
    data_pb2.Item.ARCHIVED: "ARCHIVED",
}
_STATUS_VALUES = {name: value for value, name in _STATUS_NAMES.items()}


def _plain(value: struct_pb2.Value) -> Any:
    """A google.protobuf.Value as plain Python (NaN and infinities stay floats, for validation)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {key: _plain(child) for key, child in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_plain(child) for child in value.list_value.values]
    return None


def _input(item: data_pb2.Item) -> ItemInput:
    if item.status == data_pb2.Item.STATUS_UNSPECIFIED:
        status = ""
    else:
        # An unknown enum number stays unknown and fails validation.
        status = _STATUS_NAMES.get(item.status, f"#{item.status}")
    attributes = {key: _plain(value) for key, value in item.attributes.fields.items()}
    return ItemInput(title=item.title, content=item.content, status=status, attributes=attributes)


def to_proto(item: Item) -> data_pb2.Item:
    message = data_pb2.Item(
        id=item.id,
        user_id=item.user_id,
        title=item.title,
        content=item.content,
        status=_STATUS_VALUES.get(item.status, data_pb2.Item.STATUS_UNSPECIFIED),
        etag=item.etag,
    )
    if item.attributes:
        message.attributes.update(item.attributes)
    else:
        message.attributes.SetInParent()
    message.created_at.FromDatetime(item.created_at)
    message.updated_at.FromDatetime(item.updated_at)
    return message


class DataServicer(data_pb2_grpc.DataServiceServicer):
    def __init__(self, items: DataDomain) -> None:
        self._items = items

    async def CreateItem(self, request: data_pb2.CreateItemRequest, context: Any) -> data_pb2.Item:
        return to_proto(await self._items.create(require_principal(), _input(request.item)))

    async def GetItem(self, request: data_pb2.GetItemRequest, context: Any) -> data_pb2.Item:
        return to_proto(await self._items.get(require_principal(), request.id))

    async def ListItems(self, request: data_pb2.ListItemsRequest, context: Any) -> data_pb2.ListItemsResponse:
        page = await self._items.list(
            require_principal(),
            requested_page_size=request.page_size,
            page_token=request.page_token,
            filter_text=request.filter,
            query=request.query,
            order_by=request.order_by,
        )
        return data_pb2.ListItemsResponse(
            items=[to_proto(item) for item in page.items], next_page_token=page.next_page_token
        )

    async def UpdateItem(self, request: data_pb2.UpdateItemRequest, context: Any) -> data_pb2.Item:
        updated = await self._items.update(
            require_principal(),
            request.item.id,
            _input(request.item),
            mask=list(request.update_mask.paths),
            etag=request.item.etag,
        )
        return to_proto(updated)

    async def DeleteItem(self, request: data_pb2.DeleteItemRequest, context: Any) -> empty_pb2.Empty:
        await self._items.delete(require_principal(), request.id, etag=request.etag)
        return empty_pb2.Empty()


class DataInternalServicer(data_internal_pb2_grpc.DataInternalServiceServicer):
    def __init__(self, items: DataDomain) -> None:
        self._items = items

    async def PurgeUserData(
        self, request: data_internal_pb2.PurgeUserDataRequest, context: Any
    ) -> data_internal_pb2.PurgeUserDataResponse:
        deleted = await self._items.purge_user(request.user_id)
        return data_internal_pb2.PurgeUserDataResponse(deleted_count=deleted)


__all__ = ["DataInternalServicer", "DataServicer", "to_proto"]
