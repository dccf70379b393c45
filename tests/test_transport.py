"""The HTTP layer in ``transport``: a total deadline per token request, a size cap
counted after decompression, and no redirects (issue #5, items 9 and 10).

requests' own timeouts bound each socket read, so the deadline is tested against a
real local server that drips bytes, in the headers and in the body; the size cap
against real gzip bombs. Deadlines are small here so each test takes a second or two.
"""

from __future__ import annotations

import gzip
import itertools
import json
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from oauth2_integrator import flow, transport
from oauth2_integrator.exceptions import TokenEndpointError

from .conftest import TOKEN_URL
from .raw_http import Listener, read_request

TOKEN = {
    "access_token": "served-access-token-0123456789",
    "token_type": "Bearer",
    "expires_in": 3600,
}
TOKEN_BYTES = json.dumps(TOKEN).encode()

Respond = Callable[[socket.socket, threading.Event], None]


class RawServer(Listener):
    """A TCP server on 127.0.0.1 that answers every request with ``respond``.

    ``respond`` writes raw bytes to the connection (status line, headers, body),
    as slowly or as wrongly as the test wants; ``requests`` holds what came in.
    """

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.requests: list[bytes] = []
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                head, body, _ = read_request(conn)
                self.requests.append(head + b"\r\n\r\n" + body)
                self.respond(conn, self.stop)
            except OSError:
                pass  # the client hung up: that is what several tests want


@pytest.fixture
def serve() -> Iterator[Callable[[Respond], RawServer]]:
    servers: list[RawServer] = []

    def start(respond: Respond) -> RawServer:
        server = RawServer(respond)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def drip(conn: socket.socket, stop: threading.Event, data: bytes, every: float) -> None:
    """Send ``data`` one byte at a time, ``every`` seconds apart, for at most 6 s.

    (Bounded, so a broken deadline fails the test instead of hanging it.)
    """
    for byte in itertools.islice(itertools.cycle(data), int(6 / every)):
        if stop.wait(every):
            return
        conn.sendall(bytes([byte]) if isinstance(byte, int) else byte)


def hold(conn: socket.socket, stop: threading.Event) -> None:
    """Keep the connection open, silent, until the test ends (at most 6 s)."""
    stop.wait(6)


@pytest.fixture
def limits(settings: Any) -> Callable[..., None]:
    def set_limits(**values: Any) -> None:
        settings.OAUTH2_INTEGRATOR = {**settings.OAUTH2_INTEGRATOR, **values}

    return set_limits


def exchange(client: Any) -> flow.TokenSet:
    return flow.exchange_code(
        client,
        code="the-code-123456789",
        redirect_uri="https://x.test/cb",
        code_verifier=None,
    )


def timed_failure(client: Any) -> tuple[TokenEndpointError, float]:
    started = time.monotonic()
    with pytest.raises(TokenEndpointError) as info:
        exchange(client)
    return info.value, time.monotonic() - started


# --- the deadline ------------------------------------------------------------------


def test_a_normal_answer_over_real_http(make_client, serve):
    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(
            head(
                "HTTP/1.1 200 OK",
                "Content-Type: application/json",
                f"Content-Length: {len(TOKEN_BYTES)}",
            )
            + TOKEN_BYTES
        )

    server = serve(respond)
    token_set = exchange(make_client(token_endpoint=server.url))
    assert token_set.access_token == TOKEN["access_token"]
    sent = server.requests[0].decode()
    assert "accept-encoding: gzip, deflate" in sent.lower()
    assert threading.active_count() < 20  # watchdog timers do not pile up


def test_headers_dripping_are_cut_off_at_the_deadline(make_client, serve, limits):
    # READ_TIMEOUT (5 s) never trips: a byte comes every 0.2 s.
    limits(TOKEN_REQUEST_DEADLINE=1.0, READ_TIMEOUT=5)

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        drip(conn, stop, b"X-Slow: a\r\n", 0.2)

    server = serve(respond)
    error, elapsed = timed_failure(make_client(token_endpoint=server.url))
    assert error.transient is True
    assert error.error == "timeout"
    assert "did not answer within 1 s" in str(error)
    assert "127.0.0.1" in str(error)
    assert 0.9 <= elapsed < 2.5


