"""Microsoft Entra ID, from the Microsoft identity platform's documentation.

- https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow
  (the protocol: tenant in the path, ``offline_access`` for a refresh token, the
  refresh request with ``scope``; AADSTS90009 without one)
- https://learn.microsoft.com/graph/auth-v2-user ("Get access on behalf of a user":
  the example token and refresh answers used below)

A refresh token comes only when ``offline_access`` is requested, so the profile
always adds it; a refresh request must carry a scope, so the granted one is sent.
The client authenticates in the body (``client_secret`` parameter), as documented.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.test import Client

from .mixin import ProviderFlowTests

TENANT = "contoso.onmicrosoft.com"
BASE = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0"


class TestMicrosoft(ProviderFlowTests):
    provider = "microsoft"
    # The tenant is a per-client value filled into the endpoint templates.
    client_fields = {"provider_options": {"url_values": {"tenant": TENANT}}}

    authorization_endpoint = f"{BASE}/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "openid email User.Read offline_access",
    }
    token_url = f"{BASE}/token"
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # auth-v2-user, "Token response" (tokens shortened there; the suffixes tell the
    # exchange's and the refresh's tokens apart).
    token_response = {
        "token_type": "Bearer",
        "scope": "User.Read Mail.Read",
        "expires_in": 3736,
        "ext_expires_in": 3736,
        "access_token": "eyJ0eXAiOiJKV1QiLCJub25jZSI6IkFRQUJBQUFBQUFEX0JHd1-first",
        "refresh_token": "AwABAAAAvPM1KaPlrEqdFSBzjqfTGAMxZGUTdM0t4B4-first",
    }
    stored_access_token = "eyJ0eXAiOiJKV1QiLCJub25jZSI6IkFRQUJBQUFBQUFEX0JHd1-first"
    stored_refresh_token = "AwABAAAAvPM1KaPlrEqdFSBzjqfTGAMxZGUTdM0t4B4-first"
    stored_expires_in = 3736
    stored_scope = "User.Read Mail.Read"

    refresh_url = f"{BASE}/token"
    # auth-v2-user, "Use the refresh token to get a new access token": the scope
    # is sent (the granted one), else Entra answers AADSTS90009.
    refresh_body = {
        "grant_type": "refresh_token",
        "refresh_token": "<refresh_token>",
        "scope": "User.Read Mail.Read",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    refresh_response = {
        "token_type": "Bearer",
        "scope": "User.Read Mail.Read",
        "expires_in": 3600,
        "ext_expires_in": 3600,
        "access_token": "eyJ0eXAiOiJKV1QiLCJub25jZSI6IkFRQUJBQUFBQUFEX0JHd1-second",
        "refresh_token": "AwABAAAAvPM1KaPlrEqdFSBzjqfTGAMxZGUTdM0t4B4-second",
    }
    refreshed_access_token = "eyJ0eXAiOiJKV1QiLCJub25jZSI6IkFRQUJBQUFBQUFEX0JHd1-second"
    refreshed_refresh_token = "AwABAAAAvPM1KaPlrEqdFSBzjqfTGAMxZGUTdM0t4B4-second"

    # v2-oauth2-auth-code-flow, "Error response" (trace and correlation ids cut).
    error_response = {
        "error": "invalid_scope",
        "error_description": "AADSTS70011: The provided value for the input "
        "parameter 'scope' is not valid. The scope https://foo.microsoft.com/"
        "mail.read is not valid.",
        "error_codes": [70011],
        "timestamp": "2016-01-09 02:02:12Z",
    }

    def test_offline_access_is_added_to_a_client_scope(
        self, browser: Client, client: Any
    ) -> None:
        client.scope = "Mail.Read"
        client.save()
        response = browser.post("/oauth2/acme/login/")
        query = dict(parse_qsl(urlsplit(response["Location"]).query))
        assert query["scope"] == "Mail.Read offline_access"

    def test_the_default_tenant_is_common(self, browser: Client, client: Any) -> None:
        client.provider_options = {}
        client.save()
        response = browser.post("/oauth2/acme/login/")
        assert response["Location"].startswith(
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize?"
        )
