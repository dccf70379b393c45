"""Atlassian (Jira, Confluence), from
https://developer.atlassian.com/cloud/oauth/getting-started/implementing-oauth-3lo.

The authorization URL carries ``audience=api.atlassian.com`` and
``prompt=consent``; ``offline_access`` must be requested for a refresh token
(always added). The token request is a JSON body with the client id and secret
in it. Refresh tokens rotate: "You receive a new refresh token as well and the
refresh token you used for the request is disabled"
(https://developer.atlassian.com/cloud/oauth/getting-started/refresh-tokens).
"""

from __future__ import annotations

from .mixin import ProviderFlowTests


class TestAtlassian(ProviderFlowTests):
    provider = "atlassian"
    authorization_endpoint = "https://auth.atlassian.com/authorize"
    authorize_params = {
        "audience": "api.atlassian.com",
        "client_id": "<client_id>",
        "scope": "read:me offline_access",
        "redirect_uri": "<redirect_uri>",
        "response_type": "code",
        "prompt": "consent",
    }
    token_url = "https://auth.atlassian.com/oauth/token"
    token_body_format = "json"
    # "Exchange authorization code for access token": a JSON body.
    token_body = {
        "grant_type": "authorization_code",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
    }
    # The documented answer: access_token, expires_in, scope (+ refresh_token
    # with offline_access); values invented.
    token_response = {
        "access_token": "eyJraWQiOiJhdGxhc3NpYW4tYWNjZXNzLXRva2VuIn0.atlassian-access",
        "refresh_token": "eyJraWQiOiJhdGxhc3NpYW4tcmVmcmVzaC10b2tlbiJ9.atlassian-refresh",
        "expires_in": 3600,
        "scope": "read:me offline_access",
    }
    stored_access_token = token_response["access_token"]
    stored_refresh_token = token_response["refresh_token"]
    stored_expires_in = 3600
    stored_scope = "read:me offline_access"

    # "Use a refresh token to get another access token": a JSON body.
    refresh_url = "https://auth.atlassian.com/oauth/token"
    refresh_body = {
        "grant_type": "refresh_token",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
        "refresh_token": "<refresh_token>",
    }
    refresh_response = {
        "access_token": "eyJraWQiOiJhdGxhc3NpYW4tYWNjZXNzLXRva2VuIn0.atlassian-access-2",
        "refresh_token": "eyJraWQiOiJhdGxhc3NpYW4tcmVmcmVzaC10b2tlbiJ9.atlassian-refresh-2",
        "expires_in": 3600,
        "scope": "read:me offline_access",
    }
    refreshed_access_token = refresh_response["access_token"]
    # The rotated refresh token replaces the disabled one.
    refreshed_refresh_token = refresh_response["refresh_token"]

    # The documented error of the token endpoint (refresh-tokens page): 403.
    error_status = 403
    error_response = {
        "error": "invalid_grant",
        "error_description": "Unknown or invalid refresh token.",
    }