def test_a_body_dripping_is_cut_off_at_the_deadline(make_client, serve, limits):
    limits(TOKEN_REQUEST_DEADLINE=1.0, READ_TIMEOUT=5)

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(
            head(
                "HTTP/1.1 200 OK",
                "Content-Type: application/json",
                "Content-Length: 100000",
            )
        )
        drip(conn, stop, b" ", 0.2)

    server = serve(respond)
    error, elapsed = timed_failure(make_client(token_endpoint=server.url))
    assert error.transient is True
    assert "did not answer within 1 s" in str(error)
    assert elapsed < 2.5


def test_a_complete_looking_body_cut_by_the_deadline_is_not_used(
    make_client, serve, limits
):
    """Without a length, the cut looks like a clean end of a valid token response."""
    limits(TOKEN_REQUEST_DEADLINE=1.0, READ_TIMEOUT=5)
    body = TOKEN_BYTES.ljust(transport.CHUNK_SIZE, b" ")  # exactly one chunk

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(
            head(
                "HTTP/1.1 200 OK", "Content-Type: application/json", "Connection: close"
            )
            + body
        )
        hold(conn, stop)

    server = serve(respond)
    error, elapsed = timed_failure(make_client(token_endpoint=server.url))
    assert "did not answer within 1 s" in str(error)
    assert elapsed < 2.5


def test_a_silent_endpoint_hits_the_deadline_before_the_read_timeout(
    make_client, serve, limits
):
    limits(TOKEN_REQUEST_DEADLINE=0.5, READ_TIMEOUT=5)
    server = serve(hold)
    error, elapsed = timed_failure(make_client(token_endpoint=server.url))
    assert "did not answer within 0.5 s" in str(error)
    assert elapsed < 2


def test_a_stall_in_the_body_still_hits_the_read_timeout(make_client, serve, limits):
    limits(TOKEN_REQUEST_DEADLINE=5, READ_TIMEOUT=0.3)

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head("HTTP/1.1 200 OK", "Content-Length: 100") + b"{")
        hold(conn, stop)

    server = serve(respond)
    error, elapsed = timed_failure(make_client(token_endpoint=server.url))
    assert error.transient is True
    assert "did not answer in time" in str(error)
    assert elapsed < 2


def test_a_body_cut_short_is_a_transient_error(make_client, serve):
    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head("HTTP/1.1 200 OK", "Content-Length: 100") + TOKEN_BYTES[:50])

    server = serve(respond)
    error, _ = timed_failure(make_client(token_endpoint=server.url))
    assert error.transient is True
    assert error.error == "connection_error"


def test_timeouts_never_exceed_the_deadline(oauth_client, token_endpoint, limits):
    limits(TOKEN_REQUEST_DEADLINE=1.5, CONNECT_TIMEOUT=5, READ_TIMEOUT=15)
    token_endpoint.post(TOKEN_URL, json=TOKEN)
    exchange(oauth_client)
    assert token_endpoint.calls[0].request.req_kwargs["timeout"] == (1.5, 1.5)


def test_the_deadline_is_checked_between_chunks():
    """Where the watchdog cannot reach the socket (a SOCKS proxy), chunks still stop."""

    class Slow:
        headers: dict[str, str] = {}

        class raw:
            @staticmethod
            def stream(amount: int, decode_content: bool) -> Iterator[bytes]:
                yield from itertools.repeat(b" ", 1000)

    deadline = transport._Deadline(0.0)  # never started: only the check can stop it
    with pytest.raises(transport.DeadlineExceeded):
        transport._read_body(Slow(), 10_000_000, deadline)  # type: ignore[arg-type]


# --- the size cap ------------------------------------------------------------------


