"""The callback (RFC 6749 §4.1.2): every way it can fail, and the one way it succeeds.

Each failure must give a clear page with HTTP 400 (502 when the token endpoint is
only temporarily failing; never 500), log a warning without secrets, and leave an
existing working token exactly as it was.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from oauth2_integrator.authorization import SESSION_KEY
from oauth2_integrator.models import AuthorizationRequest, OAuth2Token
from oauth2_integrator.views import GENERIC_CALLBACK_PROBLEM

from .conftest import CLIENT_SECRET, TOKEN_URL, token_fields

CALLBACK = "/oauth2/acme/callback/"
CODE = "authz-code-Q1w2E3r4T5y6U7i8"
NEW_TOKENS = {
    "access_token": "new-access-token-Z9x8C7v6B5n4",
    "refresh_token": "new-refresh-token-M1n2B3v4C5x6",
    "token_type": "Bearer",
    "expires_in": 3600,
}


@pytest.fixture
def working_token(oauth_client, make_token) -> OAuth2Token:
    return make_token(oauth_client)


@pytest.fixture
def login(operator_client, start_login, working_token) -> dict[str, Any]:
    """A login started by the operator, and everything a failure must not reveal."""
    query = start_login(operator_client)
    pending = AuthorizationRequest.objects.get()
    return {
        "state": query["state"],
        "secrets": [
            query["state"],
            CODE,
            pending.code_verifier,
            CLIENT_SECRET,
            working_token.access_token,
            working_token.refresh_token,
            *NEW_TOKENS.values(),
        ],
        "before": token_fields(working_token),
        "token": working_token,
    }


def assert_failed_cleanly(
    response: Any,
    login: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    *,
    status: int = 400,
    says: str,
) -> str:
    page = response.content.decode()
    assert response.status_code == status, page
    assert "Authorization failed" in page
    assert says in page
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "oauth2_integrator"
    ]
    assert warnings, "a failed callback must log a warning"
    for secret in login["secrets"]:
        if isinstance(secret, str) and len(secret) > 8:
            assert secret not in caplog.text
            assert secret not in page
    assert token_fields(login["token"]) == login["before"]
    return page


def callback(browser: Client, **params: str) -> Any:
    return browser.get(CALLBACK, params)


# --- the state ------------------------------------------------------------------


def test_missing_state(operator_client, login, caplog):
    response = callback(operator_client, code=CODE)
    assert_failed_cleanly(response, login, caplog, says="has no state parameter")
    assert AuthorizationRequest.objects.get().used_at is None


def test_unknown_state(operator_client, login, caplog):
    response = callback(operator_client, state="forged-" + "x" * 40, code=CODE)
    assert_failed_cleanly(response, login, caplog, says="unknown state")


def test_replayed_state(operator_client, login, caplog, token_endpoint):
    token_endpoint.post(TOKEN_URL, json=NEW_TOKENS)
    first = callback(operator_client, state=login["state"], code=CODE)
    assert first.status_code == 302
    login["before"] = token_fields(login["token"])
    assert login["before"]["access_token"] == NEW_TOKENS["access_token"]

    replay = callback(operator_client, state=login["state"], code=CODE)
    assert_failed_cleanly(replay, login, caplog, says="already used")
    assert len(token_endpoint.calls) == 1


def test_expired_state(operator_client, login, caplog, token_endpoint):
    AuthorizationRequest.objects.update(
        created_at=timezone.now() - datetime.timedelta(seconds=601)
    )
    response = callback(operator_client, state=login["state"], code=CODE)
    assert_failed_cleanly(response, login, caplog, says="has expired")
    assert not token_endpoint.calls


def test_expiry_follows_the_setting(operator_client, login, caplog, settings):
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "AUTHORIZATION_REQUEST_TTL": 60,
    }
    AuthorizationRequest.objects.update(
        created_at=timezone.now() - datetime.timedelta(seconds=61)
    )
    response = callback(operator_client, state=login["state"], code=CODE)
    assert_failed_cleanly(response, login, caplog, says="has expired")


def test_state_of_another_client(
    make_client, operator_client, start_login, login, caplog, token_endpoint
):
    make_client(name="other", display_name="Other API", client_id="other-id")
    other_state = start_login(operator_client, "other")["state"]
    login["secrets"].append(other_state)
    response = callback(operator_client, state=other_state, code=CODE)
    assert_failed_cleanly(response, login, caplog, says="belongs to another client")
    assert not token_endpoint.calls


def test_state_of_another_user(operator_client, login, caplog, token_endpoint):
    intruder = User.objects.create_user("intruder", password="x", is_staff=True)
    intruder.user_permissions.set(Permission.objects.filter(codename="authorize"))
    browser = Client()
    browser.force_login(intruder)
    response = callback(browser, state=login["state"], code=CODE)
    assert_failed_cleanly(response, login, caplog, says="another user")
    assert not token_endpoint.calls


def test_state_of_an_anonymous_visitor(login, caplog, token_endpoint):
    response = callback(Client(), state=login["state"], code=CODE)
    assert_failed_cleanly(response, login, caplog, says=GENERIC_CALLBACK_PROBLEM)
    assert "another user" in caplog.text  # the operator reads why in the log
    assert not token_endpoint.calls


def test_state_of_another_user_in_the_same_browser_session(
    operator_client, login, caplog, token_endpoint
):
    """Only the user check stops this one: the session binding matches.

    Django keeps a session's data when the same user signs in again and flushes it
    for another user, so the binding is copied into the other user's session, as
    a shared browser profile or a session store that outlives a logout could.
    """
    intruder = User.objects.create_user("intruder", password="x", is_staff=True)
    intruder.user_permissions.set(Permission.objects.filter(codename="authorize"))
    browser = Client()
    browser.force_login(intruder)
    session = browser.session
    session[SESSION_KEY] = operator_client.session[SESSION_KEY]
    session.save()

    response = callback(browser, state=login["state"], code=CODE)
    assert_failed_cleanly(response, login, caplog, says="another user")
    assert not token_endpoint.calls
    assert AuthorizationRequest.objects.get().used_at is None


def test_anonymous_visitor_with_the_same_session_binding(
    operator_client, login, caplog, token_endpoint
):
    browser = Client()
    session = browser.session
    session[SESSION_KEY] = operator_client.session[SESSION_KEY]
    session.save()

    response = callback(browser, state=login["state"], code=CODE)
    assert_failed_cleanly(response, login, caplog, says=GENERIC_CALLBACK_PROBLEM)
    assert "another user" in caplog.text
    assert not token_endpoint.calls


def test_state_from_another_session_of_the_same_user(
    operator, operator_client, login, caplog, token_endpoint
):
    other_browser = Client()
    other_browser.force_login(operator)
    response = callback(other_browser, state=login["state"], code=CODE)
    assert_failed_cleanly(response, login, caplog, says="another browser session")
    assert not token_endpoint.calls

    # The rejected attempt did not burn the login: its own browser can finish it.
    token_endpoint.post(TOKEN_URL, json=NEW_TOKENS)
    done = callback(operator_client, state=login["state"], code=CODE)
    assert done.status_code == 302


# --- the provider's answer ------------------------------------------------------


def test_access_denied_with_description(operator_client, login, caplog, token_endpoint):
    response = callback(
        operator_client,
        state=login["state"],
        error="access_denied",
        error_description="The resource owner denied the request.",
    )
    page = assert_failed_cleanly(
        response, login, caplog, says="was denied at the provider"
    )
    assert "The resource owner denied the request." in page
    assert not token_endpoint.calls
    assert AuthorizationRequest.objects.get().used_at is not None


def test_other_provider_error(operator_client, login, caplog, token_endpoint):
    response = callback(
        operator_client,
        state=login["state"],
        error="invalid_scope",
        error_description="Scope <b>write</b> unknown",
    )
    page = assert_failed_cleanly(response, login, caplog, says="invalid_scope")
    assert "refused the authorization" in page
    assert "<b>write</b>" not in page  # escaped, not markup
    assert "&lt;b&gt;write&lt;/b&gt;" in page
    assert not token_endpoint.calls


def test_issuer_mismatch(oauth_client, operator_client, login, caplog, token_endpoint):
    oauth_client.issuer = "https://auth.example.test"
    oauth_client.save()
    response = callback(
        operator_client,
        state=login["state"],
        code=CODE,
        iss="https://evil.example.test",
    )
    page = assert_failed_cleanly(response, login, caplog, says="RFC 9207")
    assert "https://evil.example.test" in page
    assert not token_endpoint.calls


def test_issuer_match_completes(oauth_client, operator_client, login, token_endpoint):
    oauth_client.issuer = "https://auth.example.test"
    oauth_client.save()
    token_endpoint.post(TOKEN_URL, json=NEW_TOKENS)
    response = callback(
        operator_client,
        state=login["state"],
        code=CODE,
        iss="https://auth.example.test",
    )
    assert response.status_code == 302
    assert OAuth2Token.objects.get().access_token == NEW_TOKENS["access_token"]


def test_missing_code(operator_client, login, caplog, token_endpoint):
    response = callback(operator_client, state=login["state"])
    assert_failed_cleanly(response, login, caplog, says="neither a code nor an error")
    assert not token_endpoint.calls


# --- the token endpoint ---------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "status", "says"),
    [
        (
            {
                "status": 400,
                "json": {
                    "error": "invalid_grant",
                    "error_description": "Code expired",
                },
            },
            400,
            "invalid_grant",
        ),
        ({"status": 401, "json": {"error": "invalid_client"}}, 400, "invalid_client"),
        ({"status": 500, "body": "Internal Server Error"}, 502, "HTTP 500"),
        ({"status": 503, "body": "<html>down</html>"}, 502, "HTTP 503"),
        ({"status": 429, "json": {"message": "slow down"}}, 502, "HTTP 429"),
        ({"body": requests.Timeout("read timeout")}, 502, "did not answer in time"),
        ({"body": requests.ConnectionError("refused")}, 502, "Could not reach"),
        (
            {
                "status": 200,
                "body": "<html>Sign in</html>",
                "content_type": "text/html",
            },
            400,
            "an HTML page",
        ),
        (
            {"status": 200, "body": "all good", "content_type": "text/plain"},
            400,
            "not a token response",
        ),
        (
            {"status": 200, "json": {"token_type": "Bearer", "expires_in": 60}},
            400,
            "without an access_token",
        ),
        (
            {
                "status": 200,
                "json": {
                    "error": "bad_verification_code",
                    "error_description": "The code passed is incorrect or expired.",
                },
            },
            400,
            "bad_verification_code",
        ),
    ],
    ids=[
        "invalid_grant",
        "invalid_client",
        "500",
        "503",
        "429",
        "timeout",
        "connection_error",
        "html",
        "text",
        "no_access_token",
        "github_200_error",
    ],
)
def test_token_endpoint_failure(
    operator_client, login, caplog, token_endpoint, answer, status, says
):
    token_endpoint.post(TOKEN_URL, **answer)
    response = callback(operator_client, state=login["state"], code=CODE)
    page = assert_failed_cleanly(response, login, caplog, status=status, says=says)
    assert page.count("Nothing was changed") == 1
    assert len(token_endpoint.calls) == 1
    # The login is spent: the code cannot be tried twice.
    assert AuthorizationRequest.objects.get().used_at is not None


def test_failure_without_an_earlier_token_stores_nothing(
    oauth_client, operator_client, start_login, token_endpoint
):
    state = start_login(operator_client)["state"]
    token_endpoint.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    response = callback(operator_client, state=state, code=CODE)
    assert response.status_code == 400
    assert not OAuth2Token.objects.exists()


# --- success --------------------------------------------------------------------


def test_success_returns_to_the_client_admin_page_with_a_message(
    oauth_client, operator_client, login, token_endpoint
):
    token_endpoint.post(TOKEN_URL, json={**NEW_TOKENS, "scope": "read"})
    response = callback(operator_client, state=login["state"], code=CODE)
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:oauth2_integrator_oauth2client_change", args=[oauth_client.pk]
    )
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == ["Acme API (acme) is connected."]

    pending = AuthorizationRequest.objects.get()
    assert pending.used_at is not None
    token = OAuth2Token.objects.get()
    assert token.pk == login["token"].pk  # updated in place, not duplicated
    assert token.access_token == NEW_TOKENS["access_token"]
    assert token.refresh_token == NEW_TOKENS["refresh_token"]
    assert token.scope == "read"
    assert token.status == "active"
    assert token.refreshed_at is None
    assert token.obtained_at > login["before"]["obtained_at"]

    sent = token_endpoint.calls[0].request
    assert f"code={CODE}" in sent.body
    assert "code_verifier=" + pending.code_verifier in sent.body


def test_success_returns_to_next(
    oauth_client, operator_client, start_login, token_endpoint
):
    state = start_login(operator_client, next="/needs-token/acme/?tab=2")["state"]
    token_endpoint.post(TOKEN_URL, json=NEW_TOKENS)
    response = callback(operator_client, state=state, code=CODE)
    assert response.status_code == 302
    assert response["Location"] == "/needs-token/acme/?tab=2"
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Acme API (acme) is connected."
    ]


def test_reauthorization_without_new_refresh_token_keeps_the_old_one(
    operator_client, login, token_endpoint
):
    token_endpoint.post(
        TOKEN_URL, json={"access_token": "only-access-token-0000", "expires_in": 60}
    )
    assert callback(operator_client, state=login["state"], code=CODE).status_code == 302
    token = OAuth2Token.objects.get()
    assert token.access_token == "only-access-token-0000"
    assert token.refresh_token == login["before"]["refresh_token"]


def test_never_expiring_token_from_the_provider(operator_client, login, token_endpoint):
    """A lifetime past the year 9999 cannot be stored; it must not fail the login."""
    token_endpoint.post(TOKEN_URL, json={**NEW_TOKENS, "expires_in": 10**12})
    assert callback(operator_client, state=login["state"], code=CODE).status_code == 302
    assert OAuth2Token.objects.get().expires_at is None


def test_client_disabled_while_the_login_was_in_progress(
    oauth_client, operator_client, login, caplog, token_endpoint
):
    oauth_client.enabled = False
    oauth_client.save()
    response = callback(operator_client, state=login["state"], code=CODE)
    assert_failed_cleanly(response, login, caplog, says="was disabled while this login")
    assert not token_endpoint.calls


def test_a_site_misconfiguration_is_a_clear_page_not_a_crash(
    operator_client, login, caplog, token_endpoint, settings
):
    """The encryption key that protects the pending login was removed from settings."""
    from cryptography.fernet import Fernet

    keys = settings.OAUTH2_INTEGRATOR
    settings.OAUTH2_INTEGRATOR = {
        **keys,
        "ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
    }
    response = callback(operator_client, state=login["state"], code=CODE)
    settings.OAUTH2_INTEGRATOR = keys
    assert_failed_cleanly(
        response, login, caplog, status=503, says="cannot be decrypted with any key"
    )
    assert not token_endpoint.calls


def test_an_unknown_provider_profile_is_a_clear_page_when_starting(
    oauth_client, operator_client
):
    oauth_client.provider = "retired-profile"
    oauth_client.save()
    response = operator_client.post("/oauth2/acme/login/")
    assert response.status_code == 503
    assert (
        "Unknown provider profile &#x27;retired-profile&#x27;"
        in response.content.decode()
    )


# --- who reads the details (item 6) --------------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "user_with_authorize", "staff_only"])
def test_visitors_get_a_generic_page_without_client_names(
    make_client, login, caplog, token_endpoint, who
):
    make_client(name="payroll", display_name="Payroll Secret Project")
    browser = Client()
    if who != "anonymous":
        user = User.objects.create_user(who, password="x", is_staff=who == "staff_only")
        if who == "user_with_authorize":
            user.user_permissions.set(Permission.objects.filter(codename="authorize"))
        browser.force_login(user)
    for target in (CALLBACK, "/oauth2/payroll/callback/"):
        response = browser.get(target, {"state": login["state"], "code": CODE})
        page = response.content.decode()
        assert response.status_code == 400
        assert GENERIC_CALLBACK_PROBLEM in page
        for internal in ("acme", "Acme API", "payroll", "Payroll", "/admin/"):
            assert internal not in page
    assert not token_endpoint.calls
    assert token_fields(login["token"]) == login["before"]


def test_operator_page_names_the_client_and_links_back(operator_client, login):
    response = callback(operator_client, state="unknown-" + "y" * 40, code=CODE)
    page = response.content.decode()
    assert "unknown state" in page
    assert "Back to Acme API (acme)" in page
    assert "/admin/oauth2_integrator/oauth2client/" in page


def test_failed_callback_leaves_django_s_request_log_alone(
    operator_client, login, caplog
):
    """Django's "Bad Request" record carries the request, whose query holds the
    state and the code; the app's own warning says what failed instead."""
    with caplog.at_level(logging.WARNING, logger="django.request"):
        callback(operator_client, state=login["state"], error="access_denied")
    assert not [r for r in caplog.records if r.name == "django.request"]


