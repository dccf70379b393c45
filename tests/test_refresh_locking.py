"""The row lock: requested, re-read, and waited for a bounded time (issue items 7, 10).

The first tests run on any database (SQLite included): they check that the lock is
asked for and that the decision is taken on the row as it is once locked. The last
ones need PostgreSQL's real row locks.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oauth2_integrator import (
    AuthorizationRequired,
    TokenRefreshError,
    get_access_token,
    refresh_access_token,
    tokens,
)
from oauth2_integrator.models import OAuth2Token, TokenStatus

from .conftest import TOKEN_URL, in_seconds

OLD_ACCESS = "stored-access-token-AAAA-1111-BBBB"
REFRESHED = {
    "access_token": "refreshed-access-token-EEEE-3333",
    "refresh_token": "rotated-refresh-token-IIII-7777",
    "expires_in": 3600,
}


def change_row_after_the_unlocked_read(monkeypatch: Any, **fields: Any) -> None:
    """Another worker changes the row between ``_load`` and the locked read."""
    real_load = tokens._load

    def load(name: str, account: str) -> Any:
        client, token = real_load(name, account)
        OAuth2Token.objects.filter(pk=token.pk).update(**fields)
        return client, token

    monkeypatch.setattr(tokens, "_load", load)


# --- on any database -----------------------------------------------------------


def test_the_refresh_asks_for_the_row_lock(expired, token_endpoint, monkeypatch):
    locked: list[QuerySet[Any]] = []
    real = QuerySet.select_for_update

    def spy(self: QuerySet[Any], *args: Any, **kwargs: Any) -> QuerySet[Any]:
        locked.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(QuerySet, "select_for_update", spy)
    token_endpoint.post(TOKEN_URL, json=REFRESHED)
    assert get_access_token("acme") == REFRESHED["access_token"]
    assert [qs.model for qs in locked] == [OAuth2Token]


def test_status_is_checked_again_once_the_row_is_locked(
    expired, token_endpoint, monkeypatch
):
    """Another worker got invalid_grant meanwhile: no call with a dead token."""
    change_row_after_the_unlocked_read(
        monkeypatch, status=TokenStatus.REAUTHORIZATION_REQUIRED
    )
    with pytest.raises(AuthorizationRequired, match="re-authorization"):
        get_access_token("acme")
    assert not token_endpoint.calls


def test_a_refresh_done_meanwhile_is_reused(expired, token_endpoint, monkeypatch):
    """Another worker refreshed meanwhile: its token is returned, the spent refresh
    token is not replayed."""
    change_row_after_the_unlocked_read(
        monkeypatch,
        access_token="meanwhile-access-JJJJ-8888",  # update() encrypts it
        refreshed_at=timezone.now(),
        expires_at=in_seconds(3600),
    )
    assert get_access_token("acme") == "meanwhile-access-JJJJ-8888"
    assert not token_endpoint.calls


def test_a_refresh_done_meanwhile_is_reused_by_a_forced_refresh(
    oauth_client, make_token, token_endpoint, monkeypatch
):
    make_token(oauth_client, expires_at=in_seconds(86400))
    change_row_after_the_unlocked_read(monkeypatch, refreshed_at=timezone.now())
    assert refresh_access_token("acme") == OLD_ACCESS
    assert not token_endpoint.calls


# --- PostgreSQL: real row locks ------------------------------------------------


@pytest.fixture
def _needs_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks (select_for_update) are only real on PostgreSQL")


@pytest.mark.postgres
def test_the_lock_is_for_update_in_sql(expired, token_endpoint, _needs_postgresql):
    token_endpoint.post(TOKEN_URL, json=REFRESHED)
    with CaptureQueriesContext(connection) as captured:
        get_access_token("acme")
    locking = [q["sql"] for q in captured if "FOR UPDATE" in q["sql"]]
    assert len(locking) == 1
    assert "oauth2_integrator_oauth2token" in locking[0]
    assert "oauth2client" not in locking[0].split("FROM")[1]  # client row not locked


class SlowEndpoint:
    """A ``responses`` callback that holds the first refresh until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        import json

        self.calls += 1
        self.entered.set()
        assert self.release.wait(20)
        return 200, {"Content-Type": "application/json"}, json.dumps(REFRESHED)


def hold_the_lock(token_endpoint: Any) -> tuple[SlowEndpoint, threading.Thread, list]:
    """A first worker that refreshes and keeps the row locked until released."""
    slow = SlowEndpoint()
    token_endpoint.add_callback("POST", TOKEN_URL, callback=slow)
    results: list[Any] = []

    def first() -> None:
        try:
            results.append(refresh_access_token("acme"))
        except Exception as exc:
            results.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=first)
    thread.start()
    assert slow.entered.wait(10)
    return slow, thread, results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_waiter_with_a_valid_token_does_not_wait_for_the_lock(
    oauth_client, make_token, token_endpoint, _needs_postgresql, settings
):
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "LOCK_WAIT_TIMEOUT": 5,
    }
    make_token(oauth_client, expires_at=in_seconds(120))  # inside the margin
    slow, thread, results = hold_the_lock(token_endpoint)
    try:
        started = time.monotonic()
        assert get_access_token("acme") == OLD_ACCESS
        assert time.monotonic() - started < 1.0
    finally:
        slow.release.set()
        thread.join(20)
    assert results == [REFRESHED["access_token"]]
    assert slow.calls == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_waiter_with_an_expired_token_gives_up_after_the_bound(
    expired, token_endpoint, _needs_postgresql, settings
):
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "LOCK_WAIT_TIMEOUT": 0.6,
    }
    slow, thread, results = hold_the_lock(token_endpoint)
    try:
        started = time.monotonic()
        with pytest.raises(TokenRefreshError) as info:
            get_access_token("acme")
        waited = time.monotonic() - started
        assert 0.6 <= waited < 3.0
        assert "'acme'" in str(info.value)
        assert "LOCK_WAIT_TIMEOUT" in str(info.value)
        assert "0.6 s" in str(info.value)
    finally:
        slow.release.set()
        thread.join(20)
    assert results == [REFRESHED["access_token"]]
    assert slow.calls == 1
    # Giving up recorded nothing: the first worker's refresh stands.
    token = OAuth2Token.objects.get()
    assert token.last_error == ""
    assert token.refresh_token == REFRESHED["refresh_token"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_waiter_with_an_expired_token_gets_the_result_within_the_bound(
    expired, token_endpoint, _needs_postgresql, settings
):
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "LOCK_WAIT_TIMEOUT": 5,
    }
    slow, thread, _ = hold_the_lock(token_endpoint)
    box: list[Any] = []

    def second() -> None:
        try:
            box.append(get_access_token("acme"))
        finally:
            connections.close_all()

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.3)
    slow.release.set()
    waiter.join(10)
    thread.join(10)
    assert box == [REFRESHED["access_token"]]
    assert slow.calls == 1
