"""Shopify, from
https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant.

The shop is part of every URL (``url_values: {"shop": ...}`` in the client's
provider options). Scopes are comma-separated. The callback carries ``code``,
``hmac``, ``host``, ``shop``, ``state`` and ``timestamp``; ``shop`` is kept. The
code is exchanged with the client id and secret in the body; the answer for an
offline token is only ``access_token`` and ``scope``: no expiry, no refresh token.
Expiring offline tokens (``expires_in``, ``refresh_token``) are opt-in
(https://shopify.dev/changelog/offline-access-tokens-now-support-expiry-and-refresh)
and not requested by this profile.
"""

from __future__ import annotations

import pytest
import responses
from django.test import Client

from oauth2_integrator import providers
from oauth2_integrator.exceptions import ConfigurationError
from oauth2_integrator.models import OAuth2Client, OAuth2Token

from .mixin import ProviderFlowTests

SHOP = "https://acme-store.myshopify.com"


class TestShopify(ProviderFlowTests):
    provider = "shopify"
    client_fields = {"provider_options": {"url_values": {"shop": "acme-store"}}}
    authorization_endpoint = f"{SHOP}/admin/oauth/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "read_products",
    }
    # "Step 3: Validate authorization code": the redirect's other parameters.
    callback_params = {
        "hmac": "da9d83c171400a41f8db91a950508985",
        "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvYWNtZS1zdG9yZQ",
        "shop": "acme-store.myshopify.com",
        "timestamp": "1409617544",
    }

    token_url = f"{SHOP}/admin/oauth/access_token"
    # client_id, client_secret and code (grant_type and redirect_uri as RFC 6749).
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # "Offline access token response" of the page.
    token_response = {
        "access_token": "f85632530bf277ec9ac6f649fc327f17",
        "scope": "write_orders,read_customers",
    }
    stored_access_token = "f85632530bf277ec9ac6f649fc327f17"
    stored_refresh_token = ""
    stored_expires_in = None
    stored_values = {"shop": "acme-store.myshopify.com"}

    # Shopify's answer to a used or unknown code (not on the page; as Shopify
    # sends it).
    error_response = {
        "error": "invalid_request",
        "error_description": "The authorization code was not found or was already used",
    }

    def test_without_a_shop_nothing_is_sent(self, db: object) -> None:
        client = OAuth2Client.objects.create(
            name="noshop",
            provider="shopify",
            client_id="id",
            client_secret="secret",
        )
        with pytest.raises(ConfigurationError) as raised:
            providers.configure(client)
        assert "shop" in str(raised.value)

    def test_the_callback_shop_does_not_choose_the_token_url(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        self.callback_params = {**self.callback_params, "shop": "evil.myshopify.com"}
        self.connect(browser, endpoint)
        [call] = endpoint.calls
        assert call.request.url.startswith(f"{SHOP}/")
        assert OAuth2Token.objects.get().access_token == self.stored_access_token