def big_json(size: int) -> bytes:
    return b'{"access_token": "a-token-value-123456", "x": "' + b"y" * size + b'"}'


def test_a_declared_length_over_the_cap_is_refused_unread(make_client, serve, limits):
    limits(MAX_RESPONSE_BYTES=1000, TOKEN_REQUEST_DEADLINE=5)

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(
            head(
                "HTTP/1.1 200 OK",
                "Content-Type: application/json",
                "Content-Length: 300000000",
            )
            + b"{"
        )
        hold(conn, stop)

    server = serve(respond)
    error, elapsed = timed_failure(make_client(token_endpoint=server.url))
    assert error.error == "invalid_response"
    assert error.transient is False
    assert "more than 1000 bytes" in str(error)
    assert elapsed < 1


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_an_undeclared_body_over_the_cap_is_refused(
    make_client, serve, limits, framing
):
    limits(MAX_RESPONSE_BYTES=5000)
    body = big_json(20_000)

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        if framing == "close":
            conn.sendall(head("HTTP/1.1 200 OK", "Connection: close") + body)
        else:
            conn.sendall(head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked"))
            for start in range(0, len(body), 1000):
                part = body[start : start + 1000]
                conn.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            conn.sendall(b"0\r\n\r\n")

    server = serve(respond)
    error, _ = timed_failure(make_client(token_endpoint=server.url))
    assert "more than 5000 bytes" in str(error)


def test_refused_as_soon_as_the_cap_is_passed(make_client, serve, limits):
    """Not read on to the end (or to the deadline) first."""
    limits(MAX_RESPONSE_BYTES=5000, TOKEN_REQUEST_DEADLINE=3)

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head("HTTP/1.1 200 OK", "Connection: close") + big_json(20_000))
        hold(conn, stop)

    server = serve(respond)
    error, elapsed = timed_failure(make_client(token_endpoint=server.url))
    assert "more than 5000 bytes" in str(error)
    assert elapsed < 1


def test_the_cap_counts_bytes_exactly(oauth_client, token_endpoint, limits):
    body = big_json(500)
    limits(MAX_RESPONSE_BYTES=len(body))
    token_endpoint.post(TOKEN_URL, body=body, content_type="application/json")
    assert exchange(oauth_client).extra["x"] == "y" * 500
    limits(MAX_RESPONSE_BYTES=len(body) - 1)
    with pytest.raises(TokenEndpointError, match=f"more than {len(body) - 1} bytes"):
        exchange(oauth_client)


def gzip_bomb(unpacked: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1024 * 1024)
    parts = [packer.compress(b'{"access_token": "a-token-value-123456", "x": "')]
    parts += [packer.compress(block) for _ in range(unpacked // len(block))]
    parts.append(packer.compress(b'"}'))
    parts.append(packer.flush())
    return b"".join(parts)


def test_a_gzip_bomb_is_refused_without_unpacking_it(make_client, serve):
    bomb = gzip_bomb(100 * 1024 * 1024)  # 100 MB of JSON in about 100 KB
    assert len(bomb) < 200_000

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(
            head(
                "HTTP/1.1 200 OK",
                "Content-Type: application/json",
                "Content-Encoding: gzip",
                f"Content-Length: {len(bomb)}",
            )
            + bomb
        )

    server = serve(respond)
    client = make_client(token_endpoint=server.url)
    tracemalloc.start()
    try:
        error, _ = timed_failure(client)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "more than 1048576 bytes" in str(error)  # the default: 1 MiB
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes"


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # RFC 9110: zlib format
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw, as some send it
        ("identity", lambda data: data),
        ("gzip", lambda data: gzip.compress(data[:10]) + gzip.compress(data[10:])),
    ],
    ids=["gzip", "x-gzip", "deflate-zlib", "deflate-raw", "identity", "gzip-members"],
)
def test_compressed_answers_are_read(oauth_client, token_endpoint, encoding, pack):
    token_endpoint.post(
        TOKEN_URL,
        body=pack(TOKEN_BYTES),
        headers={"Content-Encoding": encoding},
        content_type="application/json",
    )
    assert exchange(oauth_client).access_token == TOKEN["access_token"]


