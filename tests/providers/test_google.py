"""Google, from https://developers.google.com/identity/protocols/oauth2/web-server.

A refresh token comes only with ``access_type=offline`` and ``prompt=consent``;
the refresh answer has no ``refresh_token`` and the stored one is kept. The
client authenticates in the body (the documented form); PKCE is supported.
"""

from __future__ import annotations

from .mixin import ProviderFlowTests


class TestGoogle(ProviderFlowTests):
    provider = "google"
    authorization_endpoint = "https://accounts.google.com/o/oauth2/v2/auth"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "openid email",
        "access_type": "offline",
        "prompt": "consent",
    }
    token_url = "https://oauth2.googleapis.com/token"
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # The documented answer ("Step 5: Exchange authorization code for refresh and
    # access tokens").
    token_response = {
        "access_token": "1/fFAGRNJru1FTz70BzhT3Zg",
        "expires_in": 3920,
        "token_type": "Bearer",
        "scope": "https://www.googleapis.com/auth/drive.metadata.readonly openid",
        "refresh_token": "1//xEoDL4iW3cxlI7yDbSRFYNG01kVKM2C-259HOF2aQbI",
    }
    stored_access_token = "1/fFAGRNJru1FTz70BzhT3Zg"
    stored_refresh_token = "1//xEoDL4iW3cxlI7yDbSRFYNG01kVKM2C-259HOF2aQbI"
    stored_expires_in = 3920
    stored_scope = "https://www.googleapis.com/auth/drive.metadata.readonly openid"

    refresh_url = "https://oauth2.googleapis.com/token"
    refresh_body = {
        "grant_type": "refresh_token",
        "refresh_token": "<refresh_token>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # "Refreshing an access token (offline access)": no refresh_token comes back.
    refresh_response = {
        "access_token": "1/fFAGRNJru1FQd77BzhT3Zg",
        "expires_in": 3920,
        "scope": "https://www.googleapis.com/auth/drive.metadata.readonly",
        "token_type": "Bearer",
    }
    refreshed_access_token = "1/fFAGRNJru1FQd77BzhT3Zg"

    error_response = {"error": "invalid_grant", "error_description": "Bad Request"}
