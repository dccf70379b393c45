"""The tokens API: when to refresh, what a refresh changes, and the failure policy
(RFC 6749 §6)."""

from __future__ import annotations

import datetime
import logging
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

import oauth2_integrator
from oauth2_integrator import (
    AuthorizationRequired,
    ConfigurationError,
    TokenRefreshError,
    get_access_token,
    refresh_access_token,
)
from oauth2_integrator.models import OAuth2Token, TokenStatus

from .conftest import CLIENT_SECRET, TOKEN_URL, in_seconds, token_fields

OLD_ACCESS = "stored-access-token-AAAA-1111-BBBB"
OLD_REFRESH = "stored-refresh-token-CCCC-2222-DDDD"
REFRESHED = {
    "access_token": "refreshed-access-token-EEEE-3333",
    "token_type": "Bearer",
    "expires_in": 3600,
}


def sent_form(call: Any) -> dict[str, str]:
    return dict(parse_qsl(call.request.body))


def unchanged_but_error(token: OAuth2Token, before: dict[str, Any]) -> dict[str, Any]:
    """Everything but the recorded error is as it was; returns the fresh fields."""
    after = token_fields(token)
    changed = {k for k in after if after[k] != before[k]}
    assert changed <= {
        "last_error",
        "last_error_at",
        "last_error_code",
        "next_attempt_at",
        "refresh_attempts",  # the back-off after a transient failure
        "updated_at",  # the row's version: a claim made on the old one fails
    }
    return after


# --- when to refresh ------------------------------------------------------------


def test_token_far_from_expiry_is_returned_without_a_call(
    oauth_client, make_token, token_endpoint
):
    make_token(oauth_client, expires_at=in_seconds(301))
    assert get_access_token("acme") == OLD_ACCESS
    assert oauth2_integrator.get_access_token("acme") == OLD_ACCESS
    assert not token_endpoint.calls


def test_token_without_expiry_is_never_refreshed_by_get(
    oauth_client, make_token, token_endpoint
):
    make_token(oauth_client, expires_at=None)
    for _ in range(3):
        assert get_access_token("acme") == OLD_ACCESS
    assert not token_endpoint.calls


def test_token_inside_the_margin_is_refreshed(expiring, token_endpoint):
    token_endpoint.post(TOKEN_URL, json=REFRESHED)
    assert get_access_token("acme") == REFRESHED["access_token"]
    assert len(token_endpoint.calls) == 1
    form = sent_form(token_endpoint.calls[0])
    assert form["grant_type"] == "refresh_token"
    assert form["refresh_token"] == OLD_REFRESH
    # The next call uses the new token without asking again.
    assert get_access_token("acme") == REFRESHED["access_token"]
    assert len(token_endpoint.calls) == 1


def test_refresh_margin_follows_the_setting(
    oauth_client, make_token, token_endpoint, settings
):
    make_token(oauth_client, expires_at=in_seconds(500))
    assert get_access_token("acme") == OLD_ACCESS
    assert not token_endpoint.calls

    settings.OAUTH2_INTEGRATOR = {**settings.OAUTH2_INTEGRATOR, "REFRESH_MARGIN": 600}
    token_endpoint.post(TOKEN_URL, json=REFRESHED)
    assert get_access_token("acme") == REFRESHED["access_token"]
    assert len(token_endpoint.calls) == 1


def test_smaller_margin_skips_the_refresh(
    oauth_client, make_token, token_endpoint, settings
):
    settings.OAUTH2_INTEGRATOR = {**settings.OAUTH2_INTEGRATOR, "REFRESH_MARGIN": 60}
    make_token(oauth_client, expires_at=in_seconds(120))
    assert get_access_token("acme") == OLD_ACCESS
    assert not token_endpoint.calls


# --- what a refresh changes -----------------------------------------------------


def test_refresh_without_new_refresh_token_keeps_the_old_one(expiring, token_endpoint):
    before = token_fields(expiring)
    token_endpoint.post(TOKEN_URL, json=REFRESHED)
    started = timezone.now()
    get_access_token("acme")
    after = token_fields(expiring)
    assert after["access_token"] == REFRESHED["access_token"]
    assert after["refresh_token"] == OLD_REFRESH
    assert after["obtained_at"] == before["obtained_at"]
    assert after["refreshed_at"] >= started
    assert after["expires_at"] >= started + datetime.timedelta(seconds=3600)
    assert after["status"] == TokenStatus.ACTIVE


