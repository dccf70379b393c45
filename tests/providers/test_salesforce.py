"""Salesforce, from Salesforce's documentation.

- https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_web_server_flow.htm
  (OAuth 2.0 Web Server Flow for Web App Integration: the authorization and token
  requests, PKCE supported, the token answer with ``instance_url`` and ``id``)
- https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_refresh_token_flow.htm
  (OAuth 2.0 Refresh Token Flow: no new refresh token by default)

The token answer has no ``expires_in``: the session timeout is set by the org, so
the expiry is stored as unknown. ``instance_url`` (the base URL for API calls) is
kept with the token and returned by ``get_token_values``. A sandbox uses
``test.salesforce.com`` (``url_values``).
"""

from __future__ import annotations

from typing import Any

import responses
from django.test import Client

from oauth2_integrator import get_token_values

from .mixin import ProviderFlowTests

LOGIN = "https://login.salesforce.com/services/oauth2"
INSTANCE = "https://mycompany.my.salesforce.com"
IDENTITY = "https://login.salesforce.com/id/00DB0000000TfcRMAS/005B0000005Bk90IAC"


class TestSalesforce(ProviderFlowTests):
    provider = "salesforce"
    authorization_endpoint = f"{LOGIN}/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "api refresh_token",
    }
    token_url = f"{LOGIN}/token"
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # Web Server Flow, "Salesforce Grants a New Access Token" (example answer; the
    # id_token of the openid scope left out).
    token_response = {
        "access_token": "00DB0000000TfcR!AQQAQFhoK8vTMg_rKA.esrJ2bCs.OOIjJgl.9Cx6O7Kq"
        "jZmHMLOyVb.U61BU9tm4xRusf7d3fD1P9oefzqS6i9sJMPWj48IK",
        "signature": "d/SxeYBxH0GSVko0HMgcUxuZy0PA2cDDz1u7g7JtDHw=",
        "scope": "refresh_token api",
        "instance_url": INSTANCE,
        "id": IDENTITY,
        "token_type": "Bearer",
        "issued_at": "1558553873237",
        "refresh_token": "5Aep861HDR3iPJ6Zr7bQAj8KiRzNi_L0ijD6aUaKvbeKIHGsMuFbKpbUvAvbW"
        "xlo.nZm0JnG4yHUxPTHiNmnXcY",
    }
    stored_access_token = token_response["access_token"]
    stored_refresh_token = token_response["refresh_token"]
    stored_expires_in = None  # no expires_in: the org's session timeout applies
    stored_scope = "refresh_token api"
    stored_values = {"instance_url": INSTANCE, "id": IDENTITY}

    refresh_url = f"{LOGIN}/token"
    refresh_body = {
        "grant_type": "refresh_token",
        "refresh_token": "<refresh_token>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # Refresh Token Flow, example answer: no refresh_token (the stored one stays).
    refresh_response = {
        "access_token": "00DB0000000TfcR!AQQAQKNFdXtgaDkq3wKYRiOnBSPeG7wqcNPY7N5PrLhBc"
        "8YRJYwRv.A0RUh9HEbDm5kBdGgSClcSp4zGYlPTbvJHmxJmt",
        "signature": "SSSbLO/gBhmmyNUvN18ODBDFYHzakxOMgqYtu+hDPsc=",
        "scope": "refresh_token api",
        "instance_url": INSTANCE,
        "id": IDENTITY,
        "token_type": "Bearer",
        "issued_at": "1558553873237",
    }
    refreshed_access_token = refresh_response["access_token"]

    # Web Server Flow, errors: RFC 6749 §5.2 with HTTP 400.
    error_response = {
        "error": "invalid_grant",
        "error_description": "authentication failure",
    }

    def test_instance_url_is_kept_through_a_refresh(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        self.test_refresh_request_and_what_is_stored(browser, endpoint)
        assert get_token_values("acme")["instance_url"] == INSTANCE

    def test_a_sandbox_logs_in_at_test_salesforce_com(
        self, browser: Client, client: Any
    ) -> None:
        client.provider_options = {"url_values": {"domain": "test"}}
        client.save()
        response = browser.post("/oauth2/acme/login/")
        assert response["Location"].startswith(
            "https://test.salesforce.com/services/oauth2/authorize?"
        )
