"""Who is at the other end of a call: the client address Envoy passes (for per-client limits:
auth's login throttle, users' mail limits)."""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote

import grpc


def _ip(value: str) -> str:
    """`value` as the address to count failures against, or '' when it is not an IP address.

    IPv6 addresses count per /64: one subscriber usually holds a whole /64, and counting single
    addresses would let them rotate through 2^64 of them.
    """
    candidate = unquote(value).strip()
    if candidate.startswith("[") and "]" in candidate:  # [v6] or [v6]:port
        candidate = candidate[1 : candidate.index("]")]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_ip(context: grpc.aio.ServicerContext) -> str:
    """The address of the client behind this call.

    Through Envoy (use_remote_address, no trusted hops, no internal addresses) the client is in
    `x-envoy-external-address`, and also the last entry of `x-forwarded-for` that Envoy appended;
    Envoy strips both from what the client sent. A direct gRPC call has neither, and the peer
    address is used. Auth's gRPC port must therefore be reachable only from Envoy and the other
    services (it is, in k8s, by NetworkPolicy): a direct caller could otherwise claim any address
    and dodge the per-IP counter, though never the per-account one.
    """
    metadata = dict(context.invocation_metadata() or ())
    external = _ip(str(metadata.get("x-envoy-external-address", "")))
    if external:
        return external
    forwarded = str(metadata.get("x-forwarded-for", ""))
    if forwarded:
        last_hop = _ip(forwarded.rsplit(",", 1)[-1])
        if last_hop:
            return last_hop
    return _ip(peer_address(context))


def peer_address(context: grpc.aio.ServicerContext) -> str:
    """The direct caller's address as gRPC gives it (`ipv4:a.b.c.d:port`, `ipv6:[..]:port`),
    without the port, or '' for another kind of peer (a Unix socket)."""
    kind, _, rest = unquote(str(context.peer() or "")).partition(":")
    return rest.rsplit(":", 1)[0].strip("[]") if kind in ("ipv4", "ipv6") else ""
