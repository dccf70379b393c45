"""The failure policy of issue 7: back-off with jitter for transient failures, shared
by every caller; one notice per incident for the failures an operator must fix."""

from __future__ import annotations

import datetime
from typing import Any
from unittest import mock

import pytest
from django.db import connection, connections
from django.utils import timezone

from oauth2_integrator import (
    AuthorizationRequired,
    TokenRefreshError,
    flow,
    get_access_token,
    tokens,
)
from oauth2_integrator.models import OAuth2Token, TokenStatus
from oauth2_integrator.status import describe
from oauth2_integrator.tokens import backoff_delay, store_token_set

from .conftest import OPS_ADMINS, TOKEN_URL, in_seconds
from .rotating_provider import RotatingProvider, running

NEW = {
    "access_token": "backoff-new-access-PPPP-7777",
    "refresh_token": "backoff-new-refresh-QQQQ-8888",
    "token_type": "Bearer",
    "expires_in": 3600,
}
ADMINS = OPS_ADMINS


@pytest.fixture(autouse=True)
def _admins(settings: Any) -> None:
    settings.ADMINS = ADMINS


def later(seconds: float) -> Any:
    """Patch the clock ``seconds`` ahead (tokens, flow and the models read it)."""
    moved = timezone.now() + datetime.timedelta(seconds=seconds)
    return mock.patch("django.utils.timezone.now", return_value=moved)


# --- the steps ----------------------------------------------------------------------


def test_first_step_is_at_least_30_seconds_and_steps_double_up_to_the_cap():
    for _ in range(50):
        first = backoff_delay(1)
        assert 30 <= first <= 37.5
        assert 60 <= backoff_delay(2) <= 75
        assert backoff_delay(30) == 3600  # BACKOFF_MAX
    assert len({backoff_delay(1) for _ in range(20)}) > 1  # jitter


def test_retry_after_wins_when_longer(settings):
    assert backoff_delay(1, retry_after=600) == 600
    assert 30 <= backoff_delay(1, retry_after=5) <= 37.5
    settings.OAUTH2_INTEGRATOR = {**settings.OAUTH2_INTEGRATOR, "BACKOFF_FIRST": 5}
    assert 5 <= backoff_delay(1) <= 6.25


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past
        ("999999999", 86400.0),  # at most a day
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("", None),
        ("9" * 200, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header, seconds):
    assert flow.parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date_in_the_future():
    now = datetime.datetime(2030, 1, 1, 12, 0, tzinfo=datetime.UTC)
    header = "Tue, 01 Jan 2030 12:10:00 GMT"
    assert flow.parse_retry_after(header, now=now) == 600.0


# --- one call per step, whoever asks ------------------------------------------------


def test_valid_token_is_served_and_the_provider_asked_once_per_step(
    expiring, token_endpoint, mailoutbox
):
    token_endpoint.post(TOKEN_URL, status=503)
    for _ in range(5):
        assert get_access_token("acme") == expiring.access_token
    assert len(token_endpoint.calls) == 1
    token = OAuth2Token.objects.get()
    assert token.refresh_attempts == 1
    assert in_seconds(29) < token.next_attempt_at < in_seconds(38)
    with later(40):
        for _ in range(3):
            assert get_access_token("acme") == expiring.access_token
    assert len(token_endpoint.calls) == 2
    token = OAuth2Token.objects.get()
    assert token.refresh_attempts == 2
    step = (token.next_attempt_at - token.last_error_at).total_seconds()
    assert 60 <= step <= 75
    assert mailoutbox == []  # a provider outage is not the operator's to fix


def test_expired_token_says_when_the_next_attempt_is(expired, token_endpoint):
    token_endpoint.post(TOKEN_URL, status=503)
    with pytest.raises(TokenRefreshError) as first:
        get_access_token("acme")
    assert "asked again at" in str(first.value)
    with pytest.raises(TokenRefreshError) as second:
        get_access_token("acme")
    assert "next attempt is at" in str(second.value)
    assert "failed once (server_error)" in str(second.value)
    assert len(token_endpoint.calls) == 1


def test_success_resets_the_attempts(expired, token_endpoint):
    token_endpoint.post(TOKEN_URL, status=503)
    with pytest.raises(TokenRefreshError):
        get_access_token("acme")
    token_endpoint.replace("POST", TOKEN_URL, json=NEW)
    with later(40):
        assert get_access_token("acme") == NEW["access_token"]
    token = OAuth2Token.objects.get()
    assert (token.refresh_attempts, token.next_attempt_at) == (0, None)


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_429_with_retry_after_is_honoured(expired, token_endpoint, form):
    header = "900"
    if form == "http-date":
        when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=900)
        header = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    token_endpoint.post(TOKEN_URL, status=429, headers={"Retry-After": header})
    with pytest.raises(TokenRefreshError):
        get_access_token("acme")
    token = OAuth2Token.objects.get()
    assert in_seconds(880) < token.next_attempt_at < in_seconds(910)
    with later(600), pytest.raises(TokenRefreshError, match="next attempt"):
        get_access_token("acme")
    assert len(token_endpoint.calls) == 1


