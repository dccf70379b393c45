"""HubSpot, from https://developers.hubspot.com/docs/api-reference/auth-oauth-v3/guide.

The authorization URL carries ``client_id``, ``scope`` (space-separated, ``oauth``
at least) and ``redirect_uri``
(https://developers.hubspot.com/docs/apps/legacy-apps/authentication/oauth-quickstart-guide).
Tokens come from the v3 endpoint ``/oauth/v3/token``: every parameter in a
form-encoded body, the client id and secret included; v1 (``/oauth/v1/token``)
is deprecated on 2027-02-16. Access tokens live 30 minutes; the refresh answer
repeats the refresh token. Errors are not RFC 6749 objects: a ``message`` and a
``category``, with HTTP 400.
"""

from __future__ import annotations

from .mixin import ProviderFlowTests


class TestHubSpot(ProviderFlowTests):
    provider = "hubspot"
    authorization_endpoint = "https://app.hubspot.com/oauth/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "oauth",
    }
    token_url = "https://api.hubapi.com/oauth/v3/token"
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # The token object of the OAuth guide ("Generate initial access and refresh
    # tokens"; field example values from the token response reference).
    token_response = {
        "token_type": "bearer",
        "refresh_token": "6f18f26a-3e95-4d95-a6e5-3d5c6e5c9e5a",
        "access_token": "CKDZpunPLhICAQEYs-gDIIGOBii1hQIyGQAf3xBKEgsYjYMJVvlHEz9tFHAwSq1TQAM40s0D",
        "expires_in": 1800,
    }
    stored_access_token = token_response["access_token"]
    stored_refresh_token = "6f18f26a-3e95-4d95-a6e5-3d5c6e5c9e5a"
    stored_expires_in = 1800

    # "Refresh an access token": grant_type, client_id, client_secret, refresh_token.
    refresh_url = "https://api.hubapi.com/oauth/v3/token"
    refresh_body = {
        "grant_type": "refresh_token",
        "refresh_token": "<refresh_token>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    refresh_response = {
        "token_type": "bearer",
        "refresh_token": "stored-refresh-token-for-provider-0000",
        "access_token": "CN2zlYnmLBICAQIYgZXFLyCWp1Yoy_9GMhkAgddk-zDc-H_rOad1X2s6Qv3fmG1spSY0",
        "expires_in": 1800,
    }
    refreshed_access_token = refresh_response["access_token"]

    # The error object of the v3 token endpoint reference
    # (https://developers.hubspot.com/docs/api-reference/legacy/authentication/oauth-tokens/create-oauth-token).
    error_response = {
        "message": "Invalid input (details will vary based on the error)",
        "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
        "category": "VALIDATION_ERROR",
        "links": {
            "knowledge-base": "https://www.hubspot.com/products/service/knowledge-base"
        },
    }
