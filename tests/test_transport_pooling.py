"""Pooled provider connections (issue #7, item 7): each thread keeps one session per
provider host, so a refresh reuses a kept-alive connection, and issue #5's
guarantees hold on it too: the wall-clock deadline watches a reused socket, a
cut-short answer never goes back to the pool, redirects are not followed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from oauth2_integrator import flow, transport
from oauth2_integrator.exceptions import TokenEndpointError

from .raw_http import Listener, read_request
from .test_transport import TOKEN_BYTES, drip, head


class KeepAliveServer(Listener):
    """Answers requests on kept-alive connections, one behaviour per request
    number; counts the TCP connections it accepted."""

    def __init__(self, behaviours: list[str]) -> None:
        self.behaviours = behaviours
        self.served = 0
        self.heads: list[bytes] = []
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(8)
            buffer = b""
            try:
                while not self.stop.is_set():
                    request_head, _, buffer = read_request(conn, buffer)
                    self.heads.append(request_head)
                    behaviour = self.behaviours[
                        min(self.served, len(self.behaviours) - 1)
                    ]
                    self.served += 1
                    self._answer(conn, behaviour)
            except OSError:
                pass

    def _answer(self, conn: socket.socket, behaviour: str) -> None:
        ok = head(
            "HTTP/1.1 200 OK",
            "Content-Type: application/json",
            f"Content-Length: {len(TOKEN_BYTES)}",
        )
        if behaviour == "ok":
            conn.sendall(ok + TOKEN_BYTES)
        elif behaviour == "set-cookie":
            cookie = b"Set-Cookie: provider_session=of-the-first-client; Path=/\r\n"
            conn.sendall(ok[:-2] + cookie + b"\r\n" + TOKEN_BYTES)
        elif behaviour == "drip-headers":
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            drip(conn, self.stop, b"X-Slow: a\r\n", 0.2)
        elif behaviour == "drip-body":
            conn.sendall(
                head(
                    "HTTP/1.1 200 OK",
                    "Content-Type: application/json",
                    "Content-Length: 100000",
                )
            )
            drip(conn, self.stop, b" ", 0.2)
        elif behaviour == "too-large":
            conn.sendall(
                head(
                    "HTTP/1.1 200 OK",
                    "Content-Type: application/json",
                    "Content-Length: 5000",
                )
                + b" " * 5000
            )


@pytest.fixture
def keep_alive() -> Iterator[Any]:
    servers: list[KeepAliveServer] = []

    def start(*behaviours: str) -> KeepAliveServer:
        server = KeepAliveServer(list(behaviours))
        servers.append(server)
        return server

    transport.close_sessions()
    yield start
    transport.close_sessions()
    for server in servers:
        server.close()


def exchange(client: Any) -> flow.TokenSet:
    return flow.exchange_code(
        client,
        code="the-code-123456789",
        redirect_uri="https://x.test/cb",
        code_verifier=None,
    )


def test_requests_to_one_host_share_a_kept_alive_connection(make_client, keep_alive):
    server = keep_alive("ok")
    client = make_client(token_endpoint=server.url)
    for _ in range(3):
        assert exchange(client).access_token
    assert server.served == 3
    assert server.connections == 1


@pytest.mark.parametrize("behaviour", ["drip-headers", "drip-body"])
def test_the_deadline_watches_a_reused_connection(
    make_client, keep_alive, settings, behaviour
):
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "TOKEN_REQUEST_DEADLINE": 1.0,
        "READ_TIMEOUT": 5,
    }
    server = keep_alive("ok", behaviour)
    client = make_client(token_endpoint=server.url)
    exchange(client)  # opens the connection the next request reuses
    started = time.monotonic()
    with pytest.raises(TokenEndpointError, match="did not answer within 1 s"):
        exchange(client)
    assert time.monotonic() - started < 2.5
    assert server.connections == 1  # it really was the reused connection


def test_a_cookie_set_by_a_token_endpoint_is_not_sent_again(make_client, keep_alive):
    """Clients of one provider host share the thread's session: a cookie the
    provider sets in one client's exchange must not ride along with the next
    client's credentials (and no token request needs one)."""
    server = keep_alive("set-cookie", "ok")
    first = make_client(name="first", token_endpoint=server.url)
    second = make_client(name="second", token_endpoint=server.url)
    assert exchange(first).access_token
    assert exchange(second).access_token
    assert server.connections == 1  # the same session and connection
    assert b"provider_session" not in server.heads[1].lower()


def test_a_connection_cut_short_is_not_reused(make_client, keep_alive, settings):
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "MAX_RESPONSE_BYTES": 1000,
    }
    server = keep_alive("too-large", "ok")
    client = make_client(token_endpoint=server.url)
    with pytest.raises(TokenEndpointError):
        exchange(client)
    assert exchange(client).access_token
    assert server.connections == 2


def test_each_thread_has_its_own_session():
    url = "http://127.0.0.1:9/token"
    mine = transport._session(url)
    assert transport._session(url) is mine
    assert transport._session("http://127.0.0.1:10/token") is not mine
    theirs: list[Any] = []
    thread = threading.Thread(target=lambda: theirs.append(transport._session(url)))
    thread.start()
    thread.join()
    assert theirs[0] is not mine


# --- the refresh path ----------------------------------------------------------------


def test_refreshes_reuse_the_providers_connection(make_client, make_token, keep_alive):
    from oauth2_integrator.tokens import refresh_access_token

    server = keep_alive("ok")
    client = make_client(token_endpoint=server.url, token_auth_method="none")
    make_token(client)
    for _ in range(3):
        refresh_access_token("acme")
    assert server.served == 3
    assert server.connections == 1


@pytest.mark.postgres
def test_a_refresh_runs_at_most_four_sql_statements(
    make_client, make_token, keep_alive, transactional_db
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from oauth2_integrator.tokens import refresh_access_token

    if connection.vendor != "postgresql":
        pytest.skip("counted on PostgreSQL")
    server = keep_alive("ok")
    client = make_client(token_endpoint=server.url, token_auth_method="none")
    make_token(client)
    with CaptureQueriesContext(connection) as queries:
        refresh_access_token("acme")
    assert len(queries) <= 4, [q["sql"].split()[0] for q in queries]