# --- the redirect URI sent at the exchange (RFC 6749 §4.1.3) -------------------------


def test_exchange_sends_the_stored_redirect_uri_after_the_override_changed(
    oauth_client, operator_client, login, token_endpoint
):
    oauth_client.redirect_uri = "https://changed.example.test/cb/acme"
    oauth_client.save()
    token_endpoint.post(TOKEN_URL, json=NEW_TOKENS)
    assert callback(operator_client, state=login["state"], code=CODE).status_code == 302
    sent = dict(parse_qsl(token_endpoint.calls[0].request.body))
    assert sent["redirect_uri"] == "http://testserver/oauth2/acme/callback/"


def test_exchange_sends_the_stored_redirect_uri_when_the_host_differs(
    oauth_client, operator_client, token_endpoint
):
    started = operator_client.post("/oauth2/acme/login/", HTTP_HOST="localhost")
    state = dict(parse_qsl(urlsplit(started["Location"]).query))["state"]
    token_endpoint.post(TOKEN_URL, json=NEW_TOKENS)
    response = operator_client.get(CALLBACK, {"state": state, "code": CODE})
    assert response.status_code == 302
    sent = dict(parse_qsl(token_endpoint.calls[0].request.body))
    assert sent["redirect_uri"] == "http://localhost/oauth2/acme/callback/"


