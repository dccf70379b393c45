"""What a refresh records and refuses to lose (issue items 2, 8, 12, 14, 15), and what
a new login replaces (the mutations listed under "Tests that let this through")."""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DataError, connection
from django.utils import timezone

from oauth2_integrator import (
    AuthorizationRequired,
    TokenRefreshError,
    flow,
    get_access_token,
    providers,
    refresh_access_token,
    signals,
    tokens,
)
from oauth2_integrator.models import (
    EventKind,
    OAuth2Client,
    OAuth2Event,
    OAuth2Token,
    TokenStatus,
)
from oauth2_integrator.status import describe
from oauth2_integrator.tokens import store_token_set

from .conftest import CLIENT_SECRET, TOKEN_URL, in_seconds

OLD_ACCESS = "stored-access-token-AAAA-1111-BBBB"
OLD_REFRESH = "stored-refresh-token-CCCC-2222-DDDD"
NEW = {
    "access_token": "new-access-token-KKKK-9999",
    "refresh_token": "new-refresh-token-LLLL-0000",
    "token_type": "Bearer",
    "expires_in": 3600,
}


@pytest.fixture
def sent() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Signals received, by name."""
    got: dict[str, list[dict[str, Any]]] = {"refreshed": [], "failed": []}

    def on_refreshed(**kwargs: Any) -> None:
        got["refreshed"].append(kwargs)

    def on_failed(**kwargs: Any) -> None:
        got["failed"].append(kwargs)

    signals.token_refreshed.connect(on_refreshed)
    signals.token_refresh_failed.connect(on_failed)
    yield got
    signals.token_refreshed.disconnect(on_refreshed)
    signals.token_refresh_failed.disconnect(on_failed)


# --- item 12: permanent errors other than invalid_grant ----------------------------

PERMANENT = [
    "invalid_client",
    "unauthorized_client",
    "invalid_scope",
    "invalid_request",
]


@pytest.mark.parametrize("code", PERMANENT)
def test_permanent_error_is_recorded_and_not_repeated(
    expired, token_endpoint, code, sent
):
    token_endpoint.post(TOKEN_URL, status=400, json={"error": code})
    with pytest.raises(TokenRefreshError) as first:
        get_access_token("acme")
    assert "not asked again" in str(first.value)
    assert len(token_endpoint.calls) == 1
    token = OAuth2Token.objects.get()
    assert token.status == TokenStatus.ACTIVE  # not invalid_grant: no re-authorization
    assert token.last_error_code == code
    assert token.next_attempt_at > timezone.now() + datetime.timedelta(seconds=3500)
    assert len(sent["failed"]) == 1

    # Later calls name the recorded error and do not call the provider.
    for call in (get_access_token, refresh_access_token):
        with pytest.raises(TokenRefreshError) as info:
            call("acme")
        assert code in str(info.value)
        assert "'acme'" in str(info.value)
        assert "Django admin" in str(info.value)
        assert info.value.error == code
    assert len(token_endpoint.calls) == 1


def test_permanent_error_still_serves_a_valid_token(expiring, token_endpoint):
    token_endpoint.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    assert get_access_token("acme") == OLD_ACCESS
    assert get_access_token("acme") == OLD_ACCESS
    assert len(token_endpoint.calls) == 1


def test_status_shows_what_to_fix(expired, oauth_client, token_endpoint):
    token_endpoint.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    with pytest.raises(TokenRefreshError):
        get_access_token("acme")
    status = describe(oauth_client)
    assert "refresh refused (invalid_client)" in status
    assert "check the client ID and secret" in status
    assert "not retried for" in status
    assert "refreshed on next use" not in status


def test_changing_the_client_lifts_the_hold(expired, oauth_client, token_endpoint):
    token_endpoint.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    with pytest.raises(TokenRefreshError):
        get_access_token("acme")
    client = OAuth2Client.objects.get()
    client.client_secret = "a-corrected-secret-value-0000"
    client.save()
    assert "retried on next use" in describe(client)
    token_endpoint.replace("POST", TOKEN_URL, json=NEW)
    assert get_access_token("acme") == NEW["access_token"]
    assert len(token_endpoint.calls) == 2
    token = OAuth2Token.objects.get()
    assert token.last_error_code == ""
    assert token.next_attempt_at is None


def test_the_retry_delay_lifts_the_hold(expired, token_endpoint, settings):
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "PERMANENT_ERROR_RETRY_DELAY": 1,
    }
    token_endpoint.post(TOKEN_URL, status=400, json={"error": "unauthorized_client"})
    with pytest.raises(TokenRefreshError):
        get_access_token("acme")
    with pytest.raises(TokenRefreshError):
        get_access_token("acme")
    assert len(token_endpoint.calls) == 1
    OAuth2Token.objects.update(next_attempt_at=in_seconds(-1))
    with pytest.raises(TokenRefreshError):
        get_access_token("acme")
    assert len(token_endpoint.calls) == 2


def test_reauthorization_lifts_the_hold(expired, oauth_client, token_endpoint):
    token_endpoint.post(TOKEN_URL, status=400, json={"error": "invalid_scope"})
    with pytest.raises(TokenRefreshError):
        get_access_token("acme")
    store_token_set(
        oauth_client,
        flow.TokenSet(access_token="login-access-MMMM", refresh_token="login-r-NNNN"),
    )
    token = OAuth2Token.objects.get()
    assert token.next_attempt_at is None
    assert token.last_error_code == ""


def test_transient_errors_back_off_instead_of_holding_for_an_hour(
    expired, token_endpoint
):
    """Issue 7 changed this: a transient failure backs off (tests/test_backoff.py)
    for BACKOFF_FIRST seconds, not PERMANENT_ERROR_RETRY_DELAY, and tells no one."""
    token_endpoint.post(TOKEN_URL, status=503)
    for _ in range(2):
        with pytest.raises(TokenRefreshError):
            get_access_token("acme")
    assert len(token_endpoint.calls) == 1  # the second caller waits for the step
    token = OAuth2Token.objects.get()
    assert token.refresh_attempts == 1
    assert token.next_attempt_at < in_seconds(30 * 1.25 + 5)
    assert token.incident_notified_at is None


# --- item 14: expiry counts from when the request was sent -------------------------


def test_refresh_expiry_counts_from_the_request(expired, token_endpoint):
    def slow(request: Any) -> tuple[int, dict[str, str], str]:
        time.sleep(1.5)
        return 200, {"Content-Type": "application/json"}, json.dumps(NEW)

    token_endpoint.add_callback("POST", TOKEN_URL, callback=slow)
    sent_at = timezone.now()
    get_access_token("acme")
    expires_at = OAuth2Token.objects.get().expires_at
    assert expires_at - sent_at < datetime.timedelta(seconds=3600.5)


def test_login_expiry_counts_from_the_request(oauth_client):
    requested_at = timezone.now() - datetime.timedelta(seconds=30)
    store_token_set(
        oauth_client,
        flow.TokenSet(
            access_token="login-access-MMMM",
            expires_in=3600,
            requested_at=requested_at,
        ),
    )
    expires_at = OAuth2Token.objects.get().expires_at
    assert expires_at == requested_at + datetime.timedelta(seconds=3600)


# --- item 15: a narrower scope is reported -----------------------------------------


def test_narrower_scope_is_logged_and_signalled(expiring, token_endpoint, sent, caplog):
    caplog.set_level(logging.WARNING, logger="oauth2_integrator")
    token_endpoint.post(TOKEN_URL, json={**NEW, "scope": "read"})
    get_access_token("acme")
    assert OAuth2Token.objects.get().scope == "read"
    assert sent["refreshed"][0]["scope_narrowed"] == ["write"]
    warning = [r for r in caplog.records if "narrowed" in r.getMessage()]
    assert len(warning) == 1
    assert "write" in warning[0].getMessage()
    assert "'acme'" in warning[0].getMessage()


@pytest.mark.parametrize("scope", [None, "read write", "write read admin"])
def test_same_or_wider_scope_is_not_narrowed(
    expiring, token_endpoint, sent, caplog, scope
):
    body = {**NEW, "scope": scope} if scope else NEW
    token_endpoint.post(TOKEN_URL, json=body)
    get_access_token("acme")
    assert sent["refreshed"][0]["scope_narrowed"] == []
    assert "narrowed" not in caplog.text


def test_narrowing_uses_the_providers_scope_separator(
    make_client, make_token, token_endpoint, sent, monkeypatch
):
    profile = type(providers.get("generic"))
    monkeypatch.setattr(profile, "scope_separator", ",")
    make_token(make_client(scope="repo,gist,user"), expires_at=in_seconds(120))
    token_endpoint.post(TOKEN_URL, json={**NEW, "scope": "repo,user"})
    get_access_token("acme")
    assert sent["refreshed"][0]["scope_narrowed"] == ["gist"]


# --- item 8: an unexpected exception is a TokenRefreshError ------------------------


def hook_that_fails(monkeypatch: Any, exc: Exception) -> None:
    """``flow.refresh`` fails with something that is not an OAuth2IntegratorError
    (flow turns a failing parse hook into a TokenEndpointError itself)."""

    def broken_refresh(client: Any, *, refresh_token: str, **_: Any) -> Any:
        raise exc

    monkeypatch.setattr(flow, "refresh", broken_refresh)


@pytest.mark.parametrize(
    "exc",
    [
        RecursionError("maximum recursion depth exceeded"),
        ValueError(f"hook could not read {OLD_REFRESH} / {OLD_ACCESS}"),
    ],
    ids=["recursion", "value-error-with-secrets"],
)
def test_unexpected_exception_is_recorded_and_wrapped(
    expired, token_endpoint, monkeypatch, sent, caplog, exc
):
    caplog.set_level(logging.DEBUG, logger="oauth2_integrator")
    token_endpoint.post(TOKEN_URL, json=NEW)
    hook_that_fails(monkeypatch, exc)
    with pytest.raises(TokenRefreshError) as info:
        get_access_token("acme")
    kind = type(exc).__name__
    assert kind in str(info.value)
    assert "'acme'" in str(info.value)
    token = OAuth2Token.objects.get()
    assert kind in token.last_error
    assert token.refresh_token == OLD_REFRESH  # nothing stored from the answer
    assert token.status == TokenStatus.ACTIVE
    assert len(sent["failed"]) == 1
    assert sent["failed"][0]["error"] is info.value
    assert "Traceback" in caplog.text
    assert "broken_refresh" in caplog.text  # the failing frame is in the log
    for secret in (OLD_REFRESH, OLD_ACCESS, CLIENT_SECRET):
        assert secret not in caplog.text
        assert secret not in str(info.value)
        assert secret not in token.last_error


def test_unexpected_exception_with_a_valid_token_serves_it(
    expiring, token_endpoint, monkeypatch
):
    token_endpoint.post(TOKEN_URL, json=NEW)
    hook_that_fails(monkeypatch, ValueError("a provider hook's bug"))
    assert get_access_token("acme") == OLD_ACCESS
    assert "ValueError" in OAuth2Token.objects.get().last_error


# --- item 2: a successful answer is never lost to a storage error ------------------


def refresh_returning(monkeypatch: Any, **fields: Any) -> None:
    """flow.refresh answers with values that bypass flow's own cleaning."""

    def refresh(client: Any, *, refresh_token: str, **_: Any) -> flow.TokenSet:
        return flow.TokenSet(
            requested_at=timezone.now(),
            **{
                "access_token": NEW["access_token"],
                "refresh_token": NEW["refresh_token"],
                "expires_in": 3600,
                **fields,
            },
        )

    monkeypatch.setattr(flow, "refresh", refresh)


