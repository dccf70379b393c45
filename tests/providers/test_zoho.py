"""Zoho, from https://www.zoho.com/accounts/protocol/oauth/web-server-applications.html.

Scopes are comma-separated; ``access_type=offline`` (and ``prompt=consent``)
for a refresh token. Each account lives in one data centre: the callback names
it in ``accounts-server`` (and ``location``), and the code must be exchanged
there, and refreshes go there too
(https://www.zoho.com/accounts/protocol/oauth/multi-dc/client-authorization.html).
``api_domain`` in the token answer is the base URL for API calls; it is kept.
The refresh answer has no refresh token (the stored one stays). A bad code is
answered ``{"error": "invalid_code"}``; the documentation does not give the HTTP
status, and Zoho is reported to send it with HTTP 200, the harder case, tested.
"""

from __future__ import annotations

import responses
from django.test import Client

from oauth2_integrator.models import OAuth2Token

from .mixin import CODE, ProviderFlowTests

EU = "https://accounts.zoho.eu"


class TestZoho(ProviderFlowTests):
    provider = "zoho"
    authorization_endpoint = "https://accounts.zoho.com/oauth/v2/auth"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "AaaServer.profile.READ",
        "access_type": "offline",
        "prompt": "consent",
    }
    # An account of the EU data centre.
    callback_params = {"location": "eu", "accounts-server": EU}

    token_url = f"{EU}/oauth/v2/token"
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # The documented answer of "Generate access and refresh tokens" (values of
    # https://www.zoho.com/writer/help/api/v1/oauth-step3.html, EU domain).
    token_response = {
        "access_token": "1000.8cb99dxxxxxxxxxxxxx9be93.9b8xxxxxxxxxxxxxxxf",
        "refresh_token": "1000.7e7b5xxxxxxxxxxxxxxxxxxx2c2c.f73xxxxxxxxxxxxxxxx3ad",
        "api_domain": "https://www.zohoapis.eu",
        "token_type": "Bearer",
        "expires_in": 3600,
    }
    stored_access_token = token_response["access_token"]
    stored_refresh_token = token_response["refresh_token"]
    stored_expires_in = 3600
    stored_values = {
        "location": "eu",
        "accounts-server": EU,
        "api_domain": "https://www.zohoapis.eu",
        "token_endpoint": f"{EU}/oauth/v2/token",
    }

    # "Refresh access token": the same data centre, client id and secret in the
    # body; the answer has no refresh_token.
    refresh_url = f"{EU}/oauth/v2/token"
    refresh_body = {
        "grant_type": "refresh_token",
        "refresh_token": "<refresh_token>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    refresh_response = {
        "access_token": "1000.2deaxxxxxxxxxxxxxxxxxxxx1a1a.8fbxxxxxxxxxxxxxxxx2b6",
        "api_domain": "https://www.zohoapis.eu",
        "token_type": "Bearer",
        "expires_in": 3600,
    }
    refreshed_access_token = refresh_response["access_token"]

    # A reused or expired code
    # (https://help.zoho.com/portal/en/kb/accounts/faqs-troubleshooting/faqs/oauth/articles/invalid-code-redirect-uri).
    error_status = 200
    error_response = {"error": "invalid_code"}

    def test_a_foreign_accounts_server_gets_neither_code_nor_secret(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        query = self.login(browser)
        response = browser.get(
            "/oauth2/acme/callback/",
            {
                "state": query["state"],
                "code": CODE,
                "accounts-server": "https://accounts.zoho.eu.attacker.example",
            },
        )
        assert response.status_code == 400
        assert not endpoint.calls
        assert not OAuth2Token.objects.exists()
