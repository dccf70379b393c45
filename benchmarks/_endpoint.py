"""The local token endpoint the benchmarks post refreshes to: HTTP/1.1 keep-alive,
one thread per connection, a fixed answer after ``TokenEndpoint.latency`` seconds."""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = json.dumps(
    {
        "access_token": "a" * 180,
        "refresh_token": "r" * 60,
        "token_type": "Bearer",
        "expires_in": 3600,
    }
).encode()


class TokenEndpoint(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    # One segment per answer (headers and body buffered), no Nagle: otherwise a
    # delayed ACK adds 40 ms to every request, for both sides alike.
    wbufsize = 65536
    disable_nagle_algorithm = True
    #: Seconds before each answer (0: as fast as the machine allows).
    latency = 0.0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.latency:
            time.sleep(self.latency)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    # A thread per kept-alive connection: any number of workers is served at once.
    daemon_threads = True
    request_queue_size = 128

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), TokenEndpoint)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/token"
