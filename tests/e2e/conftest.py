"""Fixtures for tests against a real django-oauth-toolkit server over real HTTP.

``authserver`` (session scope) starts the example project's demo provider in its
own process and stops it at the end; the browser tests reuse it (import the
fixture from here). The app under test runs in the pytest process, on the test
database, with the Django test client as the operator's browser.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from django.test import Client

from oauth2_integrator.models import OAuth2Client

from .authserver import Application, AuthServer

#: The name of our client in these tests, and so its callback path.
CLIENT_NAME = "dot"
CALLBACK_URL = f"http://testserver/oauth2/{CLIENT_NAME}/callback/"
RESOURCE_OWNER = "e2e-resource-owner"


@pytest.fixture(scope="session")
def authserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    server = AuthServer(workdir=tmp_path_factory.mktemp("authserver"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Provider:
    """The server with one registered application and a resource owner signed in."""

    server: AuthServer
    application: Application
    resource_owner: str
    session: requests.Session


@pytest.fixture(scope="session")
def provider(authserver: AuthServer) -> Iterator[Provider]:
    password = secrets.token_urlsafe(16)
    application = authserver.register_application(
        client_id="e2e-client",
        redirect_uris=[CALLBACK_URL],
        username=RESOURCE_OWNER,
        password=password,
    )
    session = authserver.sign_in(RESOURCE_OWNER, password)
    try:
        yield Provider(authserver, application, RESOURCE_OWNER, session)
    finally:
        session.close()


@pytest.fixture
def make_dot_client(
    make_client: Callable[..., OAuth2Client], provider: Provider
) -> Callable[..., OAuth2Client]:
    """Our OAuth2Client registration for the provider's application."""

    def make(**fields: Any) -> OAuth2Client:
        values = {
            "name": CLIENT_NAME,
            "display_name": "DOT test server",
            **provider.server.client_fields(provider.application),
        }
        values.update(fields)
        return make_client(**values)

    return make


@dataclass
class Login:
    """One run of login -> consent: what the provider sent back to our callback."""

    authorize_url: str
    callback_url: str

    @property
    def authorize_params(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.authorize_url).query))

    @property
    def callback_params(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.callback_url).query))

    @property
    def callback_path(self) -> str:
        """The callback as the test client requests it (path and query)."""
        parts = urlsplit(self.callback_url)
        assert parts.netloc == "testserver", self.callback_url
        return f"{parts.path}?{parts.query}"


@pytest.fixture
def run_login(provider: Provider) -> Callable[..., Login]:
    """Start a login as the operator and answer the provider's consent page."""

    def run(
        browser: Client, *, allow: bool = True, next_url: str | None = None
    ) -> Login:
        form = {"next": next_url} if next_url else {}
        start = browser.post(f"/oauth2/{CLIENT_NAME}/login/", form)
        assert start.status_code == 302, start.content
        authorize_url = start["Location"]
        assert authorize_url.startswith(provider.server.url("authorize"))
        callback_url = provider.server.consent(
            provider.session, authorize_url, allow=allow
        )
        return Login(authorize_url=authorize_url, callback_url=callback_url)

    return run


@pytest.fixture
def connect(
    run_login: Callable[..., Login], operator_client: Client
) -> Callable[[], Login]:
    """Authorize the client completely (login, consent, callback)."""

    def run() -> Login:
        login = run_login(operator_client)
        done = operator_client.get(login.callback_path)
        assert done.status_code == 302, done.content.decode()[:2000]
        return login

    return run