def test_rotated_refresh_token_replaces_the_old_one(expiring, token_endpoint):
    token_endpoint.post(
        TOKEN_URL,
        json={
            **REFRESHED,
            "refresh_token": "rotated-refresh-FFFF-4444",
            "scope": "read",
        },
    )
    get_access_token("acme")
    token = OAuth2Token.objects.get()
    assert token.refresh_token == "rotated-refresh-FFFF-4444"
    assert token.scope == "read"

    token_endpoint.post(TOKEN_URL, json=REFRESHED)
    refresh_access_token("acme")
    assert sent_form(token_endpoint.calls[1])["refresh_token"] == (
        "rotated-refresh-FFFF-4444"
    )


def _ciphertexts(pk: int) -> tuple[str, str]:
    from django.db import connection

    table = OAuth2Token._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT refresh_token, extra FROM {table} WHERE id = %s",  # noqa: S608
            [pk],
        )
        refresh_token, extra = cursor.fetchone()
    return refresh_token, extra


@pytest.mark.parametrize(
    "answer",
    [
        {**REFRESHED, "refresh_token": OLD_REFRESH},  # the same one sent again
        REFRESHED,  # none: the old one is kept
    ],
)
def test_secrets_a_refresh_leaves_as_they_were_are_not_written_again(
    expiring, token_endpoint, answer
):
    """No encryption and no bytes spent on them; the stored ciphertexts stay."""
    before = _ciphertexts(expiring.pk)
    token_endpoint.post(TOKEN_URL, json=answer)
    refresh_access_token("acme")
    assert _ciphertexts(expiring.pk) == before
    token = OAuth2Token.objects.get()
    assert token.access_token == REFRESHED["access_token"]
    assert (token.refresh_token, token.extra) == (
        expiring.refresh_token,
        expiring.extra,
    )


def test_secrets_a_refresh_changes_are_written(expiring, token_endpoint):
    token_endpoint.post(
        TOKEN_URL,
        json={**REFRESHED, "refresh_token": "rotated-GGGG-5555", "id_hint": "x"},
    )
    refresh_access_token("acme")
    token = OAuth2Token.objects.get()
    assert token.refresh_token == "rotated-GGGG-5555"
    assert token.extra == {**expiring.extra, "id_hint": "x"}


def test_refresh_without_expires_in_stores_no_expiry(expiring, token_endpoint):
    token_endpoint.post(TOKEN_URL, json={"access_token": "no-expiry-access-0000"})
    assert get_access_token("acme") == "no-expiry-access-0000"
    assert OAuth2Token.objects.get().expires_at is None
    assert get_access_token("acme") == "no-expiry-access-0000"
    assert len(token_endpoint.calls) == 1


def test_refresh_with_numeric_string_expires_in(expiring, token_endpoint):
    token_endpoint.post(TOKEN_URL, json={**REFRESHED, "expires_in": "7200"})
    started = timezone.now()
    get_access_token("acme")
    expires_at = OAuth2Token.objects.get().expires_at
    assert started + datetime.timedelta(seconds=7200) <= expires_at
    assert expires_at <= timezone.now() + datetime.timedelta(seconds=7200)


def test_refresh_access_token_forces_a_refresh(
    oauth_client, make_token, token_endpoint
):
    make_token(oauth_client, expires_at=in_seconds(86400))
    token_endpoint.post(TOKEN_URL, json=REFRESHED)
    assert refresh_access_token("acme") == REFRESHED["access_token"]
    assert oauth2_integrator.refresh_access_token("acme") == REFRESHED["access_token"]
    assert len(token_endpoint.calls) == 2


def test_refresh_request_headers_and_timeouts(expiring, token_endpoint, settings):
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "CONNECT_TIMEOUT": 3,
        "READ_TIMEOUT": 11.5,
    }
    token_endpoint.post(TOKEN_URL, json=REFRESHED)
    get_access_token("acme")
    request = token_endpoint.calls[0].request
    assert request.headers["User-Agent"] == (
        f"django-oauth2-integrator/{oauth2_integrator.__version__}"
    )
    assert request.req_kwargs["timeout"] == (3.0, 11.5)
    assert request.headers["Authorization"].startswith("Basic ")
    assert CLIENT_SECRET not in request.body


