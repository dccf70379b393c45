"""The opt-in middleware: an ``AuthorizationRequired`` escaping a host view becomes
one click for an operator, a JSON answer for API callers, a 503 page for others."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client

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
    assert "not authorized yet" in body["detail"]


def test_json_request_of_an_operator_also_gets_json(oauth_client, operator_client):
    response = operator_client.get(PAGE, HTTP_ACCEPT="application/json")
    assert response.status_code == 401
    assert response.json()["authorization_required"] == "acme"


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


def test_other_exceptions_are_not_handled(db, operator_client):
    # An unknown client is a programming error (ConfigurationError), not a login.
    operator_client.raise_request_exception = True
    from oauth2_integrator import ConfigurationError

    with pytest.raises(ConfigurationError):
        operator_client.get("/needs-token/nobody/")
