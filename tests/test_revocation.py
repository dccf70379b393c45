"""Disconnecting a client: RFC 7009 revocation, the local ``revoked`` status, the
Disconnect button and action, re-authorization and deletion revoking what they
replace."""

from __future__ import annotations

import base64
import threading
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import pytest
import requests
import responses
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.urls import reverse

from oauth2_integrator import (
    AuthorizationRequired,
    ConfigurationError,
    flow,
    get_access_token,
    revoke,
    signals,
)
from oauth2_integrator.models import (
    EventKind,
    OAuth2Client,
    OAuth2Event,
    OAuth2Token,
    TokenStatus,
)
from oauth2_integrator.revocation import RevokeResult
from oauth2_integrator.tokens import store_token_set

from .conftest import CLIENT_SECRET, STORED_ACCESS_TOKEN, STORED_REFRESH_TOKEN

REVOKE_URL = "https://auth.example.test/oauth/revoke"


def sent_form(call: Any) -> dict[str, str]:
    return dict(parse_qsl(call.request.body))


def basic_auth(call: Any) -> tuple[str, str]:
    header = call.request.headers["Authorization"]
    assert header.startswith("Basic ")
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return unquote_plus(user), unquote_plus(password)


@pytest.fixture
def revocable(make_client: Any, make_token: Any) -> OAuth2Client:
    client = make_client(revocation_endpoint=REVOKE_URL)
    make_token(client)
    return client


@pytest.fixture
def provider() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def assert_no_secret(text: str) -> None:
    for secret in (CLIENT_SECRET, STORED_ACCESS_TOKEN, STORED_REFRESH_TOKEN):
        assert secret not in text


# --- revoke() ---------------------------------------------------------------------------


def test_revoke_sends_the_refresh_token_then_the_access_token_with_client_auth(
    revocable, provider, operator
):
    provider.post(REVOKE_URL, status=200)
    sent: list[dict[str, Any]] = []
    signals.token_revoked.connect(
        lambda **kw: sent.append(kw), weak=False, dispatch_uid="test-revoked"
    )
    try:
        result = revoke("acme", actor=operator)
    finally:
        signals.token_revoked.disconnect(dispatch_uid="test-revoked")

    assert result.confirmed and result.provider == "confirmed"
    assert "confirmed" in result.detail
    assert [sent_form(c) for c in provider.calls] == [
        {"token": STORED_REFRESH_TOKEN, "token_type_hint": "refresh_token"},
        {"token": STORED_ACCESS_TOKEN, "token_type_hint": "access_token"},
    ]
    assert {basic_auth(c) for c in provider.calls} == {
        ("acme-client-id", CLIENT_SECRET)
    }
    token = OAuth2Token.objects.get()
    assert token.status == TokenStatus.REVOKED
    assert "operator" in token.last_error
    # Confirmed dead: nothing is kept.
    assert (token.access_token, token.refresh_token, token.extra) == ("", "", {})
    with pytest.raises(AuthorizationRequired):
        get_access_token("acme")
    event = OAuth2Event.objects.get(kind=EventKind.REVOKED)
    assert (event.client, event.actor, event.outcome) == (revocable, operator, "ok")
    assert_no_secret(event.detail)
    assert sent[0]["client"] == revocable and sent[0]["result"] == result


def test_revoke_drops_this_processs_cached_token(revocable, provider, settings):
    settings.OAUTH2_INTEGRATOR = {**settings.OAUTH2_INTEGRATOR, "TOKEN_CACHE_TTL": 60}
    assert get_access_token("acme") == STORED_ACCESS_TOKEN  # cached now
    served_meanwhile: list[object] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        # While the provider is being told, this process no longer serves it.
        try:
            served_meanwhile.append(get_access_token("acme"))
        except AuthorizationRequired as exc:
            served_meanwhile.append(type(exc))
        return 200, {}, ""

    provider.add_callback(responses.POST, REVOKE_URL, callback=answer)
    revoke("acme")
    assert served_meanwhile == [AuthorizationRequired, AuthorizationRequired]
    with pytest.raises(AuthorizationRequired):
        get_access_token("acme")


def test_client_secret_post_sends_the_credentials_in_the_body(
    make_client, make_token, provider
):
    client = make_client(
        revocation_endpoint=REVOKE_URL, token_auth_method="client_secret_post"
    )
    make_token(client)
    provider.post(REVOKE_URL, status=200)
    assert revoke("acme").confirmed
    form = sent_form(provider.calls[0])
    assert form["client_id"] == "acme-client-id"
    assert form["client_secret"] == CLIENT_SECRET
    assert "Authorization" not in provider.calls[0].request.headers


