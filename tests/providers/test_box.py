"""Box, from https://developer.box.com/guides/authentication/oauth2/without-sdk/.

The client authenticates in the form body (client_id and client_secret), the
token answer is JSON with ``token_type: "bearer"``; a refresh token is single
use and every refresh returns a new one, which must replace the stored one
(https://developer.box.com/guides/authentication/tokens/refresh/). Scopes are set
on the app in the developer console, so none is requested by default.
"""

from __future__ import annotations

from .mixin import ProviderFlowTests


class TestBox(ProviderFlowTests):
    provider = "box"
    authorization_endpoint = "https://account.box.com/api/oauth2/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
    }
    token_url = "https://api.box.com/oauth2/token"
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # "Token Object", https://developer.box.com/guides/authentication/tokens/access-tokens/
    token_response = {
        "access_token": "c3FIOG9vSGV4VHo4QzAyg5T1JvNnJoZ3ExaVNyQWw6WjRsanRKZG5lQk9qUE1BVQ",
        "expires_in": 3600,
        "token_type": "bearer",
        "refresh_token": "c3FIOG9vSGV4VHo4QzAyg5T1JvNnJoZ3ExaVNyQWw6WjRsanRKZG5lQk9qUE1BVQ",
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }
    stored_access_token = token_response["access_token"]
    stored_refresh_token = token_response["refresh_token"]
    stored_expires_in = 3600

    # "Refresh a Token", https://developer.box.com/guides/authentication/tokens/refresh/
    refresh_url = "https://api.box.com/oauth2/token"
    refresh_body = {
        "grant_type": "refresh_token",
        "refresh_token": "<refresh_token>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # The same token object, with a new (single-use) refresh token.
    refresh_response = {
        "access_token": "box-refreshed-access-token-after-one-hour",
        "expires_in": 3600,
        "token_type": "bearer",
        "refresh_token": "box-next-single-use-refresh-token",
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }
    refreshed_access_token = "box-refreshed-access-token-after-one-hour"
    refreshed_refresh_token = "box-next-single-use-refresh-token"

    # Box's answer to an expired code (Box Developer Advocate, official comment:
    # https://support.box.com/hc/en-us/community/posts/1500000380082).
    error_response = {
        "error": "invalid_grant",
        "error_description": "The authorization code has expired",
    }
