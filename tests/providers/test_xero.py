"""Xero, from https://developer.xero.com/documentation/guides/oauth2/auth-flow/.

``offline_access`` must be requested for a refresh token (always added). The
token endpoint takes HTTP Basic with the client id and secret. Access tokens
live 30 minutes. Refresh tokens rotate: "When you perform a token refresh, you
should replace your existing refresh token with the new one returned in the
response" (https://developer.xero.com/faq/oauth2); an unused one expires after
60 days.

The auth-flow page itself was not in the documentation search index: the request
formats follow Xero's FAQ and SDKs, and the answers use the fields of the
``AccessToken`` schema of Xero's identity OpenAPI description
(https://github.com/XeroAPI/Xero-OpenAPI, ``xero-identity.yaml``) with invented
values.
"""

from __future__ import annotations

from .mixin import ProviderFlowTests

SCOPE = "openid profile email accounting.transactions offline_access"


class TestXero(ProviderFlowTests):
    provider = "xero"
    authorization_endpoint = "https://login.xero.com/identity/connect/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": SCOPE,
    }
    token_url = "https://identity.xero.com/connect/token"
    # Basic authentication; grant_type, code and redirect_uri in the body.
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
    }
    token_auth = "basic"
    # id_token, access_token, expires_in, token_type, refresh_token (+ scope).
    token_response = {
        "id_token": "eyJhbGciOiJSUzI1NiIsImtpZCI6IjFDQUY4RTY2NzcyRDZEQzAyOEQ2NzI2RkQwMjYxNTgxNTcwRUZDMTkiLCJ0eXAiOiJKV1QifQ.xero-id-token",
        "access_token": "eyJhbGciOiJSUzI1NiIsImtpZCI6IjFDQUY4RTY2NzcyRDZEQzAyOEQ2NzI2RkQwMjYxNTgxNTcwRUZDMTkiLCJ0eXAiOiJKV1QifQ.xero-access-token",
        "expires_in": 1800,
        "token_type": "Bearer",
        "refresh_token": "f6a5c1e0d9b84c3b9a0e2d7f6c5b4a39",
        "scope": SCOPE,
    }
    stored_access_token = token_response["access_token"]
    stored_refresh_token = "f6a5c1e0d9b84c3b9a0e2d7f6c5b4a39"
    stored_expires_in = 1800
    stored_scope = SCOPE

    # Basic authentication; grant_type=refresh_token and refresh_token.
    refresh_url = "https://identity.xero.com/connect/token"
    refresh_body = {"grant_type": "refresh_token", "refresh_token": "<refresh_token>"}
    refresh_auth = "basic"
    refresh_response = {
        "id_token": "eyJhbGciOiJSUzI1NiIsImtpZCI6IjFDQUY4RTY2NzcyRDZEQzAyOEQ2NzI2RkQwMjYxNTgxNTcwRUZDMTkiLCJ0eXAiOiJKV1QifQ.xero-id-token-2",
        "access_token": "eyJhbGciOiJSUzI1NiIsImtpZCI6IjFDQUY4RTY2NzcyRDZEQzAyOEQ2NzI2RkQwMjYxNTgxNTcwRUZDMTkiLCJ0eXAiOiJKV1QifQ.xero-access-token-2",
        "expires_in": 1800,
        "token_type": "Bearer",
        "refresh_token": "0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a",
        "scope": SCOPE,
    }
    refreshed_access_token = refresh_response["access_token"]
    # The rotated refresh token replaces the stored one.
    refreshed_refresh_token = "0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a"

    # A used or expired code: RFC 6749's invalid_grant, HTTP 400.
    error_response = {"error": "invalid_grant"}
