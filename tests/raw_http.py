"""Reading HTTP/1.1 requests off a raw socket, for the tests' hand-written servers
(dripping, stalling or keep-alive endpoints that http.server cannot imitate)."""

from __future__ import annotations

import socket


def read_request(
    conn: socket.socket, buffer: bytes = b""
) -> tuple[bytes, bytes, bytes]:
    """One request from ``conn``: (head, body, what follows it in the buffer).

    Raises ``ConnectionError`` when the client closes before a whole head arrived.
    """
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a request arrived")
        buffer += chunk
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buffer) < length:
        buffer += conn.recv(65536)
    return head, buffer[:length], buffer[length:]