def test_the_profiles_revocation_endpoint_is_used(make_client, make_token, provider):
    client = make_client(provider="google", token_endpoint="", revocation_endpoint="")
    make_token(client)
    provider.post("https://oauth2.googleapis.com/revoke", status=200)
    assert revoke("acme").confirmed
    assert basic_auth(provider.calls[0]) == ("acme-client-id", CLIENT_SECRET)


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 503, "headers": {"Retry-After": "60"}},
        {"status": 400, "json": {"error": "unsupported_token_type"}},
        {"body": requests.ConnectionError("refused")},
    ],
    ids=["503", "unsupported_token_type", "connection_error"],
)
def test_a_provider_failure_still_revokes_locally_and_says_so(
    revocable, provider, answer
):
    provider.post(REVOKE_URL, **answer)
    result = revoke("acme")

    assert result.failed and not result.confirmed
    assert "Press Disconnect again" in result.detail
    assert_no_secret(result.detail)
    token = OAuth2Token.objects.get()
    assert token.status == TokenStatus.REVOKED
    # Kept, so that Disconnect can retry at the provider.
    assert token.refresh_token == STORED_REFRESH_TOKEN
    with pytest.raises(AuthorizationRequired):
        get_access_token("acme")
    event = OAuth2Event.objects.get(kind=EventKind.REVOKED)
    assert event.outcome == "failed"
    assert_no_secret(event.detail)

    # Pressing it again once the provider is back confirms and forgets the tokens.
    provider.replace(responses.POST, REVOKE_URL, status=200)
    assert revoke("acme").confirmed
    assert OAuth2Token.objects.get().refresh_token == ""


def test_a_provider_error_never_echoes_the_token(revocable, provider):
    provider.post(
        REVOKE_URL,
        status=400,
        json={"error": f"bad {STORED_REFRESH_TOKEN}", "error_description": "x"},
    )
    result = revoke("acme")
    assert result.failed
    assert_no_secret(result.detail)


def test_without_a_revocation_endpoint_the_token_is_revoked_locally(
    oauth_client, make_token, provider
):
    make_token(oauth_client)
    result = revoke("acme")
    assert result.provider == "no_endpoint"
    assert "stay valid there until they expire" in result.detail
    assert len(provider.calls) == 0
    assert OAuth2Token.objects.get().status == TokenStatus.REVOKED
    with pytest.raises(AuthorizationRequired):
        get_access_token("acme")


def test_nothing_to_revoke(oauth_client):
    result = revoke("acme")
    assert result == RevokeResult("acme", "", "nothing_to_revoke", result.detail)
    assert "no token" in result.detail


def test_an_unknown_client_is_a_configuration_error(db):
    with pytest.raises(ConfigurationError, match="no OAuth2 client named 'nope'"):
        revoke("nope")


def test_undecryptable_tokens_are_revoked_locally_without_a_call(revocable, provider):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE oauth2_integrator_oauth2token SET refresh_token = %s",
            ["gAAAAAnot-a-fernet-token-of-any-configured-key"],
        )
    result = revoke("acme")
    assert result.failed
    assert "cannot be decrypted" in result.detail
    assert len(provider.calls) == 0
    assert (
        OAuth2Token.objects.values_list("status", flat=True).get()
        == TokenStatus.REVOKED
    )


def test_revoke_then_reauthorize_brings_the_client_back(revocable, provider):
    provider.post(REVOKE_URL, status=200)
    revoke("acme")
    store_token_set(
        revocable,
        flow.TokenSet(access_token="fresh-access-0001", refresh_token="fresh-rt-0001"),
    )
    assert get_access_token("acme") == "fresh-access-0001"
    # The wiped tokens are not sent again on re-authorization.
    assert len(provider.calls) == 2


# --- re-authorization revokes the refresh token it replaces ---------------------------


def test_reauthorization_revokes_the_replaced_refresh_token(
    revocable, provider, operator
):
    provider.post(REVOKE_URL, status=200)
    store_token_set(
        revocable,
        flow.TokenSet(access_token="new-access-0001", refresh_token="new-refresh-0001"),
        actor=operator,
    )
    assert [sent_form(c) for c in provider.calls] == [
        {"token": STORED_REFRESH_TOKEN, "token_type_hint": "refresh_token"}
    ]
    assert OAuth2Token.objects.get().refresh_token == "new-refresh-0001"
    event = OAuth2Event.objects.get(kind=EventKind.REVOKED)
    assert event.actor == operator and event.outcome == "ok"


