"""Which address a login's failures are counted against (servicer.client_ip)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from services.kit.client import client_ip


class Context:
    """Just the two things client_ip reads from a grpc.aio.ServicerContext."""

    def __init__(self, metadata: Sequence[tuple[str, str]] = (), peer: str = "ipv4:127.0.0.1:5555") -> None:
        self._metadata = tuple(metadata)
        self._peer = peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer


@pytest.mark.parametrize(
    ("metadata", "peer", "expected"),
    [
        ((), "ipv4:192.0.2.10:40000", "192.0.2.10"),
        ((), "ipv6:[2001:db8:1:2:3:4:5:6]:40000", "2001:db8:1:2::/64"),
        ((), "ipv6:%5B::1%5D:40000", "::/64"),
        ((), "unix:/tmp/sock", ""),
        ((("x-envoy-external-address", "203.0.113.7"),), "ipv4:127.0.0.1:1", "203.0.113.7"),
        ((("x-forwarded-for", "10.0.0.1, 198.51.100.2"),), "ipv4:127.0.0.1:1", "198.51.100.2"),
        # The external address wins over x-forwarded-for; garbage falls back to the next source.
        (
            (("x-forwarded-for", "10.0.0.1"), ("x-envoy-external-address", "203.0.113.7")),
            "ipv4:127.0.0.1:1",
            "203.0.113.7",
        ),
        ((("x-envoy-external-address", "not-an-ip"),), "ipv4:192.0.2.1:1", "192.0.2.1"),
        ((("x-forwarded-for", "::ffff:192.0.2.44"),), "ipv4:127.0.0.1:1", "192.0.2.44"),
        # Addresses in one IPv6 /64 share a counter: rotating through them gains nothing.
        ((("x-envoy-external-address", "2001:db8::1"),), "ipv4:127.0.0.1:1", "2001:db8::/64"),
        ((("x-envoy-external-address", "2001:db8::ffff:1"),), "ipv4:127.0.0.1:1", "2001:db8::/64"),
    ],
)
def test_client_ip(metadata: Sequence[tuple[str, str]], peer: str, expected: str) -> None:
    assert client_ip(Context(metadata, peer)) == expected  # type: ignore[arg-type]