# --- a client secret no configured key opens (item 7) --------------------------------


def test_undecryptable_client_secret_at_the_callback_is_a_clear_503(
    oauth_client, operator_client, login, caplog, token_endpoint, settings
):
    from cryptography.fernet import Fernet
    from django.test import override_settings

    gone = {
        **settings.OAUTH2_INTEGRATOR,
        "ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
    }
    with override_settings(OAUTH2_INTEGRATOR=gone):
        oauth_client.save(update_fields=["client_secret"])

    response = callback(operator_client, state=login["state"], code=CODE)
    page = assert_failed_cleanly(
        response, login, caplog, status=503, says="cannot be decrypted"
    )
    assert "Nothing was changed" in page
    assert not token_endpoint.calls
    anonymous = callback(Client(), state=login["state"], code=CODE)
    assert anonymous.status_code == 400
    assert "decrypted" not in anonymous.content.decode()


# --- RFC 9207: iss ----------------------------------------------------------------------

ISSUER = "https://auth.example.test"


@pytest.fixture
def iss_profile() -> Any:
    """A test-only provider profile that always sends ``iss``."""
    from oauth2_integrator.providers import registry
    from oauth2_integrator.providers.base import ProviderProfile

    @registry.register
    class SendsIss(ProviderProfile):
        key = "test-sends-iss"
        name = "Sends iss (tests)"
        sends_iss = True

    yield SendsIss
    registry._profiles.pop(SendsIss.key, None)