def test_a_successful_refresh_clears_the_last_error(expiring, token_endpoint):
    token_endpoint.post(TOKEN_URL, status=503)
    get_access_token("acme")  # still valid: the current token is returned
    assert OAuth2Token.objects.get().last_error
    # The back-off step passes (tests/test_backoff.py covers the wait itself).
    OAuth2Token.objects.update(next_attempt_at=in_seconds(-1))
    token_endpoint.replace("POST", TOKEN_URL, json=REFRESHED)
    assert get_access_token("acme") == REFRESHED["access_token"]
    token = OAuth2Token.objects.get()
    assert token.last_error == ""
    assert token.last_error_at is None
    assert token.refresh_attempts == 0
    assert token.next_attempt_at is None


# --- the failure policy ---------------------------------------------------------


def test_invalid_grant_needs_reauthorization_and_keeps_the_row(
    expired, token_endpoint, caplog
):
    token_endpoint.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_grant", "error_description": "Token revoked"},
    )
    with pytest.raises(AuthorizationRequired) as info:
        get_access_token("acme")
    message = str(info.value)
    assert "'acme'" in message
    assert "re-authorize" in message
    assert "Django admin" in message
    assert info.value.client == "acme"
    assert info.value.error == "invalid_grant"

    token = OAuth2Token.objects.get()
    assert token.pk == expired.pk
    assert token.status == TokenStatus.REAUTHORIZATION_REQUIRED
    assert "invalid_grant" in token.last_error
    assert token.last_error_at is not None
    assert token.access_token == OLD_ACCESS
    assert token.refresh_token == OLD_REFRESH
    assert OLD_REFRESH not in caplog.text

    # No more calls until an operator re-authorizes.
    with pytest.raises(AuthorizationRequired, match="Re-authorize"):
        get_access_token("acme")
    with pytest.raises(AuthorizationRequired):
        refresh_access_token("acme")
    assert len(token_endpoint.calls) == 1


def test_invalid_grant_while_still_valid_also_needs_reauthorization(
    expiring, token_endpoint
):
    token_endpoint.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(AuthorizationRequired):
        get_access_token("acme")
    assert OAuth2Token.objects.get().status == TokenStatus.REAUTHORIZATION_REQUIRED


TRANSIENT = [
    pytest.param({"body": requests.Timeout("read timed out")}, id="timeout"),
    pytest.param({"body": requests.ConnectionError("refused")}, id="connection"),
    pytest.param({"status": 500, "body": "boom"}, id="500"),
    pytest.param({"status": 502, "body": "<html>bad gateway</html>"}, id="502"),
    pytest.param(
        {"status": 503, "json": {"error": "temporarily_unavailable"}}, id="503"
    ),
    pytest.param({"status": 429, "body": ""}, id="429"),
]


@pytest.mark.parametrize("answer", TRANSIENT)
def test_transient_failure_with_expired_token_raises_and_changes_nothing(
    expired, token_endpoint, answer, caplog
):
    before = token_fields(expired)
    token_endpoint.post(TOKEN_URL, **answer)
    with pytest.raises(TokenRefreshError) as info:
        get_access_token("acme")
    assert "'acme'" in str(info.value)
    assert info.value.client == "acme"
    after = unchanged_but_error(expired, before)
    assert after["status"] == TokenStatus.ACTIVE
    assert after["last_error"]
    assert OLD_REFRESH not in after["last_error"]
    assert OLD_REFRESH not in caplog.text
    assert OLD_REFRESH not in str(info.value)


@pytest.mark.parametrize("answer", TRANSIENT)
def test_transient_failure_of_forced_refresh_raises(
    oauth_client, make_token, token_endpoint, answer
):
    token = make_token(oauth_client, expires_at=in_seconds(86400))
    before = token_fields(token)
    token_endpoint.post(TOKEN_URL, **answer)
    with pytest.raises(TokenRefreshError):
        refresh_access_token("acme")
    unchanged_but_error(token, before)


