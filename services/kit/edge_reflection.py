"""Server reflection for the edge: the public API only, so `grpcurl HOST:8080 list` works.

Each service's own reflection (grpc.reflection.v1alpha.ServerReflection on its port) describes what
that port serves, internal services included. Envoy must never show those, so every service also
serves a second reflection service, `pinexa.edge.v1alpha.ServerReflection`, over a descriptor pool
that holds only the files of the three public services and what they import. Envoy routes the
standard reflection path to it (prefix_rewrite), so clients of the edge see the standard service:

    grpcurl -plaintext 127.0.0.1:8080 list   # the three public services and reflection itself

`describe` of an internal service, or of a symbol only an internal file defines, is NOT_FOUND
there: the internal files are not in the pool at all.
"""

from __future__ import annotations

import importlib

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

# grpcio-reflection's asyncio servicer; its public helper (enable_server_reflection) can only
# register it under the standard name, which on a service's port stays the full reflection.
from grpc_reflection.v1alpha._async import ReflectionServicer

EDGE_REFLECTION_SERVICE = "pinexa.edge.v1alpha.ServerReflection"

# The public services and the generated module that defines each.
PUBLIC_SERVICES = {
    "pinexa.auth.v1.AuthService": "pinexa.auth.v1.auth_pb2",
    "pinexa.users.v1.UserService": "pinexa.users.v1.users_pb2",
    "pinexa.data.v1.DataService": "pinexa.data.v1.data_pb2",
}


def public_pool() -> descriptor_pool.DescriptorPool:
    """A pool of the public services' files, their imports, reflection.proto and the google.rpc
    error details, nothing else."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)
        added.add(file.name)

    for module in PUBLIC_SERVICES.values():
        add(importlib.import_module(module).DESCRIPTOR)
    add(reflection_pb2.DESCRIPTOR)
    # So that tools can print the ErrorInfo, BadRequest and RetryInfo details of errors.
    add(error_details_pb2.DESCRIPTOR)
    return pool


def add_edge_reflection(server: grpc.aio.Server) -> None:
    servicer = ReflectionServicer([*PUBLIC_SERVICES, reflection.SERVICE_NAME], pool=public_pool())
    handler = grpc.method_handlers_generic_handler(
        EDGE_REFLECTION_SERVICE,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
