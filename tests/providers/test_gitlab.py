"""GitLab, from https://docs.gitlab.com/api/oauth2/ (OAuth 2.0 identity provider API).

The authorization code flow with PKCE: the authorization request, the code
exchange with ``client_id`` and ``client_secret`` as parameters, the documented
answer (access tokens live 2 hours, ``created_at`` next to ``expires_in``) and the
refresh, which returns a new refresh token each time (the old one is revoked).
"""

from __future__ import annotations

from .mixin import ProviderFlowTests

TOKEN_URL = "https://gitlab.com/oauth/token"


class TestGitLab(ProviderFlowTests):
    provider = "gitlab"
    authorization_endpoint = "https://gitlab.com/oauth/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "read_user",
    }
    token_url = TOKEN_URL
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # "Authorization code with PKCE flow", step 5 (example answer).
    token_response = {
        "access_token": "de6780bc506a0446309bd9362820ba8aed28aa506c71eedbe1c5c4f9dd350e54",
        "token_type": "bearer",
        "expires_in": 7200,
        "refresh_token": "8257e65c97202ed1726cf9571600918f3bffb2544b26e00a61df9897668c33a1",
        "created_at": 1607635748,
    }
    stored_access_token = token_response["access_token"]
    stored_refresh_token = token_response["refresh_token"]
    stored_expires_in = 7200

    refresh_url = TOKEN_URL
    refresh_body = {
        "grant_type": "refresh_token",
        "refresh_token": "<refresh_token>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # The refresh answers as the exchange does, with a new (rotated) refresh token.
    refresh_response = {
        "access_token": "c97d1fe52119f38c7f67f0a14db68d60caa35ddc86fd12401718b649dcfa9c68",
        "token_type": "bearer",
        "expires_in": 7200,
        "refresh_token": "803c1fd487fec35562c205dac93e9d8e08f9d3652a24079d704df3039df1158f",
        "created_at": 1628711391,
    }
    refreshed_access_token = refresh_response["access_token"]
    refreshed_refresh_token = refresh_response["refresh_token"]

    # Doorkeeper's RFC 6749 §5.2 answer, HTTP 400.
    error_response = {
        "error": "invalid_grant",
        "error_description": "The provided authorization grant is invalid, expired, "
        "revoked, does not match the redirection URI used in the authorization "
        "request, or was issued to another client.",
    }