@pytest.mark.parametrize(
    ("encoding", "body", "words"),
    [
        ("br", b"\x1b\x00", "content encoding 'br'"),
        ("gzip, gzip", b"", "content encoding 'gzip, gzip'"),
        ("gzip", b"\x1f\x8b not really gzip", "compressed data is corrupt"),
        ("deflate", b"\xff\xfe\xfd garbage", "compressed data is corrupt"),
    ],
)
def test_unreadable_encodings_are_invalid_responses(
    oauth_client, token_endpoint, encoding, body, words
):
    token_endpoint.post(
        TOKEN_URL, body=body, headers={"Content-Encoding": encoding}, status=200
    )
    with pytest.raises(TokenEndpointError) as info:
        exchange(oauth_client)
    assert info.value.error == "invalid_response"
    assert words in str(info.value)


# --- what is sent -------------------------------------------------------------------

FORM = {"grant_type": "refresh_token", "refresh_token": "r-123 +/=&?é€"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": FORM},
        {"data": FORM, "headers": {"Accept": "application/json"}},
        {"data": FORM, "headers": {"content-type": "text/plain; charset=utf-8"}},
        {"data": FORM, "headers": {"Accept-Encoding": None}},
        {"data": FORM, "auth": ("id with:colon", "sécret")},
        # Not all strings: left to requests (None dropped, lists repeated).
        {"data": {"a": "1", "dropped": None, "n": 2, "many": ["x", "y"]}},
        {"data": {}},
        {"json": {"grant_type": "refresh_token", "n": 1}},
        {"params": {"grant_type": "ig_refresh_token", "q": "a b"}, "method": "GET"},
        {"data": FORM, "url": "https://user:pa%20ss@provider.test/token?x=1"},
        # Prepared by requests once per URL: an IDNA host, a path to quote.
        {"data": FORM, "url": "https://prövider.test/o auth/tøken?x=a b"},
    ],
)
def test_requests_are_prepared_as_requests_prepares_them(kwargs):
    """``transport._prepare`` skips ``Session.request``'s merging for CPU: what it
    prepares must be what that would have (headers, body, URL, cookies)."""
    kwargs = dict(kwargs)
    method = kwargs.pop("method", "POST")
    url = kwargs.pop("url", "https://provider.test/oauth/token")
    headers = {"User-Agent": "ua/1", **kwargs.pop("headers", {})}
    call = {"data": None, "json": None, "params": None, "auth": None, **kwargs}
    with requests.Session() as session:
        session.trust_env = False
        session.cookies.set("sticky", "lb-1", domain="provider.test")
        ours = transport._prepare(session, method, url, headers=headers, **call)
        theirs = session.prepare_request(
            requests.Request(
                method,
                url,
                headers=headers,
                data=call["data"] or {},
                json=call["json"],
                params=call["params"] or {},
                auth=call["auth"],
            )
        )
    assert (ours.method, ours.url, ours.body) == (
        theirs.method,
        theirs.url,
        theirs.body,
    )
    assert dict(ours.headers) == dict(theirs.headers)
    if "//provider.test/" in url:  # cookies follow the host (and its netloc)
        assert ours.headers["Cookie"] == "sticky=lb-1"


# --- redirects ---------------------------------------------------------------------


def test_a_real_redirect_is_not_followed(make_client, serve):
    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(
            head(
                "HTTP/1.1 307 Temporary Redirect",
                f"Location: http://127.0.0.1:{server.port}/elsewhere",
                "Content-Length: 0",
            )
        )

    server = serve(respond)
    error, _ = timed_failure(make_client(token_endpoint=server.url))
    assert "redirect (HTTP 307)" in str(error)
    time.sleep(0.1)
    assert len(server.requests) == 1