@pytest.fixture
def with_issuer(oauth_client) -> Any:
    oauth_client.issuer = ISSUER
    oauth_client.save()
    return oauth_client


def test_missing_iss_is_refused_when_the_provider_always_sends_it(
    with_issuer, iss_profile, operator_client, login, caplog, token_endpoint
):
    with_issuer.provider = iss_profile.key
    with_issuer.save()
    response = callback(operator_client, state=login["state"], code=CODE)
    assert_failed_cleanly(response, login, caplog, says="carries no issuer (iss)")
    assert not token_endpoint.calls


def test_matching_iss_completes_with_a_profile_that_sends_it(
    with_issuer, iss_profile, operator_client, login, token_endpoint
):
    with_issuer.provider = iss_profile.key
    with_issuer.save()
    token_endpoint.post(TOKEN_URL, json=NEW_TOKENS)
    response = callback(operator_client, state=login["state"], code=CODE, iss=ISSUER)
    assert response.status_code == 302


def test_missing_iss_is_accepted_when_the_profile_does_not_promise_it(
    with_issuer, operator_client, login, token_endpoint
):
    token_endpoint.post(TOKEN_URL, json=NEW_TOKENS)
    response = callback(operator_client, state=login["state"], code=CODE)
    assert response.status_code == 302