def test_reauthorization_keeping_the_refresh_token_revokes_nothing(revocable, provider):
    store_token_set(revocable, flow.TokenSet(access_token="new-access-0001"))
    assert len(provider.calls) == 0
    assert OAuth2Token.objects.get().refresh_token == STORED_REFRESH_TOKEN


def test_a_failed_revocation_never_fails_the_login(revocable, provider):
    provider.post(REVOKE_URL, status=500)
    token = store_token_set(
        revocable,
        flow.TokenSet(access_token="new-access-0001", refresh_token="new-refresh-0001"),
    )
    assert token.status == TokenStatus.ACTIVE
    assert get_access_token("acme") == "new-access-0001"
    event = OAuth2Event.objects.get(kind=EventKind.REVOKED)
    assert event.outcome == "failed" and "HTTP 500" in event.detail


def test_google_is_not_told_because_it_would_end_the_new_grant(
    make_client, make_token, provider
):
    client = make_client(provider="google", token_endpoint="", revocation_endpoint="")
    make_token(client)
    store_token_set(
        client,
        flow.TokenSet(access_token="new-access-0001", refresh_token="new-refresh-0001"),
    )
    assert len(provider.calls) == 0


# --- deleting a client ------------------------------------------------------------------


def test_deleting_a_client_revokes_its_tokens_after_the_commit(
    revocable, provider, django_capture_on_commit_callbacks
):
    provider.post(REVOKE_URL, status=200)
    with django_capture_on_commit_callbacks(execute=True):
        revocable.delete()
        assert len(provider.calls) == 0  # not inside the delete's transaction
    assert [sent_form(c)["token_type_hint"] for c in provider.calls] == [
        "refresh_token",
        "access_token",
    ]
    assert not OAuth2Client.objects.exists()


def test_a_provider_failure_never_blocks_a_delete(
    revocable, provider, django_capture_on_commit_callbacks, caplog
):
    provider.post(REVOKE_URL, body=requests.ConnectionError("down"))
    with django_capture_on_commit_callbacks(execute=True):
        OAuth2Client.objects.filter(pk=revocable.pk).delete()
    assert not OAuth2Client.objects.exists()
    assert "could not all be revoked" in caplog.text