@pytest.mark.parametrize("answer", TRANSIENT)
def test_transient_failure_inside_the_margin_returns_the_current_token(
    expiring, token_endpoint, answer, caplog
):
    """Documented behaviour: a still-valid token is better than an error."""
    caplog.set_level(logging.WARNING, logger="oauth2_integrator")
    before = token_fields(expiring)
    token_endpoint.post(TOKEN_URL, **answer)
    assert get_access_token("acme") == OLD_ACCESS
    unchanged_but_error(expiring, before)
    assert "still valid" in caplog.text
    assert OLD_ACCESS not in caplog.text


def test_expired_token_without_refresh_token(oauth_client, make_token, token_endpoint):
    make_token(oauth_client, refresh_token="", expires_at=in_seconds(-1))
    with pytest.raises(AuthorizationRequired) as info:
        get_access_token("acme")
    assert "'acme'" in str(info.value)
    assert "no refresh token" in str(info.value)
    assert "re-authorize" in str(info.value)
    assert not token_endpoint.calls


def test_expiring_token_without_refresh_token_is_used_until_it_expires(
    oauth_client, make_token, token_endpoint
):
    make_token(oauth_client, refresh_token="", expires_at=in_seconds(60))
    assert get_access_token("acme") == OLD_ACCESS
    with pytest.raises(AuthorizationRequired, match="no refresh token"):
        refresh_access_token("acme")
    assert not token_endpoint.calls


def test_no_token_yet(oauth_client):
    with pytest.raises(AuthorizationRequired) as info:
        get_access_token("acme")
    assert "'acme'" in str(info.value)
    assert "not authorized yet" in str(info.value)
    assert "Authorize" in str(info.value)
    with pytest.raises(AuthorizationRequired):
        refresh_access_token("acme")


def test_disabled_client(make_client, make_token, token_endpoint):
    make_token(make_client(enabled=False))
    with pytest.raises(AuthorizationRequired) as info:
        get_access_token("acme")
    assert "'acme'" in str(info.value)
    assert "disabled" in str(info.value)
    assert "Enable it" in str(info.value)
    with pytest.raises(AuthorizationRequired):
        refresh_access_token("acme")
    assert not token_endpoint.calls


def test_revoked_token(oauth_client, make_token):
    make_token(oauth_client, status=TokenStatus.REVOKED)
    with pytest.raises(AuthorizationRequired, match="re-authorization"):
        get_access_token("acme")


def test_unknown_client_name(db):
    with pytest.raises(ConfigurationError) as info:
        get_access_token("nobody")
    assert isinstance(info.value, ImproperlyConfigured)
    assert "'nobody'" in str(info.value)
    assert "oauth2_import_clients" in str(info.value)
    with pytest.raises(ConfigurationError):
        refresh_access_token("nobody")


# --- short-lived tokens and the hot path ------------------------------------------


def test_margin_is_capped_at_half_the_lifetime_of_short_lived_tokens(
    oauth_client, make_token, token_endpoint
):
    """A 5-minute token (Keycloak's default) with the default 5-minute margin would
    otherwise be refreshed on every call."""
    now = timezone.now()
    token = make_token(
        oauth_client,
        obtained_at=now - datetime.timedelta(seconds=10),
        expires_at=now + datetime.timedelta(seconds=290),
    )
    assert get_access_token("acme") == OLD_ACCESS
    assert not token_endpoint.calls

    # Past half its life, it is refreshed.
    token.obtained_at = now - datetime.timedelta(seconds=160)
    token.expires_at = now + datetime.timedelta(seconds=140)
    token.save()
    token_endpoint.post(TOKEN_URL, json=REFRESHED)
    assert get_access_token("acme") == REFRESHED["access_token"]
    assert len(token_endpoint.calls) == 1


def test_hot_path_is_one_query_and_leaves_the_client_secret_encrypted(
    oauth_client, make_token, django_assert_num_queries, monkeypatch
):
    make_token(oauth_client)
    decrypted: list[str] = []
    from oauth2_integrator import crypto

    real_decrypt = crypto.decrypt
    monkeypatch.setattr(
        crypto, "decrypt", lambda value: decrypted.append(value) or real_decrypt(value)
    )
    with django_assert_num_queries(1):
        assert get_access_token("acme") == OLD_ACCESS
    assert CLIENT_SECRET not in [real_decrypt(value) for value in decrypted]
