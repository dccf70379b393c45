"""Two callbacks with the same state at once exchange the code once.

The claim of a pending login locks its row (``select_for_update``) inside a
transaction, so the second callback waits, then sees the login already used. On
PostgreSQL two threads prove it; on SQLite (no row locks) a spy shows the lock is
still requested inside the claim's own transaction, so a developer there sees a
missing lock too.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models.query import QuerySet
from django.test import Client

from oauth2_integrator.models import AuthorizationRequest, OAuth2Token

from .conftest import TOKEN_URL

CALLBACK = "/oauth2/acme/callback/"
CODE = "authz-code-concurrent-0123456789"
NEW_TOKENS = {
    "access_token": "concurrent-access-token-0123456789",
    "refresh_token": "concurrent-refresh-token-0123456789",
    "expires_in": 3600,
}


def same_session(browser: Client) -> Client:
    """Another browser tab: a new test client with the same session cookie."""
    tab = Client()
    tab.cookies = browser.cookies.__class__(browser.cookies)
    return tab


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_callbacks_with_the_same_state_exchange_the_code_once(
    oauth_client, operator_client, start_login, token_endpoint, monkeypatch
):
    if connection.vendor != "postgresql":
        pytest.skip("row locks (select_for_update) are only real on PostgreSQL")
    state = start_login(operator_client)["state"]
    token_endpoint.post(TOKEN_URL, json=NEW_TOKENS)

    # Each callback pauses after reading the pending login and before marking it
    # used, until the other one gets there too (or 2 s pass). With the row lock the
    # other one cannot get there: it waits for the lock instead.
    both_read = threading.Barrier(2)
    original_save = AuthorizationRequest.save

    def save_after_the_other_read(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("update_fields") == ["used_at"]:
            with contextlib.suppress(threading.BrokenBarrierError):
                both_read.wait(timeout=2)
        original_save(self, *args, **kwargs)

    monkeypatch.setattr(AuthorizationRequest, "save", save_after_the_other_read)

    tabs = [same_session(operator_client) for _ in range(2)]
    results: list[Any] = [None, None]

    def finish(index: int) -> None:
        try:
            results[index] = tabs[index].get(CALLBACK, {"state": state, "code": CODE})
        except Exception as exc:  # reported by the assertions below
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)

    assert len(token_endpoint.calls) == 1
    statuses = sorted(r.status_code for r in results)
    assert statuses == [302, 400], results
    refused = next(r for r in results if r.status_code == 400)
    assert "already used" in refused.content.decode()
    assert OAuth2Token.objects.get().access_token == NEW_TOKENS["access_token"]


def test_the_claim_locks_the_pending_login_in_its_own_transaction(
    oauth_client, operator_client, start_login, token_endpoint, monkeypatch
):
    """Runs on SQLite too: the lock is requested even where it is a no-op."""
    state = start_login(operator_client)["state"]
    token_endpoint.post(TOKEN_URL, json=NEW_TOKENS)
    depth_outside = len(connection.atomic_blocks)
    locked: list[tuple[Any, int]] = []
    original = QuerySet.select_for_update

    def spy(self: QuerySet[Any], *args: Any, **kwargs: Any) -> QuerySet[Any]:
        locked.append((self.model, len(connection.atomic_blocks)))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(QuerySet, "select_for_update", spy)
    response = operator_client.get(CALLBACK, {"state": state, "code": CODE})
    assert response.status_code == 302

    claims = [depth for model, depth in locked if model is AuthorizationRequest]
    assert claims, "the pending login must be read with select_for_update()"
    assert all(depth > depth_outside for depth in claims), (
        "the lock must be taken inside the claim's own transaction"
    )
