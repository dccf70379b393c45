"""Single-flight refresh on PostgreSQL: two workers, one expiring token, one refresh.

A provider that rotates refresh tokens revokes the whole chain when a spent one is
replayed, so the second worker must wait for the claim and reuse the first
worker's result instead of calling the token endpoint again.

The token endpoint is tests/rotating_provider.py, a real HTTP server on 127.0.0.1,
made to answer slowly (so the refreshes overlap); like a strict provider, it accepts
each refresh token once.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from oauth2_integrator import get_access_token, refresh_access_token
from oauth2_integrator.models import OAuth2Token

from .rotating_provider import RotatingProvider, running

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(autouse=True)
def _needs_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("races real connections on PostgreSQL")


STORED_REFRESH = "stored-refresh-token-CCCC-2222-DDDD"


@pytest.fixture
def token_server() -> Iterator[RotatingProvider]:
    """Answers after 0.3 s, so the workers' refreshes overlap."""
    with running(RotatingProvider(STORED_REFRESH, delay=0.3)) as provider:
        yield provider


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

    assert results == ["provider-access-00001-wwwwwwww"] * 2, results
    assert len(token_server.calls) == 1
    assert token_server.calls[0].form["refresh_token"] == STORED_REFRESH
    token = OAuth2Token.objects.get()
    assert token.access_token == "provider-access-00001-wwwwwwww"
    assert token.refresh_token == "rotated-refresh-00001-zzzzzzzz"
    assert token.status == "active"
    assert token.last_error == ""


def test_four_workers_refresh_once(expired_token, token_server):
    results = run_together(lambda: get_access_token("acme"), count=4)
    assert results == ["provider-access-00001-wwwwwwww"] * 4, results
    assert len(token_server.calls) == 1


def test_workers_with_a_still_valid_token_do_not_wait(expiring_token, token_server):
    """Inside the margin, a worker that finds the row claimed uses the current token
    (still valid) instead of waiting; still exactly one refresh."""
    results = run_together(lambda: get_access_token("acme"), count=4)
    assert set(results) <= {
        "provider-access-00001-wwwwwwww",
        "stored-access-token-AAAA-1111-BBBB",
    }, results
    assert "provider-access-00001-wwwwwwww" in results
    assert len(token_server.calls) == 1
    assert OAuth2Token.objects.get().refresh_token == "rotated-refresh-00001-zzzzzzzz"


def test_forced_refreshes_queue_behind_the_lock(expiring_token, token_server):
    """Two forced refreshes at once: the second one reuses the first one's result
    rather than replaying the spent refresh token (which would revoke the chain)."""
    results = run_together(lambda: refresh_access_token("acme"))
    assert results == ["provider-access-00001-wwwwwwww"] * 2, results
    assert len(token_server.calls) == 1
    assert OAuth2Token.objects.get().status == "active"


def test_the_server_really_rejects_a_replayed_refresh_token(
    expiring_token, token_server
):
    """Guards the test double: without the lock, the second call would fail."""
    import requests

    first = requests.post(
        token_server.url,
        data={"refresh_token": STORED_REFRESH},
        timeout=5,
    )
    replay = requests.post(
        token_server.url,
        data={"refresh_token": STORED_REFRESH},
        timeout=5,
    )
    assert first.status_code == 200
    assert replay.status_code == 400
    assert replay.json() == {"error": "invalid_grant"}
    assert token_server.refresh_token is None  # and the replay revoked the chain
