"""The opt-in middleware: an ``AuthorizationRequired`` escaping a host view becomes
one click for an operator, a JSON answer for API callers, a 503 page for others."""

from __future__ import annotations

import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.utils import timezone

from oauth2_integrator.exceptions import CallbackError
from oauth2_integrator.middleware import GENERIC_DETAIL
from oauth2_integrator.models import AuthorizationRequest, OAuth2Token

from .conftest import TOKEN_URL, token_fields

PAGE = "/needs-token/acme/?tab=logs&q=a%20b"


def test_connected_client_serves_the_page(oauth_client, make_token, operator_client):
    make_token(oauth_client)
    response = operator_client.get(PAGE)
    assert response.status_code == 200
    assert response.content == b"token length 34"


def test_operator_is_sent_to_the_login_page_and_back(oauth_client, operator_client):
    response = operator_client.get(PAGE)
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == "/oauth2/acme/login/"
    assert parse_qs(location.query) == {"next": [PAGE]}

    # The confirmation page carries the return URL into the login form.
    confirm = operator_client.get(response["Location"])
    assert confirm.status_code == 200
    assert 'value="/needs-token/acme/?tab=logs&amp;q=a%20b"' in confirm.content.decode()


def test_operator_gets_the_login_link_after_invalid_grant(
    oauth_client, make_token, operator_client
):
    make_token(oauth_client, status="reauthorization_required")
    response = operator_client.get("/needs-token/acme/")
    assert response.status_code == 302
    assert response["Location"] == "/oauth2/acme/login/?next=%2Fneeds-token%2Facme%2F"


def test_json_request_gets_401_with_the_login_url(oauth_client):
    response = Client().get(PAGE, HTTP_ACCEPT="application/json")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["authorization_required"] == "acme"
    assert body["login_url"] == (
        "http://testserver/oauth2/acme/login/?next=%2Fneeds-token%2Facme%2F"
        "%3Ftab%3Dlogs%26q%3Da%2520b"
    )
    # An anonymous caller learns that someone must act, not the exception's text.
    assert body["detail"] == GENERIC_DETAIL


def test_json_request_of_an_operator_also_gets_json(oauth_client, operator_client):
    response = operator_client.get(PAGE, HTTP_ACCEPT="application/json")
    assert response.status_code == 401
    body = response.json()
    assert body["authorization_required"] == "acme"
    assert "not authorized yet" in body["detail"]


def test_browser_accept_header_is_not_json(oauth_client, operator_client):
    response = operator_client.get(
        PAGE, HTTP_ACCEPT="text/html,application/xhtml+xml,application/json;q=0.9"
    )
    assert response.status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["anonymous", "staff_without_permission", "user"])
def test_other_users_get_a_503_page(oauth_client, who):
    browser = Client()
    if who != "anonymous":
        user = User.objects.create_user(who, password="x", is_staff=who != "user")
        browser.force_login(user)
    response = browser.get(PAGE)
    assert response.status_code == 503
    page = response.content.decode()
    assert "Temporarily unavailable" in page
    assert "An administrator has to reconnect it" in page
    assert "/oauth2/acme/login/" not in page


def test_disabled_client_sends_the_operator_to_its_page(make_client, operator_client):
    make_client(enabled=False)
    response = operator_client.get("/needs-token/acme/")
    assert response.status_code == 302
    assert operator_client.get(response["Location"]).status_code == 400


# --- who reads the details (item 6) --------------------------------------------------

#: What a failed refresh wrote into last_error: the provider's words, internal hosts.
INTERNAL = "idp.internal.corp.example:8443 said tenant 42 is locked"


def browser_for(who: str) -> Client:
    """A browser of an anonymous visitor or of a user with the named role."""
    browser = Client()
    if who == "anonymous":
        return browser
    user = User.objects.create_user(who, password="x", is_staff=who.startswith("staff"))
    codename = {
        "staff_viewer": "view_oauth2client",
        "user_with_authorize": "authorize",
    }.get(who)
    if codename:
        user.user_permissions.set(Permission.objects.filter(codename=codename))
    browser.force_login(user)
    return browser


@pytest.fixture
def needs_reauthorization(oauth_client, make_token) -> OAuth2Token:
    return make_token(
        oauth_client,
        status="reauthorization_required",
        last_error=f"Refreshing failed: {INTERNAL}",
    )


@pytest.mark.parametrize(
    "who", ["anonymous", "staff_without_permission", "user_with_authorize"]
)
def test_visitors_do_not_see_the_exception_text(needs_reauthorization, who):
    browser = browser_for(who)
    page = browser.get(PAGE)
    assert page.status_code == 503
    assert "idp.internal" not in page.content.decode()
    assert "tenant 42" not in page.content.decode()
    assert GENERIC_DETAIL in page.content.decode()

    api = browser.get(PAGE, HTTP_ACCEPT="application/json")
    assert api.status_code == 401
    assert api.json()["detail"] == GENERIC_DETAIL
    assert "idp.internal" not in api.content.decode()


