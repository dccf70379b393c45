from __future__ import annotations

import datetime

import pytest
import requests
import responses
from django.utils import timezone

from oauth2_integrator import AuthorizationRequired, OAuth2Auth
from oauth2_integrator.models import OAuth2Token

from .conftest import CLIENT_SECRET, TOKEN_URL

API = "https://api.example.test/me"


def test_requests_carry_the_current_token(oauth_client, make_token, token_endpoint):
    make_token(oauth_client, access_token="current-access-token-0123456789")
    token_endpoint.get(API, json={"ok": True})
    assert requests.get(API, auth=OAuth2Auth("acme"), timeout=5).json() == {"ok": True}
    sent = token_endpoint.calls[0].request.headers["Authorization"]
    assert sent == "Bearer current-access-token-0123456789"


def test_each_request_gets_a_fresh_token_when_one_is_due(
    oauth_client, make_token, token_endpoint
):
    token = make_token(oauth_client, access_token="old-access-token-0123456789")
    session = requests.Session()
    session.auth = OAuth2Auth("acme")
    token_endpoint.get(API, json={})
    session.get(API, timeout=5)

    OAuth2Token.objects.filter(pk=token.pk).update(
        expires_at=timezone.now() + datetime.timedelta(seconds=30)
    )
    token_endpoint.post(
        TOKEN_URL,
        json={"access_token": "new-access-token-9876543210", "expires_in": 600},
    )
    session.get(API, timeout=5)
    api_calls = [c for c in token_endpoint.calls if c.request.url == API]
    assert (
        api_calls[0]
        .request.headers["Authorization"]
        .endswith("old-access-token-0123456789")
    )
    assert (
        api_calls[1]
        .request.headers["Authorization"]
        .endswith("new-access-token-9876543210")
    )


@pytest.mark.django_db
def test_no_token_raises_before_anything_is_sent(oauth_client):
    with responses.RequestsMock() as mock, pytest.raises(AuthorizationRequired):
        requests.get(API, auth=OAuth2Auth("acme"), timeout=5)
    assert not mock.calls


def test_repr_shows_no_token(oauth_client, make_token, token_endpoint):
    """After it has put a real token on a request, the auth object still shows none."""
    token = make_token(oauth_client)
    auth = OAuth2Auth("acme")
    token_endpoint.get(API, json={})
    requests.get(API, auth=auth, timeout=5)
    sent = token_endpoint.calls[0].request.headers["Authorization"]
    assert sent == f"Bearer {token.access_token}"  # it did handle the token

    shown = [repr(auth), str(auth), f"{auth!r}", repr(vars(auth))]
    assert shown[0] == "OAuth2Auth('acme')"
    for secret in (token.access_token, token.refresh_token, CLIENT_SECRET):
        assert secret
        for text in shown:
            assert secret not in text
