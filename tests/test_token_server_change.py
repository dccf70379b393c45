"""Tokens never follow a client to another token server.

A refresh sends the refresh token and the client secret to the token endpoint. If
an edit in the admin (a typo, or staff with the change permission and bad intent)
or a registration file points the endpoint at another server, the tokens the old
server issued must not be sent there: the client needs re-authorization instead.
"""

from __future__ import annotations

import pytest

from oauth2_integrator import AuthorizationRequired, get_access_token
from oauth2_integrator.models import OAuth2Client, OAuth2Token, TokenStatus
from oauth2_integrator.registration import import_clients

from .conftest import TOKEN_URL
from .test_admin import form_data
from .test_import_clients import entry

ELSEWHERE = "https://collector.example.net/token"


@pytest.fixture
def connected(oauth_client, make_token) -> OAuth2Token:
    return make_token(oauth_client)


def change_url(client: OAuth2Client) -> str:
    return f"/admin/oauth2_integrator/oauth2client/{client.pk}/change/"


def test_a_new_token_server_in_the_admin_retires_the_token(
    connected, operator_client, token_endpoint, settings
):
    settings.OAUTH2_INTEGRATOR = {**settings.OAUTH2_INTEGRATOR, "REFRESH_MARGIN": 10**6}
    client = connected.client
    response = operator_client.post(
        change_url(client), form_data(client, token_endpoint=ELSEWHERE)
    )
    assert response.status_code == 302, response.content

    token = OAuth2Token.objects.get()
    assert token.status == TokenStatus.REAUTHORIZATION_REQUIRED
    assert token.last_error_code == "token_endpoint_changed"
    assert "https://auth.example.test" in token.last_error
    assert "https://collector.example.net" in token.last_error
    # The margin makes the token due: no refresh is sent anywhere.
    with pytest.raises(AuthorizationRequired, match="token endpoint moved"):
        get_access_token("acme")
    assert len(token_endpoint.calls) == 0


def test_a_new_path_on_the_same_server_keeps_the_token(connected, operator_client):
    client = connected.client
    response = operator_client.post(
        change_url(client),
        form_data(client, token_endpoint=TOKEN_URL.replace("/token", "/v2/token")),
    )
    assert response.status_code == 302, response.content
    assert OAuth2Token.objects.get().status == TokenStatus.ACTIVE
    assert get_access_token("acme") == connected.access_token


def test_a_registration_file_moving_the_server_retires_the_token(connected):
    import_clients([entry("acme", token_endpoint=ELSEWHERE)])
    assert OAuth2Client.objects.get().token_endpoint == ELSEWHERE
    assert OAuth2Token.objects.get().status == TokenStatus.REAUTHORIZATION_REQUIRED


def test_a_new_port_is_another_server(connected):
    client = connected.client
    client.token_endpoint = TOKEN_URL.replace(
        "auth.example.test", "auth.example.test:8443"
    )
    client.save()
    assert OAuth2Token.objects.get().status == TokenStatus.REAUTHORIZATION_REQUIRED
