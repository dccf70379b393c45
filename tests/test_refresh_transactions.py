"""A refresh commits on its own: the caller's rollback cannot undo it (issue item 1).

On PostgreSQL, a refresh called inside ``transaction.atomic()`` or a view under
``ATOMIC_REQUESTS`` runs on a separate connection. These tests need real commits
(``transaction=True``): pytest-django's ``db`` wraps a test in one transaction.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from oauth2_integrator import AuthorizationRequired, get_access_token
from oauth2_integrator.models import OAuth2Token, TokenStatus

from .conftest import TOKEN_URL

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

OLD_REFRESH = "stored-refresh-token-CCCC-2222-DDDD"
ROTATED = {
    "access_token": "rotated-access-token-GGGG-5555",
    "refresh_token": "rotated-refresh-token-HHHH-6666",
    "token_type": "Bearer",
    "expires_in": 3600,
}


@pytest.fixture(autouse=True)
def _needs_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the separate refresh connection is used only with row locks")


class CallerFailed(Exception):
    pass


def test_rotated_refresh_token_survives_the_callers_rollback(expired, token_endpoint):
    token_endpoint.post(TOKEN_URL, json=ROTATED)
    with pytest.raises(CallerFailed), transaction.atomic():
        assert get_access_token("acme") == ROTATED["access_token"]
        raise CallerFailed
    token = OAuth2Token.objects.get()
    assert token.refresh_token == ROTATED["refresh_token"]
    assert token.access_token == ROTATED["access_token"]
    assert token.refreshed_at is not None


def test_invalid_grant_survives_the_callers_rollback(expired, token_endpoint):
    token_endpoint.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(AuthorizationRequired), transaction.atomic():
        get_access_token("acme")
    token = OAuth2Token.objects.get()
    assert token.status == TokenStatus.REAUTHORIZATION_REQUIRED
    assert "invalid_grant" in token.last_error


def test_the_caller_sees_the_refresh_inside_its_transaction(expired, token_endpoint):
    """After the refresh committed elsewhere, the caller's own reads see it (READ
    COMMITTED) and a second call does not refresh again."""
    token_endpoint.post(TOKEN_URL, json=ROTATED)
    with transaction.atomic():
        get_access_token("acme")
        assert get_access_token("acme") == ROTATED["access_token"]
    assert len(token_endpoint.calls) == 1


def test_the_refresh_connection_is_closed_afterwards(expired, token_endpoint):
    token_endpoint.post(TOKEN_URL, json=ROTATED)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        )
        before = cursor.fetchone()[0]
    with transaction.atomic():
        get_access_token("acme")
    # The server ends a backend a moment after its client closed the connection.
    deadline = time.monotonic() + 5
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            )
            after = cursor.fetchone()[0]
        if after <= before or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert after <= before


# --- a host site with ATOMIC_REQUESTS --------------------------------------------


def refresh_then_crash(request: HttpRequest) -> HttpResponse:
    get_access_token("acme")
    raise CallerFailed("the host view fails after using the token")


def refresh_then_ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"length {len(get_access_token('acme'))}")


urlpatterns = [
    path("crash/", refresh_then_crash),
    path("ok/", refresh_then_ok),
]


@pytest.fixture
def atomic_requests(monkeypatch: Any) -> None:
    monkeypatch.setitem(connections.settings["default"], "ATOMIC_REQUESTS", True)
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)


@pytest.mark.urls(__name__)
def test_atomic_requests_view_that_fails_keeps_the_rotated_token(
    expired, token_endpoint, atomic_requests
):
    token_endpoint.post(TOKEN_URL, json=ROTATED)
    browser = Client(raise_request_exception=False)
    response = browser.get("/crash/")
    assert response.status_code == 500
    token = OAuth2Token.objects.get()
    assert token.refresh_token == ROTATED["refresh_token"]
    assert token.access_token == ROTATED["access_token"]


@pytest.mark.urls(__name__)
def test_atomic_requests_view_invalid_grant_is_kept(
    expired, token_endpoint, atomic_requests
):
    token_endpoint.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    Client(raise_request_exception=False).get("/ok/")
    assert OAuth2Token.objects.get().status == TokenStatus.REAUTHORIZATION_REQUIRED


@pytest.mark.urls(__name__)
def test_atomic_requests_view_that_succeeds(expired, token_endpoint, atomic_requests):
    token_endpoint.post(TOKEN_URL, json=ROTATED)
    response = Client().get("/ok/")
    assert response.status_code == 200
    assert OAuth2Token.objects.get().refresh_token == ROTATED["refresh_token"]
