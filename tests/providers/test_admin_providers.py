"""The admin and provider profiles: picking a provider fills the add form from the
profile and shows its notes and documentation; the change page shows the callback
URL to register at the provider."""

from __future__ import annotations

import html
from typing import Any

from django.test import Client
from django.urls import reverse

from oauth2_integrator.models import OAuth2Client
from oauth2_integrator.providers import registry

ADD_URL = "/admin/oauth2_integrator/oauth2client/add/"


def text_of(response: Any) -> str:
    return html.unescape(response.content.decode())


def change_url(client: OAuth2Client) -> str:
    return reverse("admin:oauth2_integrator_oauth2client_change", args=[client.pk])


def test_every_catalog_provider_is_in_the_select(operator_client: Client) -> None:
    response = operator_client.get(ADD_URL)
    assert response.status_code == 200
    options = response.context["adminform"].form.fields["provider"].choices
    offered = {key for key, _ in options}
    assert {key for key, _ in registry.choices()} <= offered
    assert {"google", "microsoft", "zoho", "generic", "oidc"} <= offered


def test_picking_google_fills_the_add_form(operator_client: Client) -> None:
    response = operator_client.get(ADD_URL, {"provider": "google", "name": "gmail"})
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.initial["provider"] == "google"
    assert form.initial["authorization_endpoint"] == (
        "https://accounts.google.com/o/oauth2/v2/auth"
    )
    assert form.initial["token_endpoint"] == "https://oauth2.googleapis.com/token"
    assert form.initial["scope"] == "openid email"
    assert form.initial["token_auth_method"] == "client_secret_post"
    assert form.initial["name"] == "gmail"  # what the operator typed stays
    text = text_of(response)
    assert 'value="https://oauth2.googleapis.com/token"' in text
    assert '<option value="google" selected>' in text


def test_the_profiles_notes_and_documentation_are_shown(
    operator_client: Client,
) -> None:
    response = operator_client.get(ADD_URL, {"provider": "google"})
    text = text_of(response)
    assert "access_type=offline and prompt=consent" in text
    assert (
        'href="https://developers.google.com/identity/protocols/oauth2/web-server"'
        in text
    )
    assert "Google documentation" in text


def test_a_templated_endpoint_is_left_blank_and_explained(
    operator_client: Client,
) -> None:
    response = operator_client.get(ADD_URL, {"provider": "microsoft"})
    form = response.context["adminform"].form
    assert form.initial["token_endpoint"] == ""  # {tenant} comes from url_values
    assert "url_values" in text_of(response)


def test_the_select_reloads_the_form_with_the_profile(
    operator_client: Client,
) -> None:
    text = text_of(operator_client.get(ADD_URL))
    assert 'id="oauth2-provider-prefill"' in text
    assert 'params.set("provider", select.value)' in text
    assert '<a href="?provider=salesforce">Salesforce</a>' in text


def test_the_change_page_shows_the_callback_url(
    operator_client: Client, make_client: Any
) -> None:
    client = make_client(provider="github")
    response = operator_client.get(change_url(client))
    assert response.status_code == 200
    text = text_of(response)
    assert "Callback URL to register at the provider:" in text
    assert "<code>http://testserver/oauth2/acme/callback/</code>" in text
    # the provider's notes and docs on the change page too, no pre-fill links
    assert "Accept: application/json" in text
    assert "?provider=" not in text
    assert 'id="oauth2-provider-prefill"' not in text


def test_the_callback_url_is_the_clients_override(
    operator_client: Client, make_client: Any
) -> None:
    client = make_client(redirect_uri="https://proxy.example/oauth/callback")
    text = text_of(operator_client.get(change_url(client)))
    assert "<code>https://proxy.example/oauth/callback</code>" in text
    assert "the client's redirect URI" in text


def test_a_client_saved_with_a_provider_only_works(
    operator_client: Client, db: Any
) -> None:
    """Endpoints left blank come from the profile (here: Dropbox)."""
    response = operator_client.post(
        ADD_URL,
        {
            "name": "files",
            "display_name": "Files",
            "provider": "dropbox",
            "enabled": "on",
            "client_id": "dbx-id",
            "client_secret": "dbx-secret-value-0987",
            "token_auth_method": "client_secret_basic",
            "use_pkce": "on",
            "scope": "",
            "authorization_endpoint": "",
            "token_endpoint": "",
            "revocation_endpoint": "",
            "issuer": "",
            "redirect_uri": "",
            "extra_authorize_params": "{}",
            "extra_token_params": "{}",
            "provider_options": "{}",
        },
    )
    assert response.status_code == 302, text_of(response)[:3000]
    client = OAuth2Client.objects.get(name="files")
    assert client.provider == "dropbox"
    from oauth2_integrator.providers import configure

    config = configure(client)
    assert config.token_endpoint == "https://api.dropboxapi.com/oauth2/token"
    assert config.options.authorize_params == {"token_access_type": "offline"}


def test_the_changelist_filter_lists_only_providers_in_use(
    operator_client: Client, make_client: Any
) -> None:
    make_client(name="repo", provider="github")
    make_client(name="mail", provider="google")
    response = operator_client.get("/admin/oauth2_integrator/oauth2client/")
    text = text_of(response)
    assert "?provider=github" in text and "?provider=google" in text
    assert "?provider=salesforce" not in text  # in the catalog, not in use
    filtered = text_of(
        operator_client.get(
            "/admin/oauth2_integrator/oauth2client/", {"provider": "github"}
        )
    )
    assert ">repo</a>" in filtered and ">mail</a>" not in filtered


def test_the_change_page_shows_kept_values_and_refresh_token_expiry(
    operator_client: Client, make_client: Any, make_token: Any
) -> None:
    import datetime

    from django.utils import timezone

    client = make_client(provider="quickbooks")
    make_token(
        client,
        provider_values={"realmId": "9130347596"},
        refresh_token_expires_at=timezone.now() + datetime.timedelta(days=99),
    )
    text = text_of(operator_client.get(change_url(client)))
    assert "Values kept from the provider" in text
    assert "realmId = 9130347596" in text
    assert "Refresh token expires at" in text
    assert "in 3\xa0months" in text or "in 3 months" in text