def assert_saved_in_part(token_before: OAuth2Token) -> OAuth2Token:
    token = OAuth2Token.objects.get()
    assert token.access_token == NEW["access_token"]
    assert token.refresh_token == NEW["refresh_token"]
    assert token.expires_at > timezone.now() + datetime.timedelta(seconds=3500)
    assert token.refreshed_at is not None
    assert token.status == TokenStatus.ACTIVE
    assert token.last_error_code == "storage_error"
    assert "saved" in token.last_error
    return token


@pytest.mark.postgres
@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"token_type": "B" * 100}, id="token-type-too-long"),
        pytest.param({"scope": "read\x00write"}, id="nul-in-scope"),
    ],
)
def test_storage_error_keeps_the_new_tokens_on_postgresql(
    expired, monkeypatch, fields, sent
):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite stores these values; the next test patches the error in")
    refresh_returning(monkeypatch, **fields)
    assert get_access_token("acme") == NEW["access_token"]
    assert_saved_in_part(expired)
    # The refresh is in the audit trail all the same, once.
    assert OAuth2Event.objects.filter(kind=EventKind.REFRESHED).count() == 1
    assert len(sent["refreshed"]) == 1


def refuse_the_full_row(monkeypatch: Any, error: Exception) -> None:
    """The database refuses the refreshed row as a whole (patched in where SQLite
    would store the value; the PostgreSQL test above gets a real DataError)."""
    real_store = tokens._store_claimed

    def store(token: OAuth2Token, alias: str, fields: list[str], **kw: Any) -> bool:
        if "token_type" in fields:  # the full row, not the essentials
            raise error
        return real_store(token, alias, fields, **kw)

    monkeypatch.setattr(tokens, "_store_claimed", store)


