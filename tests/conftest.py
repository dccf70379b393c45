"""Shared fixtures: a registered client, an operator allowed to authorize it, a token."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from oauth2_integrator.models import OAuth2Client, OAuth2Token

AUTHORIZE_URL = "https://auth.example.test/oauth/authorize"
TOKEN_URL = "https://auth.example.test/oauth/token"
CLIENT_SECRET = "s3cr3t-client-secret-value-0123456789"


@pytest.fixture
def make_client(db: Any) -> Callable[..., OAuth2Client]:
    def make(**fields: Any) -> OAuth2Client:
        values: dict[str, Any] = {
            "name": "acme",
            "display_name": "Acme API",
            "client_id": "acme-client-id",
            "client_secret": CLIENT_SECRET,
            "authorization_endpoint": AUTHORIZE_URL,
            "token_endpoint": TOKEN_URL,
            "scope": "read write",
        }
        values.update(fields)
        return OAuth2Client.objects.create(**values)

    return make


@pytest.fixture
def oauth_client(make_client: Callable[..., OAuth2Client]) -> OAuth2Client:
    return make_client()


@pytest.fixture
def make_token(db: Any) -> Callable[..., OAuth2Token]:
    def make(client: OAuth2Client, **fields: Any) -> OAuth2Token:
        """A token obtained a day ago: its lifetime never caps the refresh margin."""
        now = timezone.now()
        values: dict[str, Any] = {
            "access_token": "stored-access-token-AAAA-1111-BBBB",
            "refresh_token": "stored-refresh-token-CCCC-2222-DDDD",
            "obtained_at": now - datetime.timedelta(days=1),
            "expires_at": now + datetime.timedelta(hours=1),
            "scope": client.scope,
        }
        values.update(fields)
        return OAuth2Token.objects.create(client=client, **values)

    return make


@pytest.fixture
def operator(db: Any) -> User:
    """A staff user who may view and change clients and start logins."""
    user = User.objects.create_user("operator", password="operator-pass", is_staff=True)
    codenames = [
        "authorize",
        "view_oauth2client",
        "change_oauth2client",
        "add_oauth2client",
    ]
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="oauth2_integrator", codename__in=codenames
        )
    )
    return user


@pytest.fixture
def operator_client(operator: User) -> Client:
    browser = Client()
    browser.force_login(operator)
    return browser


# --- core protocol helpers (test_flow, test_callback, test_tokens, ...) ------------


@pytest.fixture
def token_endpoint() -> Any:
    """A ``responses`` mock for the token endpoint; other URLs raise (no internet)."""
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def start_login() -> Callable[..., dict[str, str]]:
    """POST the login form like the operator's browser and return the redirect's query.

    The query (``state``, ``code_challenge``, ...) is what the provider would see; the
    callback tests answer with its ``state``.
    """
    from urllib.parse import parse_qsl, urlsplit

    def start(browser: Client, name: str = "acme", **form: str) -> dict[str, str]:
        response = browser.post(f"/oauth2/{name}/login/", form)
        assert response.status_code == 302, response.content
        location = response["Location"]
        query = dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))
        query["_location"] = location
        return query

    return start


def token_fields(token: OAuth2Token) -> dict[str, Any]:
    """All stored fields of a token, read afresh: proof a failure changed nothing."""
    fresh = OAuth2Token.objects.get(pk=token.pk)
    return {
        field.attname: getattr(fresh, field.attname)
        for field in OAuth2Token._meta.concrete_fields
    }


def raw_secret(client: OAuth2Client) -> str:
    """The client secret column as stored, bypassing the field's decryption."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT client_secret FROM {OAuth2Client._meta.db_table} WHERE id = %s",  # noqa: S608
            [client.pk],
        )
        return str(cursor.fetchone()[0])
