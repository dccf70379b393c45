"""``OAuth2Auth``: a 401 from the API refreshes the token once and resends the
request once (issue #7, item 6); a second 401 is the caller's answer."""

from __future__ import annotations

import pytest
import requests

from oauth2_integrator import OAuth2Auth
from oauth2_integrator.models import OAuth2Token

from .conftest import STORED_ACCESS_TOKEN, TOKEN_URL

API = "https://api.example.test/items"
NEW_TOKEN = "refreshed-access-token-0123456789"


def _token_calls(mock) -> list:
    return [c for c in mock.calls if c.request.url == TOKEN_URL]


def _api_calls(mock) -> list:
    return [c for c in mock.calls if c.request.url.startswith(API)]


@pytest.fixture
def refreshable(token_endpoint):
    token_endpoint.post(TOKEN_URL, json={"access_token": NEW_TOKEN, "expires_in": 3600})
    return token_endpoint


def test_a_401_refreshes_once_and_retries_once(oauth_client, make_token, refreshable):
    make_token(oauth_client)
    refreshable.post(API, status=401)
    refreshable.post(API, json={"ok": True})
    response = requests.post(API, json={"n": 1}, auth=OAuth2Auth("acme"), timeout=5)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    sent = [c.request.headers["Authorization"] for c in _api_calls(refreshable)]
    assert sent == [f"Bearer {STORED_ACCESS_TOKEN}", f"Bearer {NEW_TOKEN}"]
    assert _api_calls(refreshable)[1].request.body == b'{"n": 1}'
    assert len(_token_calls(refreshable)) == 1
    assert OAuth2Token.objects.get().access_token == NEW_TOKEN


def test_a_second_401_is_returned_without_another_refresh(
    oauth_client, make_token, refreshable
):
    make_token(oauth_client)
    refreshable.get(API, status=401)
    response = requests.get(API, auth=OAuth2Auth("acme"), timeout=5)
    assert response.status_code == 401
    assert len(_api_calls(refreshable)) == 2
    assert len(_token_calls(refreshable)) == 1


def test_other_answers_do_not_refresh(oauth_client, make_token, refreshable):
    make_token(oauth_client)
    refreshable.get(API, status=403)
    assert requests.get(API, auth=OAuth2Auth("acme"), timeout=5).status_code == 403
    assert len(_api_calls(refreshable)) == 1
    assert not _token_calls(refreshable)


def test_a_token_replaced_meanwhile_is_used_without_refreshing(
    oauth_client, make_token, token_endpoint
):
    """Another worker refreshed after this request left: its token is used."""
    token = make_token(oauth_client)
    calls = []

    def first_answer(request):
        calls.append(request)
        if len(calls) == 1:
            token.access_token = NEW_TOKEN
            token.save()
            return (401, {}, "")
        return (200, {}, "{}")

    token_endpoint.add_callback("GET", API, callback=first_answer)
    response = requests.get(API, auth=OAuth2Auth("acme"), timeout=5)
    assert response.status_code == 200
    assert calls[1].headers["Authorization"] == f"Bearer {NEW_TOKEN}"
    assert not _token_calls(token_endpoint)


def test_a_session_retries_too(oauth_client, make_token, refreshable):
    make_token(oauth_client)
    refreshable.get(API, status=401)
    refreshable.get(API, json={})
    with requests.Session() as session:
        session.auth = OAuth2Auth("acme")
        assert session.get(API, timeout=5).status_code == 200
        assert session.get(API, timeout=5).status_code == 200
    assert len(_token_calls(refreshable)) == 1
