"""Builds the data service's ServiceHost: one MongoDB client, the servicers, health and hooks."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from pymongo import AsyncMongoClient

from pinexa.data.v1 import data_internal_pb2_grpc, data_pb2_grpc
from services.data.domain import DataDomain
from services.data.servicer import DataInternalServicer, DataServicer
from services.data.store import Document, MongoItemStore, connect
from services.kit.channels import verifier_from_auth
from services.kit.errors import Unavailable
from services.kit.server import ServiceHost, ServiceSpec
from services.kit.settings import Settings, SettingsError
from services.kit.tokens import TokenVerifier

log = logging.getLogger(__name__)

DATA_SERVICE = "pinexa.data.v1.DataService"
DATA_INTERNAL_SERVICE = "pinexa.data.v1.DataInternalService"
COLLECTION = "items"


async def create_service(
    settings: Settings,
    *,
    verifier: TokenVerifier | None = None,
    mongo_client: AsyncMongoClient[Document] | None = None,
) -> ServiceHost:
    """The data service, ready to `start`. Tests pass a verifier and a client; production builds
    both from settings (MONGODB_URL is required; keys come from auth's GetJwks)."""
    on_stop: list[Callable[[], Awaitable[None]]] = []
    if mongo_client is None:
        if not settings.mongodb_url:
            raise SettingsError(
                "MONGODB_URL must be set for the data service, e.g. mongodb://127.0.0.1:27017 "
                "(`make run` starts an nx-27017 and sets it)"
            )
        mongo_client = connect(settings.mongodb_url)
        on_stop.append(mongo_client.close)
    if verifier is None:
        verifier, auth_channel = verifier_from_auth(settings)

        async def close_channel() -> None:
            await auth_channel.close()

        on_stop.append(close_channel)

    store = MongoItemStore(mongo_client[settings.mongodb_database][COLLECTION])
    try:
        await store.ensure_indexes()
    except Unavailable:
        # Start anyway, NOT_SERVING: the health check creates the indexes once MongoDB answers.
        log.warning("MongoDB is unreachable at start-up; indexes will be created when it is back")
    items = DataDomain(store)

    def register(server: object) -> None:
        data_pb2_grpc.add_DataServiceServicer_to_server(DataServicer(items), server)
        data_internal_pb2_grpc.add_DataInternalServiceServicer_to_server(DataInternalServicer(items), server)

    spec = ServiceSpec(
        name="data",
        register=register,
        service_names=[DATA_SERVICE, DATA_INTERNAL_SERVICE],
        internal_services=frozenset({DATA_INTERNAL_SERVICE}),
        # Tab and newlines are allowed in an item's body (and in attribute values, always).
        free_text_fields=frozenset({"pinexa.data.v1.Item.content"}),
        readiness=store.readiness,
        dependency="MongoDB",
        on_stop=on_stop,
    )
    return ServiceHost(spec, settings=settings, verifier=verifier)
