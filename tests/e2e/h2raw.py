"""A raw HTTP/2 client (the `h2` package) for what grpcio's client cannot send: gRPC requests whose
body ends early or stalls, and headers of any size."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings


@dataclass
class RawResponse:
    headers: dict[str, str] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    reset: int | None = None
    finished: bool = False
    seconds: float = 0.0

    @property
    def grpc_status(self) -> str | None:
        return self.trailers.get("grpc-status") or self.headers.get("grpc-status")

    @property
    def grpc_details(self) -> str | None:
        return self.trailers.get("grpc-status-details-bin") or self.headers.get("grpc-status-details-bin")


def _decoded(pairs: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {bytes(k).decode(): bytes(v).decode() for k, v in pairs}


def request(
    address: str,
    path: str,
    body: bytes,
    *,
    end_stream: bool = True,
    headers: list[tuple[str, str]] | None = None,
    grpc: bool = True,
    method: str = "POST",
    wait: float = 15.0,
) -> RawResponse:
    """Send one request on a fresh connection; return what came back within `wait` seconds
    (`finished` False if the stream did not end by then)."""
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=wait)
    sock.settimeout(0.2)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 20})
    sock.sendall(conn.data_to_send())
    stream = conn.get_next_available_stream_id()
    sent = [(":method", method), (":scheme", "http"), (":path", path), (":authority", address)]
    if grpc:
        sent += [("content-type", "application/grpc"), ("te", "trailers")]
    sent += headers or []
    conn.send_headers(stream, sent, end_stream=end_stream and not body)
    if body:
        conn.send_data(stream, body, end_stream=end_stream)
    sock.sendall(conn.data_to_send())
    response = RawResponse()
    started = time.monotonic()
    try:
        while time.monotonic() - started < wait and not response.finished:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    response.headers = _decoded(event.headers)
                elif isinstance(event, h2.events.TrailersReceived):
                    response.trailers = _decoded(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    response.body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    response.reset = int(event.error_code)
                    response.finished = True
                elif isinstance(event, h2.events.StreamEnded):
                    response.finished = True
            sock.sendall(conn.data_to_send())
    finally:
        response.seconds = time.monotonic() - started
        sock.close()
    return response
