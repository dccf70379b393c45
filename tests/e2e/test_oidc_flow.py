"""OpenID Connect end to end: a client of the ``oidc`` profile with only an issuer.

Against the real django-oauth-toolkit server (OIDC enabled, RS256 ID tokens signed
with a key made for this test session): discovery finds the endpoints, the login
sends ``openid``, a nonce and PKCE S256, the ID token is validated and the account
it names is stored. A proxy in the test alters the real token response's ID token:
that login is refused with HTTP 400 and nothing is stored.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from oauth2_integrator import transport
from oauth2_integrator.models import OAuth2Client, OAuth2Token

from .authserver import Application, AuthServer

pytestmark = pytest.mark.e2e

NAME = "oidc-dot"
CALLBACK_URL = f"http://testserver/oauth2/{NAME}/callback/"
OWNER = "e2e-oidc-owner"
EMAIL = "oidc-owner@example.test"


@dataclass
class OIDCProvider:
    server: AuthServer
    application: Application
    session: requests.Session


@pytest.fixture(scope="session")
def oidc_provider(authserver: AuthServer) -> Iterator[OIDCProvider]:
    password = secrets.token_urlsafe(16)
    application = authserver.register_application(
        client_id="e2e-oidc-client",
        redirect_uris=[CALLBACK_URL],
        username=OWNER,
        password=password,
    )
    authserver.enable_oidc(application.client_id, username=OWNER, email=EMAIL)
    session = authserver.sign_in(OWNER, password)
    try:
        yield OIDCProvider(authserver, application, session)
    finally:
        session.close()


@pytest.fixture
def oidc_client(
    make_client: Callable[..., OAuth2Client], oidc_provider: OIDCProvider
) -> Iterator[OAuth2Client]:
    """The operator's registration: provider "oidc", the issuer, the credentials."""
    cache.clear()
    yield make_client(
        name=NAME,
        display_name="DOT (OpenID Connect)",
        provider="oidc",
        issuer=oidc_provider.server.issuer,
        client_id=oidc_provider.application.client_id,
        client_secret=oidc_provider.application.client_secret,
        authorization_endpoint="",
        token_endpoint="",
        scope="",
    )
    cache.clear()


def login(
    browser: Client, provider: OIDCProvider
) -> tuple[dict[str, str], requests.Response | Any]:
    """Login -> consent -> our callback; the authorization parameters and the answer."""
    start = browser.post(f"/oauth2/{NAME}/login/")
    assert start.status_code == 302, start.content.decode()[:2000]
    authorize_url = start["Location"]
    assert authorize_url.startswith(provider.server.url("authorize"))
    params = dict(parse_qsl(urlsplit(authorize_url).query))
    callback = urlsplit(provider.server.consent(provider.session, authorize_url))
    assert callback.netloc == "testserver", callback
    return params, browser.get(f"{callback.path}?{callback.query}")


def test_an_issuer_alone_authorizes_end_to_end_and_names_the_account(
    oidc_client: OAuth2Client, oidc_provider: OIDCProvider, operator_client: Client
) -> None:
    params, done = login(operator_client, oidc_provider)

    # Every OpenID Connect login: openid, a nonce, PKCE S256.
    assert params["scope"].split() == ["openid", "email", "profile"]
    assert len(params["nonce"]) >= 16
    assert params["code_challenge_method"] == "S256"
    assert params["code_challenge"]

    assert done.status_code == 302, done.content.decode()[:2000]
    token = OAuth2Token.objects.get(client=oidc_client)
    assert token.account_name == EMAIL
    assert token.access_token
    # The token works at the provider: DOT's userinfo endpoint answers for it.
    answer = requests.get(
        oidc_provider.server.url("userinfo"),
        headers={"Authorization": f"Bearer {token.access_token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["email"] == EMAIL


def test_the_admin_and_oauth2_status_name_the_connected_account(
    oidc_client: OAuth2Client,
    oidc_provider: OIDCProvider,
    operator_client: Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, done = login(operator_client, oidc_provider)
    assert done.status_code == 302
    page = operator_client.get(
        f"/admin/oauth2_integrator/oauth2client/{oidc_client.pk}/change/"
    )
    assert f"Connected as {EMAIL}" in page.content.decode()
    call_command("oauth2_status")
    assert f"Connected as {EMAIL}" in capsys.readouterr().out
    call_command("oauth2_status", "--json")
    (entry,) = [c for c in json.loads(capsys.readouterr().out) if c["name"] == NAME]
    assert entry["account_name"] == EMAIL


def _tampered(id_token: str) -> str:
    """The same signature over a changed payload (another e-mail)."""
    header, payload, signature = id_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["email"] = "mallory@example.test"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    return f"{header}.{forged.decode()}.{signature}"


@pytest.fixture
def tampering_proxy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Alter the ID token in the real token endpoint's answer on its way to us."""
    real_request = transport.request
    altered: list[str] = []

    def request(method: str, url: str, **kwargs: Any) -> requests.Response:
        response = real_request(method, url, **kwargs)
        if url.rstrip("/").endswith("/token") and response.status_code == 200:
            body = json.loads(response.content)
            body["id_token"] = _tampered(body["id_token"])
            altered.append(url)
            response._content = json.dumps(body).encode()
        return response

    monkeypatch.setattr(transport, "request", request)
    return altered


def test_a_tampered_id_token_is_rejected_and_nothing_is_stored(
    oidc_client: OAuth2Client,
    oidc_provider: OIDCProvider,
    operator_client: Client,
    tampering_proxy: list[str],
) -> None:
    _, done = login(operator_client, oidc_provider)
    assert tampering_proxy, "the proxy did not see the token response"
    assert done.status_code == 400
    page = done.content.decode()
    assert "ID token" in page
    assert "was rejected" in page
    assert "signature does not match" in page
    assert not OAuth2Token.objects.filter(client=oidc_client).exists()