def test_status_shows_the_back_off(expired, oauth_client, token_endpoint):
    token_endpoint.post(TOKEN_URL, status=503)
    with pytest.raises(TokenRefreshError):
        get_access_token("acme")
    text = describe(oauth_client)
    assert "refresh failed once (server_error)" in text
    assert "next attempt in" in text


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "<html>Maintenance</html>", "content_type": "text/html"},
        {"body": "[" * 5000 + "]" * 5000, "content_type": "application/json"},
    ],
    ids=["html", "too-deep"],
)
def test_an_answer_that_is_not_a_token_backs_off_too(
    expired, token_endpoint, answer, mailoutbox
):
    """Issue 5 held these for PERMANENT_ERROR_RETRY_DELAY (an hour): issue 7 backs
    off instead, since a proxy's or a maintenance page is the usual cause."""
    token_endpoint.post(TOKEN_URL, status=200, **answer)
    with pytest.raises(TokenRefreshError):
        get_access_token("acme")
    token = OAuth2Token.objects.get()
    assert token.last_error_code == "invalid_response"
    assert token.refresh_attempts == 1
    assert token.next_attempt_at < in_seconds(38)
    assert mailoutbox == []


def test_an_unexpected_error_backs_off(expired, token_endpoint, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a profile hook's bug")

    monkeypatch.setattr(flow, "refresh", broken)
    for _ in range(3):
        with pytest.raises(TokenRefreshError):
            get_access_token("acme")
    token = OAuth2Token.objects.get()
    assert (token.last_error_code, token.refresh_attempts) == ("unexpected_error", 1)


# --- one notice per incident --------------------------------------------------------


def test_invalid_grant_tells_the_operator_once(
    expired, oauth_client, token_endpoint, mailoutbox, told
):
    token_endpoint.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    for _ in range(3):
        with pytest.raises(AuthorizationRequired):
            get_access_token("acme")
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["ops@example.com"]
    assert "acme" in mail.subject
    assert "invalid_grant" in mail.body and "re-authorize" in mail.body
    assert expired.refresh_token not in mail.body
    assert [t["client"].name for t in told] == ["acme"]
    assert "invalid_grant" in told[0]["reason"]
    # Re-authorization ends the incident: the next one is told again.
    store_token_set(
        oauth_client,
        flow.TokenSet(
            access_token=NEW["access_token"],
            refresh_token=NEW["refresh_token"],
            expires_in=-60,
        ),
    )
    assert OAuth2Token.objects.get().incident_notified_at is None
    with pytest.raises(AuthorizationRequired):
        get_access_token("acme")
    assert len(mailoutbox) == 2
    assert len(told) == 2


def test_a_refused_registration_is_mailed_once_without_the_reauthorization_signal(
    expired, token_endpoint, mailoutbox, told
):
    token_endpoint.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    with pytest.raises(TokenRefreshError):
        get_access_token("acme")
    with later(3700), pytest.raises(TokenRefreshError):
        get_access_token("acme")  # the hold passed: asked again, refused again
    assert len(token_endpoint.calls) == 2
    assert len(mailoutbox) == 1
    assert "fix its registration" in mailoutbox[0].body
    assert told == []


def test_notify_recipients_and_off_switch(
    expired, token_endpoint, mailoutbox, settings
):
    token_endpoint.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "NOTIFY_RECIPIENTS": ["oncall@example.com"],
    }
    with pytest.raises(AuthorizationRequired):
        get_access_token("acme")
    assert [m.to for m in mailoutbox] == [["oncall@example.com"]]
    OAuth2Token.objects.update(status=TokenStatus.ACTIVE, incident_notified_at=None)
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "NOTIFY_ADMINS": False,
    }
    with pytest.raises(AuthorizationRequired):
        get_access_token("acme")
    assert len(mailoutbox) == 1


def test_a_broken_mail_server_does_not_hide_the_failure(
    expired, token_endpoint, monkeypatch, caplog
):
    token_endpoint.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr("oauth2_integrator.notifications.mail_admins", refuse)
    with pytest.raises(AuthorizationRequired):
        get_access_token("acme")
    assert "Could not e-mail the operator" in caplog.text


# --- many callers at once, on PostgreSQL --------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("still_valid", [True, False], ids=["valid", "expired"])
def test_four_workers_during_an_outage_make_one_call(
    make_client, make_token, still_valid
):
    if connection.vendor != "postgresql":
        pytest.skip("races real connections on PostgreSQL")
    import threading

    provider = RotatingProvider("stored-refresh-token-CCCC-2222-DDDD", delay=0.3)
    provider.outage = True
    with running(provider):
        client = make_client(token_endpoint=provider.url)
        make_token(client, expires_at=in_seconds(60 if still_valid else -60))
        barrier = threading.Barrier(4)
        results: list[Any] = []

        def worker() -> None:
            try:
                barrier.wait()
                results.append(get_access_token("acme"))
            except Exception as exc:
                results.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert len(provider.calls) == 1
    if still_valid:
        assert results == ["stored-access-token-AAAA-1111-BBBB"] * 4
    else:
        assert all(isinstance(r, TokenRefreshError) for r in results)
    assert OAuth2Token.objects.get().refresh_attempts == 1


def test_the_back_off_is_read_from_the_row_not_the_caller(
    expired, token_endpoint, monkeypatch
):
    """A caller that loaded the row before another's failure still sees the
    back-off once it holds the lock (the row is read again under it)."""
    token_endpoint.post(TOKEN_URL, status=503)
    stale = OAuth2Token.objects.select_related("client").get()
    with pytest.raises(TokenRefreshError):
        get_access_token("acme")
    with pytest.raises(TokenRefreshError, match="next attempt"):
        tokens._refresh(stale.client, stale, force=False)
    assert len(token_endpoint.calls) == 1
