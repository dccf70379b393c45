"""Single-flight refresh on PostgreSQL: two workers, one expiring token, one refresh.

A provider that rotates refresh tokens revokes the whole chain when a spent one is
replayed, so the second worker must wait for the row lock and reuse the first
worker's result instead of calling the token endpoint again.

The token endpoint is a real HTTP server on 127.0.0.1 that answers slowly (so the
two refreshes overlap) and, like a strict provider, accepts each refresh token once.
"""

from __future__ import annotations

import datetime
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
from django.db import connection, connections
from django.utils import timezone

from oauth2_integrator import get_access_token, refresh_access_token
from oauth2_integrator.models import OAuth2Token

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(autouse=True)
def _needs_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks (select_for_update) are only real on PostgreSQL")


class RotatingTokenServer(http.server.ThreadingHTTPServer):
    """Accepts the current refresh token once, answers after a delay, rotates it."""

    daemon_threads = True

    def __init__(self, first_refresh_token: str, delay: float = 0.3) -> None:
        super().__init__(("127.0.0.1", 0), TokenHandler)
        self.delay = delay
        self.valid_refresh_token = first_refresh_token
        self.calls: list[dict[str, str]] = []
        self.issued = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/token"


class TokenHandler(http.server.BaseHTTPRequestHandler):
    server: RotatingTokenServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = dict(parse_qsl(self.rfile.read(length).decode()))
        server = self.server
        with server.lock:
            server.calls.append(form)
            accepted = form.get("refresh_token") == server.valid_refresh_token
            if accepted:
                server.issued += 1
                number = server.issued
                server.valid_refresh_token = f"rotated-refresh-{number:04d}-xxxxxxxx"
        time.sleep(server.delay)
        if accepted:
            status, body = (
                200,
                {
                    "access_token": f"new-access-{number:04d}-yyyyyyyyyyyy",
                    "refresh_token": server.valid_refresh_token,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                },
            )
        else:  # a replayed refresh token: strict providers revoke the chain
            status, body = 400, {"error": "invalid_grant"}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def token_server() -> Iterator[RotatingTokenServer]:
    server = RotatingTokenServer("stored-refresh-token-CCCC-2222-DDDD")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def run_together(target: Any, count: int = 2) -> list[Any]:
    """Start ``count`` threads at the same moment; return their results or errors."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def worker(index: int) -> None:
        try:
            barrier.wait()
            results[index] = target()
        except Exception as exc:  # reported by the assertions below
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return results


@pytest.fixture
def expiring_token(make_client, make_token, token_server) -> OAuth2Token:
    client = make_client(token_endpoint=token_server.url)
    return make_token(
        client, expires_at=timezone.now() + datetime.timedelta(seconds=60)
    )


@pytest.fixture
def expired_token(make_client, make_token, token_server) -> OAuth2Token:
    client = make_client(token_endpoint=token_server.url)
    return make_token(
        client, expires_at=timezone.now() - datetime.timedelta(seconds=60)
    )


def test_two_workers_refresh_once(expired_token, token_server):
    """With an expired token, the second worker waits for the first one's result."""
    results = run_together(lambda: get_access_token("acme"))

    assert results == ["new-access-0001-yyyyyyyyyyyy"] * 2, results
    assert len(token_server.calls) == 1
    assert (
        token_server.calls[0]["refresh_token"] == "stored-refresh-token-CCCC-2222-DDDD"
    )
    token = OAuth2Token.objects.get()
    assert token.access_token == "new-access-0001-yyyyyyyyyyyy"
    assert token.refresh_token == "rotated-refresh-0001-xxxxxxxx"
    assert token.status == "active"
    assert token.last_error == ""


def test_four_workers_refresh_once(expired_token, token_server):
    results = run_together(lambda: get_access_token("acme"), count=4)
    assert results == ["new-access-0001-yyyyyyyyyyyy"] * 4, results
    assert len(token_server.calls) == 1


def test_workers_with_a_still_valid_token_do_not_wait(expiring_token, token_server):
    """Inside the margin, a worker that finds the row locked uses the current token
    (still valid) instead of waiting; still exactly one refresh."""
    results = run_together(lambda: get_access_token("acme"), count=4)
    assert set(results) <= {
        "new-access-0001-yyyyyyyyyyyy",
        "stored-access-token-AAAA-1111-BBBB",
    }, results
    assert "new-access-0001-yyyyyyyyyyyy" in results
    assert len(token_server.calls) == 1
    assert OAuth2Token.objects.get().refresh_token == "rotated-refresh-0001-xxxxxxxx"


def test_forced_refreshes_queue_behind_the_lock(expiring_token, token_server):
    """Two forced refreshes at once: the second one reuses the first one's result
    rather than replaying the spent refresh token (which would revoke the chain)."""
    results = run_together(lambda: refresh_access_token("acme"))
    assert results == ["new-access-0001-yyyyyyyyyyyy"] * 2, results
    assert len(token_server.calls) == 1
    assert OAuth2Token.objects.get().status == "active"


def test_the_server_really_rejects_a_replayed_refresh_token(
    expiring_token, token_server
):
    """Guards the test double: without the lock, the second call would fail."""
    import requests

    first = requests.post(
        token_server.url,
        data={"refresh_token": "stored-refresh-token-CCCC-2222-DDDD"},
        timeout=5,
    )
    replay = requests.post(
        token_server.url,
        data={"refresh_token": "stored-refresh-token-CCCC-2222-DDDD"},
        timeout=5,
    )
    assert first.status_code == 200
    assert replay.status_code == 400
    assert replay.json() == {"error": "invalid_grant"}
