"""What happens around a refresh in flight: the claim outlives every call the refresh
makes, an incident is told once, a login or a saved registration meanwhile wins."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from django.core.cache import cache

from oauth2_integrator import (
    AuthorizationRequired,
    TokenRefreshError,
    notifications,
    refresh_access_token,
    tokens,
)
from oauth2_integrator.flow import TokenSet
from oauth2_integrator.models import OAuth2Token

from .conftest import STORED_REFRESH_TOKEN, TOKEN_URL, in_seconds, two_step_claim

REFRESHED = {
    "access_token": "refreshed-access-token-EEEE-3333",
    "refresh_token": "rotated-refresh-token-IIII-7777",
    "expires_in": 3600,
}
ISSUER = "https://id.example.test"


def json_answer(body: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    return 200, {"Content-Type": "application/json"}, json.dumps(body)


def test_the_claim_outlives_every_provider_call_an_oidc_refresh_makes(
    make_client, make_token, token_endpoint, settings
):
    """An OpenID Connect refresh with a cold discovery cache fetches discovery and
    RFC 8414 metadata (no revocation endpoint in discovery) before the token
    request, all under the claim. If the claim runs out before the answer is
    stored, another process takes it over and sends the refresh token this one
    already spent."""
    deadline = 40.0
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "TOKEN_REQUEST_DEADLINE": deadline,
    }
    cache.clear()
    client = make_client(
        provider="oidc",
        issuer=ISSUER,
        authorization_endpoint="",
        token_endpoint="",
        scope="",
    )
    make_token(client, expires_at=in_seconds(-60))
    claimed: list[bool] = []

    def answer(body: Any, status: int = 200) -> Any:
        def callback(request: Any) -> tuple[int, dict[str, str], str]:
            claimed.append(bool(OAuth2Token.objects.get().refresh_claim))
            return status, {"Content-Type": "application/json"}, json.dumps(body)

        return callback

    document = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks",
    }
    token_endpoint.add_callback(
        "GET", f"{ISSUER}/.well-known/openid-configuration", callback=answer(document)
    )
    token_endpoint.add_callback(
        "GET",
        f"{ISSUER}/.well-known/oauth-authorization-server",
        callback=answer({}, 404),
    )
    token_endpoint.add_callback("POST", f"{ISSUER}/token", callback=answer(REFRESHED))
    try:
        assert refresh_access_token("acme") == REFRESHED["access_token"]
    finally:
        cache.clear()
    calls_under_claim = sum(claimed)
    assert calls_under_claim == 3
    assert tokens._claim_lifetime() >= datetime.timedelta(
        seconds=calls_under_claim * deadline
    )


def test_an_incident_told_meanwhile_is_not_told_again(
    expired, token_endpoint, monkeypatch, told
):
    """The sweep told the operator (notifications.claim) between this refresh's
    read and its claim: the claim must see the row changed, or the refresh's
    invalid_grant tells the same incident a second time."""
    two_step_claim(monkeypatch)
    real_load = tokens._load

    def load(name: str, account: str) -> Any:
        client, token = real_load(name, account)
        assert notifications.claim(OAuth2Token.objects.get(pk=token.pk))
        return client, token

    monkeypatch.setattr(tokens, "_load", load)
    token_endpoint.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(AuthorizationRequired):
        refresh_access_token("acme")
    assert told == []


def test_a_login_without_refresh_token_during_a_refresh_keeps_no_spent_token(
    expired, token_endpoint, settings
):
    """A rotating provider spent the stored refresh token for the refresh in
    flight; the login's answer has no refresh token, so the login keeps the stored
    (spent) one and the refresh's new one is dropped: the next refresh replays a
    spent token."""
    from oauth2_integrator.tokens import store_token_set

    # The login runs inside the refresh's call here, so the refresh cannot end
    # while the login waits for it: the wait runs out.
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "LOCK_WAIT_TIMEOUT": 0.3,
    }

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        client = OAuth2Token.objects.get().client
        store_token_set(
            client,
            TokenSet(access_token="login-access-KKKK-9999", expires_in=3600),
        )
        return json_answer(REFRESHED)

    token_endpoint.add_callback("POST", TOKEN_URL, callback=answer)
    with pytest.raises(TokenRefreshError):  # the refresh's answer is dropped
        refresh_access_token("acme")
    row = OAuth2Token.objects.get()
    assert row.refresh_token != STORED_REFRESH_TOKEN


def test_a_refusal_of_a_registration_saved_meanwhile_is_not_held_back(
    oauth_client, make_token, token_endpoint
):
    """A sweep runner read its chunk (token and client) before the operator saved
    a new client secret: the refresh goes out with the old secret and the provider
    answers invalid_client. The token must not be held back (nor the operator
    told): the registration is already fixed."""
    from oauth2_integrator import sweep

    make_token(oauth_client, expires_at=in_seconds(-60))
    stale = sweep._load_chunk([OAuth2Token.objects.get().pk])
    oauth_client.client_secret = "n3w-client-secret-value-9876543210"
    oauth_client.save()
    sent: list[str] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        sent.append(request.headers.get("Authorization", "") + str(request.body))
        if "n3w-client-secret" in sent[-1] or "bjN3LWNsaWVudC1zZWNyZX" in sent[-1]:
            return json_answer(REFRESHED)
        return 401, {"Content-Type": "application/json"}, '{"error":"invalid_client"}'

    token_endpoint.add_callback("POST", TOKEN_URL, callback=answer)
    [token] = stale.values()
    outcome = sweep._refresh_one_safely("acme", "", force=False, loaded=token)
    # The refusal of the old registration is not held against the new one...
    assert outcome.result == sweep.FAILED
    assert "saved in the meantime" in outcome.detail
    assert OAuth2Token.objects.get().next_attempt_at is None
    assert OAuth2Token.objects.get().incident_notified_at is None
    # ...and the next run refreshes with the saved secret.
    assert sweep.refresh_one("acme").result == sweep.REFRESHED
    assert len(sent) == 2


def test_a_row_changed_then_claimed_by_another_process_is_not_refreshed(
    expired, token_endpoint
):
    """Between this refresh's read and its claim the row changed without a refresh
    (a failure recorded without back-off, an incident marked told: ``updated_at``
    moved) and another process claimed it. The failed claim reads the row again:
    that row carries the other process's claim, which must not pass for this
    one's, or both spend the same refresh token."""
    seen = tokens._read_token("acme", "")
    assert seen is not None
    OAuth2Token.objects.filter(pk=seen.pk).update(
        updated_at=in_seconds(-1),
        refresh_claim="another-process",
        refresh_claimed_until=in_seconds(60),
    )
    token_endpoint.post(TOKEN_URL, json=REFRESHED)
    with pytest.raises(TokenRefreshError, match="right now"):
        tokens._refresh_outcome(seen.client, seen, force=True, wait=0)
    assert len(token_endpoint.calls) == 0
    assert OAuth2Token.objects.get().refresh_claim == "another-process"