def test_storage_error_keeps_the_new_tokens(expired, monkeypatch, caplog):
    refresh_returning(monkeypatch, token_type="Bearer")
    refuse_the_full_row(
        monkeypatch, DataError("value too long for type character varying(40)")
    )
    assert get_access_token("acme") == NEW["access_token"]
    assert_saved_in_part(expired)
    assert OAuth2Event.objects.filter(kind=EventKind.REFRESHED).count() == 1
    assert NEW["refresh_token"] not in caplog.text
    # The next call uses the stored token without another refresh.
    assert get_access_token("acme") == NEW["access_token"]


def test_a_later_successful_refresh_clears_the_storage_error(
    expiring, monkeypatch, token_endpoint
):
    refresh_returning(monkeypatch)
    refuse_the_full_row(monkeypatch, DataError("boom"))
    get_access_token("acme")
    assert OAuth2Token.objects.get().last_error_code == "storage_error"
    monkeypatch.undo()
    token_endpoint.post(TOKEN_URL, json=NEW)
    refresh_access_token("acme")
    assert OAuth2Token.objects.get().last_error_code == ""


# --- store_token_set: what a new login replaces ------------------------------------


def test_login_after_invalid_grant_drops_the_dead_refresh_token(
    oauth_client, make_token
):
    make_token(oauth_client, status=TokenStatus.REAUTHORIZATION_REQUIRED)
    store_token_set(oauth_client, flow.TokenSet(access_token="login-access-MMMM"))
    token = OAuth2Token.objects.get()
    assert token.refresh_token == ""
    assert token.status == TokenStatus.ACTIVE


