"""Disconnect against a real django-oauth-toolkit server over real HTTP (RFC 7009).

After the admin's Disconnect, the tokens no longer work at the provider: its
introspection says inactive, its protected API refuses it (DOT answers 403), and a refresh with the
old refresh token fails. Re-authorizing brings the client back, and revokes the
refresh token it replaced.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from oauth2_integrator import AuthorizationRequired, get_access_token
from oauth2_integrator.models import (
    EventKind,
    OAuth2Client,
    OAuth2Event,
    OAuth2Token,
    TokenStatus,
)

from .conftest import CLIENT_NAME, Login, Provider

pytestmark = pytest.mark.e2e


def stored_token() -> OAuth2Token:
    return OAuth2Token.objects.get(client__name=CLIENT_NAME, account="")


def api_status(provider: Provider, access_token: str) -> int:
    answer = requests.get(
        provider.server.base_url + "/demo-provider/api/me/",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )
    return answer.status_code


def refresh_status(provider: Provider, refresh_token: str) -> tuple[int, str]:
    answer = requests.post(
        provider.server.url("token"),
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(provider.application.client_id, provider.application.client_secret),
        timeout=10,
    )
    return answer.status_code, answer.json().get("error", "")


def test_disconnect_revokes_at_the_provider(
    provider: Provider,
    make_dot_client: Callable[..., OAuth2Client],
    connect: Callable[[], Login],
    operator_client: Client,
) -> None:
    client = make_dot_client()
    connect()
    before = stored_token()
    access, refresh = before.access_token, before.refresh_token
    assert provider.server.introspect(provider.application, access)["active"] is True
    assert api_status(provider, access) == 200

    response = operator_client.post(
        reverse("admin:oauth2_integrator_oauth2client_disconnect", args=[client.pk]),
        follow=True,
    )

    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("confirmed the revocation" in m for m in shown), shown
    assert provider.server.introspect(provider.application, access) == {"active": False}
    # DOT's ProtectedResourceView refuses an unknown or revoked token with 403.
    assert api_status(provider, access) == 403
    assert refresh_status(provider, refresh) == (400, "invalid_grant")
    assert stored_token().status == TokenStatus.REVOKED
    with pytest.raises(AuthorizationRequired):
        get_access_token(CLIENT_NAME)
    event = OAuth2Event.objects.get(kind=EventKind.REVOKED)
    assert event.outcome == "ok" and event.actor is not None

    # Re-authorize stays available and brings the client back.
    assert 'id="oauth2-authorize-button"' in response.content.decode()
    connect()
    fresh = get_access_token(CLIENT_NAME)
    assert provider.server.introspect(provider.application, fresh)["active"] is True


def test_reauthorizing_revokes_the_replaced_refresh_token(
    provider: Provider,
    make_dot_client: Callable[..., OAuth2Client],
    connect: Callable[[], Login],
) -> None:
    make_dot_client()
    connect()
    old_refresh = stored_token().refresh_token
    connect()
    new = stored_token()
    assert new.refresh_token != old_refresh
    assert refresh_status(provider, old_refresh) == (400, "invalid_grant")
    # The new tokens are untouched.
    assert provider.server.introspect(provider.application, new.access_token)["active"]
    assert api_status(provider, new.access_token) == 200