def test_admin_delete_revokes(
    revocable, provider, operator, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import Permission

    operator.user_permissions.add(
        Permission.objects.get(codename="delete_oauth2client")
    )
    browser = Client()
    browser.force_login(operator)
    provider.post(REVOKE_URL, status=200)
    url = reverse("admin:oauth2_integrator_oauth2client_delete", args=[revocable.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert len(provider.calls) == 2


# --- the admin: Disconnect button and action ----------------------------------------


def change_url(client: OAuth2Client) -> str:
    return reverse("admin:oauth2_integrator_oauth2client_change", args=[client.pk])


def disconnect_url(client: OAuth2Client) -> str:
    return reverse("admin:oauth2_integrator_oauth2client_disconnect", args=[client.pk])


def test_the_change_page_has_a_disconnect_button_that_posts_with_csrf(
    revocable, operator_client
):
    page = operator_client.get(change_url(revocable)).content.decode()
    assert 'id="oauth2-disconnect-button"' in page
    form = page[page.index('class="oauth2-disconnect-form"') - 200 :]
    assert f'action="{disconnect_url(revocable)}"' in form[:400]
    assert "csrfmiddlewaretoken" in form[:1200]
    assert "Recent events (newest first)" in page


def test_disconnect_button(revocable, provider, operator, operator_client):
    provider.post(REVOKE_URL, status=200)
    response = operator_client.post(disconnect_url(revocable), follow=True)
    assert response.redirect_chain[-1][0] == change_url(revocable)
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("confirmed the revocation" in m for m in shown)
    assert OAuth2Token.objects.get().status == TokenStatus.REVOKED
    entry = LogEntry.objects.get()
    assert entry.user == operator and "Disconnected" in entry.change_message
    assert OAuth2Event.objects.get(kind=EventKind.REVOKED).actor == operator
    page = response.content.decode()
    # Re-authorize stays; Disconnect goes once nothing is left to revoke.
    assert 'id="oauth2-authorize-button"' in page
    assert 'id="oauth2-disconnect-button"' not in page


def test_disconnect_tells_the_operator_when_the_provider_failed(
    revocable, provider, operator_client
):
    provider.post(REVOKE_URL, status=503)
    response = operator_client.post(disconnect_url(revocable), follow=True)
    errors = [
        str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "error"
    ]
    assert errors and "did not confirm" in errors[0]
    assert_no_secret(response.content.decode())
    # The button stays, to retry.
    assert 'id="oauth2-disconnect-button"' in response.content.decode()


def test_disconnect_is_post_only_and_needs_the_authorize_permission(
    revocable, provider, operator, django_user_model
):
    browser = Client()
    browser.force_login(operator)
    assert browser.get(disconnect_url(revocable)).status_code == 405
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(
        Permission.objects.get(codename="view_oauth2client"),
        Permission.objects.get(codename="change_oauth2client"),
    )
    browser.force_login(viewer)
    assert browser.post(disconnect_url(revocable)).status_code == 403
    assert 'id="oauth2-disconnect-button"' not in (
        browser.get(change_url(revocable)).content.decode()
    )
    assert OAuth2Token.objects.get().status == TokenStatus.ACTIVE
    assert len(provider.calls) == 0


def test_disconnect_of_a_client_deleted_meanwhile_is_a_message(operator_client, db):
    url = reverse("admin:oauth2_integrator_oauth2client_disconnect", args=[999])
    response = operator_client.post(url, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == ["That OAuth2 client does not exist any more."]


def test_disconnect_needs_the_csrf_token(revocable, provider, operator):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)
    assert browser.post(disconnect_url(revocable)).status_code == 403
    assert OAuth2Token.objects.get().status == TokenStatus.ACTIVE


def test_disconnect_action(make_client, make_token, provider, operator_client):
    first = make_client(name="first", revocation_endpoint=REVOKE_URL)
    second = make_client(name="second")
    make_token(first)
    make_token(second)
    provider.post(REVOKE_URL, status=200)
    response = operator_client.post(
        reverse("admin:oauth2_integrator_oauth2client_changelist"),
        {"action": "disconnect", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert set(OAuth2Token.objects.values_list("status", flat=True)) == {"revoked"}
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("confirmed" in m for m in shown)
    assert any("no revocation endpoint" in m for m in shown)
    assert LogEntry.objects.count() == 2
    assert OAuth2Event.objects.filter(kind=EventKind.REVOKED).count() == 2


def test_disconnect_never_answers_500(revocable, operator_client, monkeypatch):
    from oauth2_integrator import admin as integrator_admin

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(integrator_admin, "revoke", broken)
    response = operator_client.post(disconnect_url(revocable), follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("unexpected RuntimeError" in m for m in shown)


# --- a refresh racing a revocation (PostgreSQL) ---------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_revoke_waits_for_a_refresh_in_flight_and_revokes_its_result(
    make_client, make_token, provider
):
    if connection.vendor != "postgresql":
        pytest.skip("races two real connections on PostgreSQL")
    from oauth2_integrator import refresh_access_token

    from .conftest import TOKEN_URL

    client = make_client(revocation_endpoint=REVOKE_URL)
    make_token(client)
    provider.post(REVOKE_URL, status=200)
    entered, release = threading.Event(), threading.Event()

    def rotating(request: Any) -> tuple[int, dict[str, str], str]:
        entered.set()
        release.wait(10)
        body = '{"access_token": "rotated-access-0002", "refresh_token": "rotated-refresh-0002", "expires_in": 3600}'
        return 200, {"Content-Type": "application/json"}, body

    provider.add_callback("POST", TOKEN_URL, callback=rotating)
    results: list[Any] = []

    def refresher() -> None:
        try:
            results.append(refresh_access_token("acme"))
        finally:
            connection.close()

    thread = threading.Thread(target=refresher)
    thread.start()
    assert entered.wait(10)  # the refresh holds its claim, waiting for the provider
    threading.Timer(0.3, release.set).start()
    result = revoke("acme")
    thread.join()
    assert results == ["rotated-access-0002"]
    assert result.confirmed
    # The refresh token sent is the one the refresh stored, not the spent one.
    revocations = [c for c in provider.calls if c.request.url == REVOKE_URL]
    assert sent_form(revocations[0])["token"] == "rotated-refresh-0002"
    assert OAuth2Token.objects.get().status == TokenStatus.REVOKED


def test_a_disconnected_client_says_so_in_its_status(oauth_client, make_token):
    from oauth2_integrator import status
    from oauth2_integrator.models import TokenStatus

    token = make_token(oauth_client)
    assert status.describe(oauth_client).startswith("Connected")
    token.status = TokenStatus.REVOKED
    token.save()
    assert status.describe(oauth_client) == "Disconnected"
    token.status = TokenStatus.REAUTHORIZATION_REQUIRED
    token.save()
    assert status.describe(oauth_client) == "Needs re-authorization"