def test_staff_who_can_view_the_client_see_the_details(needs_reauthorization):
    browser = browser_for("staff_viewer")
    page = browser.get(PAGE)
    assert page.status_code == 503  # may not authorize: no redirect to the login
    assert INTERNAL in page.content.decode()
    api = browser.get(PAGE, HTTP_ACCEPT="application/json")
    assert INTERNAL in api.json()["detail"]


def test_operator_json_shows_the_details(needs_reauthorization, operator_client):
    api = operator_client.get(PAGE, HTTP_ACCEPT="application/json")
    assert api.status_code == 401
    assert INTERNAL in api.json()["detail"]


# --- the app's other errors on host pages (item 7) -----------------------------------


@pytest.fixture
def expired_token(oauth_client, make_token) -> OAuth2Token:
    return make_token(
        oauth_client,
        expires_at=timezone.now() - datetime.timedelta(minutes=5),
    )


def make_secret_undecryptable(client, settings) -> None:
    """Encrypt the stored client secret under a key the site no longer has."""
    from cryptography.fernet import Fernet

    gone = {
        **settings.OAUTH2_INTEGRATOR,
        "ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
    }
    with override_settings(OAUTH2_INTEGRATOR=gone):
        client.save(update_fields=["client_secret"])


@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_undecryptable_client_secret_on_a_host_page_is_a_503(
    oauth_client, expired_token, operator_client, token_endpoint, settings, accept
):
    make_secret_undecryptable(oauth_client, settings)
    before = token_fields(expired_token)

    response = operator_client.get(PAGE, HTTP_ACCEPT=accept)
    assert response.status_code == 503
    assert "cannot be decrypted" in response.content.decode()
    anonymous = Client().get(PAGE, HTTP_ACCEPT=accept)
    assert anonymous.status_code == 503
    assert "decrypted" not in anonymous.content.decode()
    assert GENERIC_DETAIL in anonymous.content.decode()

    assert not token_endpoint.calls
    after = token_fields(expired_token)
    for field in ("access_token", "refresh_token", "status", "expires_at"):
        assert after[field] == before[field]


def test_failed_refresh_of_an_expired_token_is_a_503(
    expired_token, operator_client, token_endpoint
):
    token_endpoint.post(TOKEN_URL, status=503, body="down for maintenance")
    page = operator_client.get(PAGE)
    assert page.status_code == 503
    assert "HTTP 503" in page.content.decode()

    api = Client().get(PAGE, HTTP_ACCEPT="application/json")
    assert api.status_code == 503
    assert api.json() == {"unavailable": "acme", "detail": GENERIC_DETAIL}


def test_unknown_client_name_is_a_503_with_the_fix_for_operators(db, operator_client):
    page = operator_client.get("/needs-token/nobody/")
    assert page.status_code == 503
    assert "There is no OAuth2 client named" in page.content.decode()
    anonymous = Client().get("/needs-token/nobody/")
    assert anonymous.status_code == 503
    assert "nobody" not in anonymous.content.decode()


def test_authorization_required_without_a_client_name_is_a_503(db, operator_client):
    page = operator_client.get("/raises/nameless-authorization-required/")
    assert page.status_code == 503
    assert "without naming a client" in page.content.decode()


@pytest.mark.parametrize(
    ("kind", "exception"),
    [("value-error", ValueError), ("callback-error", CallbackError)],
)
def test_other_exceptions_are_not_handled(db, operator_client, kind, exception):
    operator_client.raise_request_exception = True
    with pytest.raises(exception):
        operator_client.get(f"/raises/{kind}/")


# --- a long return URL through ?next= (item 3) ---------------------------------------


@pytest.mark.parametrize("length", [2001, 2048])
def test_a_long_page_url_survives_the_round_trip(
    oauth_client, operator_client, start_login, token_endpoint, length
):
    """Django accepts return URLs up to 2048 characters; the column must hold them."""
    prefix = "/needs-token/acme/?q="
    page = prefix + "a" * (length - len(prefix))
    assert len(page) == length

    to_login = operator_client.get(page)
    assert to_login.status_code == 302
    next_url = parse_qs(urlsplit(to_login["Location"]).query)["next"][0]
    assert next_url == page

    state = start_login(operator_client, next=next_url)["state"]
    assert AuthorizationRequest.objects.get().return_url == page
    token_endpoint.post(
        TOKEN_URL, json={"access_token": "long-url-access-token-0123456789"}
    )
    done = operator_client.get(
        "/oauth2/acme/callback/", {"state": state, "code": "c0de-1234567890"}
    )
    assert done.status_code == 302
    assert done["Location"] == page
