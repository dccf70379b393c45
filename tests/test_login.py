"""Starting a login: who may, CSRF, what is stored, where the provider sends back."""

from __future__ import annotations

import datetime
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from oauth2_integrator import flow
from oauth2_integrator.models import AuthorizationRequest

LOGIN = "/oauth2/acme/login/"


def admin_change_url(client) -> str:
    return reverse("admin:oauth2_integrator_oauth2client_change", args=[client.pk])


@pytest.mark.django_db
def test_anonymous_user_is_sent_to_the_admin_login(oauth_client):
    for method in ("get", "post"):
        response = getattr(Client(), method)(LOGIN)
        assert response.status_code == 302
        assert response["Location"] == "/admin/login/?next=/oauth2/acme/login/"
    assert not AuthorizationRequest.objects.exists()


@pytest.mark.django_db
def test_staff_without_the_authorize_permission_gets_403(oauth_client):
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_oauth2client"))
    browser = Client()
    browser.force_login(user)
    for method in ("get", "post"):
        response = getattr(browser, method)(LOGIN)
        assert response.status_code == 403
        assert "Can authorize OAuth2 clients" in response.content.decode()
    assert not AuthorizationRequest.objects.exists()


@pytest.mark.django_db
def test_non_staff_user_with_the_permission_gets_403(oauth_client):
    user = User.objects.create_user("outsider", password="x", is_staff=False)
    user.user_permissions.set(Permission.objects.filter(codename="authorize"))
    browser = Client()
    browser.force_login(user)
    assert browser.post(LOGIN).status_code == 403
    assert not AuthorizationRequest.objects.exists()


def test_get_shows_a_confirmation_form_and_starts_nothing(
    oauth_client, operator_client
):
    response = operator_client.get(LOGIN)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<form method="post">' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert "Acme API (acme)" in html
    assert response["Cache-Control"].startswith("max-age=0")
    assert not AuthorizationRequest.objects.exists()


def test_post_without_csrf_token_is_rejected(oauth_client, operator):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)
    refused = browser.post(LOGIN)
    assert refused.status_code == 403
    assert not AuthorizationRequest.objects.exists()

    page = browser.get(LOGIN)
    token = re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()
    ).group(1)
    accepted = browser.post(LOGIN, {"csrfmiddlewaretoken": token})
    assert accepted.status_code == 302
    assert accepted["Location"].startswith("https://auth.example.test/oauth/authorize?")
    assert AuthorizationRequest.objects.count() == 1


def test_post_stores_only_a_hash_of_the_state(
    oauth_client, operator, operator_client, start_login
):
    query = start_login(operator_client)
    state = query["state"]
    pending = AuthorizationRequest.objects.get()
    assert pending.state_hash == flow.hash_state(state)
    assert pending.client == oauth_client
    assert pending.user == operator
    assert len(pending.session_hash) == 64
    assert pending.used_at is None
    assert len(pending.code_verifier) >= 43
    with connection.cursor() as cursor:
        table = AuthorizationRequest._meta.db_table
        cursor.execute(f"SELECT * FROM {table}")  # noqa: S608
        raw = repr(cursor.fetchall())
    assert state not in raw
    assert pending.code_verifier not in raw


def test_redirect_uri_is_the_absolute_callback_url(
    oauth_client, operator_client, start_login
):
    query = start_login(operator_client)
    assert query["redirect_uri"] == "http://testserver/oauth2/acme/callback/"
    assert AuthorizationRequest.objects.get().redirect_uri == query["redirect_uri"]

    secure = operator_client.post(LOGIN, secure=True, HTTP_HOST="localhost")
    assert (
        "redirect_uri=https%3A%2F%2Flocalhost%2Foauth2%2Facme%2Fcallback%2F"
        in (secure["Location"])
    )


def test_redirect_uri_uses_the_client_override(
    make_client, operator_client, start_login
):
    make_client(redirect_uri="https://public.example.test/cb/acme?x=1")
    query = start_login(operator_client)
    assert query["redirect_uri"] == "https://public.example.test/cb/acme?x=1"
    assert AuthorizationRequest.objects.get().redirect_uri == query["redirect_uri"]


def test_disabled_client_gets_a_clear_400_page(make_client, operator_client):
    make_client(enabled=False)
    for method in ("get", "post"):
        response = getattr(operator_client, method)(LOGIN)
        assert response.status_code == 400
        assert "is disabled" in response.content.decode()
        assert "Enable it in the admin" in response.content.decode()
    assert not AuthorizationRequest.objects.exists()


def test_unknown_client_gets_404(db, operator_client):
    response = operator_client.post("/oauth2/nobody/login/")
    assert response.status_code == 404
    assert "no OAuth2 client named" in response.content.decode()