def test_login_while_active_keeps_the_refresh_token(oauth_client, make_token):
    """Google sends a refresh token only on the first consent."""
    make_token(oauth_client)
    store_token_set(oauth_client, flow.TokenSet(access_token="login-access-MMMM"))
    assert OAuth2Token.objects.get().refresh_token == OLD_REFRESH


def test_login_without_scope_takes_the_clients_scope(oauth_client, make_token):
    make_token(oauth_client, scope="old-scope-only")
    store_token_set(oauth_client, flow.TokenSet(access_token="login-access-MMMM"))
    assert OAuth2Token.objects.get().scope == "read write"


def test_login_clears_the_old_extra(oauth_client, make_token):
    make_token(oauth_client, extra={"id_token": "old.id.token", "tenant": "x"})
    store_token_set(
        oauth_client,
        flow.TokenSet(access_token="login-access-MMMM", extra={"tenant": "y"}),
    )
    assert OAuth2Token.objects.get().extra == {"tenant": "y"}


def test_refresh_keeps_the_extra_it_does_not_replace(
    oauth_client, make_token, token_endpoint
):
    make_token(
        oauth_client,
        expires_at=in_seconds(-1),
        extra={"id_token": "login.id.token", "tenant": "x"},
    )
    token_endpoint.post(TOKEN_URL, json={**NEW, "tenant": "y"})
    get_access_token("acme")
    assert OAuth2Token.objects.get().extra == {
        "id_token": "login.id.token",
        "tenant": "y",
    }


def test_invalid_grant_then_login_then_refresh(expired, oauth_client, token_endpoint):
    token_endpoint.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(AuthorizationRequired):
        get_access_token("acme")
    store_token_set(
        oauth_client,
        flow.TokenSet(
            access_token="login-access-MMMM",
            refresh_token="login-refresh-OOOO-1111",
            expires_in=1,
            requested_at=timezone.now() - datetime.timedelta(seconds=10),
        ),
    )
    token_endpoint.replace("POST", TOKEN_URL, json=NEW)
    assert get_access_token("acme") == NEW["access_token"]
    assert "login-refresh-OOOO-1111" in token_endpoint.calls[-1].request.body


def test_undecryptable_client_secret_is_recorded_and_raised(
    expired, oauth_client, token_endpoint, sent
):
    from oauth2_integrator import ConfigurationError
    from oauth2_integrator.fields import Undecryptable

    OAuth2Client.objects.filter(pk=oauth_client.pk).update(
        client_secret=Undecryptable("gAAAAABnot-a-ciphertext-any-key-opens")
    )
    with pytest.raises(ConfigurationError) as info:
        get_access_token("acme")
    assert "'acme'" in str(info.value)
    token = OAuth2Token.objects.get()
    assert token.last_error == str(info.value)
    assert token.refresh_token == OLD_REFRESH
    assert sent["failed"][0]["error"] is info.value
    assert not token_endpoint.calls
