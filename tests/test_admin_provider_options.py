"""An operator handles a new quirk from the admin: the client's provider options.

The field is on the change page; a valid object is saved and used, an unknown key
or a value of the wrong type is refused with a message naming it, nothing saved.
"""

from __future__ import annotations

import json

from oauth2_integrator.models import OAuth2Client
from oauth2_integrator.providers import configure

from .test_admin import form_data


def change_url(client: OAuth2Client) -> str:
    return f"/admin/oauth2_integrator/oauth2client/{client.pk}/change/"


def test_the_change_page_has_the_provider_options(oauth_client, operator_client):
    page = operator_client.get(change_url(oauth_client)).content.decode()
    assert 'name="provider_options"' in page


def test_provider_options_are_saved_and_used(oauth_client, operator_client):
    options = {"token_path": "data", "param_names": {"client_id": "client_key"}}
    response = operator_client.post(
        change_url(oauth_client),
        form_data(oauth_client, provider_options=json.dumps(options)),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    client = OAuth2Client.objects.get()
    assert client.provider_options == options
    assert configure(client).options.token_path == "data"


def test_an_unknown_option_is_refused_naming_the_known_ones(
    oauth_client, operator_client
):
    response = operator_client.post(
        change_url(oauth_client),
        form_data(oauth_client, provider_options=json.dumps({"tokn_path": "data"})),
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "tokn_path" in page
    assert "token_path" in page  # among the known keys
    assert OAuth2Client.objects.get().provider_options == {}


def test_an_option_of_the_wrong_type_is_refused(oauth_client, operator_client):
    response = operator_client.post(
        change_url(oauth_client),
        form_data(oauth_client, provider_options=json.dumps({"scope_on_refresh": 1})),
    )
    assert response.status_code == 200
    assert "scope_on_refresh must be true or false" in response.content.decode()
    assert OAuth2Client.objects.get().provider_options == {}
