"""Zoom, from https://developers.zoom.us/docs/integrations/oauth/.

The token endpoint wants HTTP Basic ("Basic base64(client_id:client_secret)") and
a form body; PKCE is supported. Scopes are set on the app in the Zoom Marketplace,
so the authorization URL carries none. Access tokens live one hour; every refresh
returns a new refresh token and the old one stops working, so the new one must
replace it.
"""

from __future__ import annotations

from .mixin import ProviderFlowTests

TOKEN_URL = "https://zoom.us/oauth/token"


class TestZoom(ProviderFlowTests):
    provider = "zoom"
    authorization_endpoint = "https://zoom.us/oauth/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
    }
    token_url = TOKEN_URL
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
    }
    token_auth = "basic"
    # "Request an access token", example response (JWTs shortened).
    token_response = {
        "access_token": "eyJhbGciOiJIUzUxMiIsInYiOiIyLjAiLCJraWQiOiI8S0lEPiJ9.eyJ2ZXIi",
        "token_type": "bearer",
        "refresh_token": "eyJhbGciOiJIUzUxMiIsInYiOiIyLjAiLCJraWQiOiI8S0lEPiJ9.eyJ2ZXJ0",
        "expires_in": 3599,
        "scope": "user:read:admin",
    }
    stored_access_token = token_response["access_token"]
    stored_refresh_token = token_response["refresh_token"]
    stored_expires_in = 3599
    stored_scope = "user:read:admin"

    refresh_url = TOKEN_URL
    # "Refresh an access token": grant_type=refresh_token&refresh_token=..., Basic.
    refresh_body = {"grant_type": "refresh_token", "refresh_token": "<refresh_token>"}
    refresh_auth = "basic"
    refresh_response = {
        "access_token": "eyJhbGciOiJIUzUxMiIsInYiOiIyLjAiLCJraWQiOiI8S0lEPiJ9.bmV3QVQ",
        "token_type": "bearer",
        "refresh_token": "eyJhbGciOiJIUzUxMiIsInYiOiIyLjAiLCJraWQiOiI8S0lEPiJ9.bmV3UlQ",
        "expires_in": 3599,
        "scope": "user:read:admin",
    }
    refreshed_access_token = refresh_response["access_token"]
    refreshed_refresh_token = refresh_response["refresh_token"]

    # No error body was found on the page: Zoom's answer to an invalid or used
    # code, a "reason" next to the RFC 6749 §5.2 "error".
    error_response = {
        "reason": "Invalid authorization code",
        "error": "invalid_request",
    }