def test_missing_iss_is_accepted_without_a_registered_issuer(
    oauth_client, iss_profile, operator_client, login, token_endpoint
):
    oauth_client.provider = iss_profile.key
    oauth_client.save()
    token_endpoint.post(TOKEN_URL, json=NEW_TOKENS)
    response = callback(operator_client, state=login["state"], code=CODE)
    assert response.status_code == 302


@pytest.mark.parametrize(
    ("profile", "iss"),
    [("generic", "https://evil.example.test"), ("sends", None)],
    ids=["mismatching_iss", "missing_iss_from_a_profile_that_sends_it"],
)
def test_error_answer_from_an_unexpected_issuer_is_not_echoed(
    with_issuer,
    iss_profile,
    operator_client,
    login,
    caplog,
    token_endpoint,
    profile,
    iss,
):
    if profile == "sends":
        with_issuer.provider = iss_profile.key
        with_issuer.save()
    params = {
        "state": login["state"],
        "error": "access_denied",
        "error_description": "Call +1-555-0100 and read out your password",
    }
    if iss is not None:
        params["iss"] = iss
    response = callback(operator_client, **params)
    page = assert_failed_cleanly(response, login, caplog, says="unexpected issuer")
    assert "555-0100" not in page
    assert "555-0100" not in caplog.text
    assert "was denied" not in page
    assert not token_endpoint.calls


def test_error_answer_from_the_right_issuer_is_shown(
    with_issuer, iss_profile, operator_client, login, caplog
):
    with_issuer.provider = iss_profile.key
    with_issuer.save()
    response = callback(
        operator_client,
        state=login["state"],
        error="access_denied",
        error_description="The user said no.",
        iss=ISSUER,
    )
    page = assert_failed_cleanly(response, login, caplog, says="was denied")
    assert "The user said no." in page


# --- repeated parameters (RFC 6749 §3.1) ---------------------------------------------


@pytest.mark.parametrize("key", ["state", "code", "iss", "error"])
def test_repeated_parameters_are_refused(
    operator_client, login, caplog, token_endpoint, key
):
    params = {"state": [login["state"]], "code": [CODE]}
    params[key] = [*params.get(key, ["x-one"]), "x-two-" + "z" * 10]
    response = operator_client.get(CALLBACK, params)
    assert_failed_cleanly(response, login, caplog, says="repeats the parameter")
    assert not token_endpoint.calls
    assert AuthorizationRequest.objects.get().used_at is None
