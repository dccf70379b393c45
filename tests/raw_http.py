"""Reading HTTP/1.1 requests off a raw socket, for the tests' hand-written servers
(dripping, stalling or keep-alive endpoints that http.server cannot imitate)."""

from __future__ import annotations

import socket
import threading


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


class Listener:
    """A TCP server on 127.0.0.1: accepts in a thread, hands each connection to
    ``handle`` in a thread of its own, counts them (``connections``), stops on
    ``close``."""

    def __init__(self) -> None:
        self.connections = 0
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/oauth/token"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()