def test_stale_authorization_requests_are_cleaned_up(
    oauth_client, operator_client, start_login
):
    def pending(age_seconds: int, tag: str) -> AuthorizationRequest:
        return AuthorizationRequest.objects.create(
            state_hash=flow.hash_state(tag),
            client=oauth_client,
            session_hash="x" * 64,
            redirect_uri="http://testserver/oauth2/acme/callback/",
            created_at=timezone.now() - datetime.timedelta(seconds=age_seconds),
        )

    stale = pending(601, "stale")
    used_stale = pending(3600, "used")
    fresh = pending(300, "fresh")
    start_login(operator_client)
    remaining = set(AuthorizationRequest.objects.values_list("pk", flat=True))
    assert stale.pk not in remaining
    assert used_stale.pk not in remaining
    assert fresh.pk in remaining
    assert len(remaining) == 2


@pytest.mark.parametrize(
    "unsafe",
    [
        "https://evil.example/phish",
        "//evil.example/phish",
        "http://testserver.evil.example/",
        "javascript:alert(1)",
        "https:///evil.example",
    ],
)
def test_open_redirect_in_next_is_rejected(
    oauth_client, operator_client, start_login, unsafe
):
    start_login(operator_client, next=unsafe)
    assert AuthorizationRequest.objects.get().return_url == admin_change_url(
        oauth_client
    )
    page = operator_client.get(LOGIN, {"next": unsafe})
    assert "evil.example" not in page.content.decode()
    assert "javascript:" not in page.content.decode()


def test_same_site_next_is_kept(oauth_client, operator_client, start_login):
    page = operator_client.get(LOGIN, {"next": "/needs-token/acme/?page=2"})
    assert 'value="/needs-token/acme/?page=2"' in page.content.decode()
    start_login(operator_client, next="/needs-token/acme/?page=2")
    assert AuthorizationRequest.objects.get().return_url == "/needs-token/acme/?page=2"


def test_each_login_gets_a_new_state(oauth_client, operator_client, start_login):
    states = {start_login(operator_client)["state"] for _ in range(5)}
    assert len(states) == 5
    assert AuthorizationRequest.objects.count() == 5


# --- the return URL: long, odd, or plain http on an https site -----------------------


@pytest.mark.parametrize("length", [2001, 2048])
def test_a_long_return_url_is_kept(oauth_client, operator_client, start_login, length):
    """Django accepts same-site URLs up to 2048 characters (PostgreSQL refused >2000)."""
    prefix = "/needs-token/acme/?q="
    long_url = prefix + "b" * (length - len(prefix))
    start_login(operator_client, next=long_url)
    assert AuthorizationRequest.objects.get().return_url == long_url


def test_a_return_url_django_refuses_falls_back_without_losing_the_login(
    oauth_client, operator_client, start_login
):
    too_long = "/needs-token/acme/?q=" + "c" * 2100
    start_login(operator_client, next=too_long)
    assert AuthorizationRequest.objects.get().return_url == admin_change_url(
        oauth_client
    )


def test_a_return_url_longer_than_its_column_falls_back(
    oauth_client, operator_client, start_login, monkeypatch
):
    """Should Django ever accept longer URLs than the column holds, the login goes on."""
    field = AuthorizationRequest._meta.get_field("return_url")
    monkeypatch.setattr(field, "max_length", 40)
    start_login(operator_client, next="/needs-token/acme/?q=" + "d" * 20)
    assert AuthorizationRequest.objects.get().return_url == admin_change_url(
        oauth_client
    )


@pytest.mark.parametrize("odd", ["/needs-token/acme/?q=a\x00b", "/needs-\u2028token/"])
def test_a_return_url_with_control_characters_falls_back(
    oauth_client, operator_client, start_login, odd
):
    """PostgreSQL cannot store NUL; Django's check lets it through after the first
    character."""
    start_login(operator_client, next=odd)
    assert AuthorizationRequest.objects.get().return_url == admin_change_url(
        oauth_client
    )


def test_an_https_site_does_not_return_to_plain_http(oauth_client, operator_client):
    for next_url, kept in [
        ("http://localhost/needs-token/acme/", False),
        ("https://localhost/needs-token/acme/", True),
        ("/needs-token/acme/", True),
    ]:
        AuthorizationRequest.objects.all().delete()
        response = operator_client.post(
            LOGIN, {"next": next_url}, secure=True, HTTP_HOST="localhost"
        )
        assert response.status_code == 302
        stored = AuthorizationRequest.objects.get().return_url
        assert stored == (next_url if kept else admin_change_url(oauth_client))


# --- a client secret no configured key opens (item 7) --------------------------------


def test_undecryptable_client_secret_is_a_clear_503_before_the_provider(
    oauth_client, operator_client, settings, caplog
):
    from cryptography.fernet import Fernet
    from django.test import override_settings

    gone = {
        **settings.OAUTH2_INTEGRATOR,
        "ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
    }
    with override_settings(OAUTH2_INTEGRATOR=gone):
        oauth_client.save(update_fields=["client_secret"])

    confirm = operator_client.get(LOGIN)
    assert confirm.status_code == 200
    response = operator_client.post(LOGIN)
    assert response.status_code == 503
    page = response.content.decode()
    assert "Cannot start the login" in page
    assert "client secret of &#x27;acme&#x27; cannot be decrypted" in page
    assert not AuthorizationRequest.objects.exists()


def test_public_client_starts_without_a_secret(make_client, operator_client):
    make_client(client_secret="", token_auth_method="none")
    assert operator_client.post(LOGIN).status_code == 302
