"""X (Twitter), from
https://docs.x.com/resources/fundamentals/authentication/oauth-2-0/user-access-token
and https://docs.x.com/resources/fundamentals/authentication/oauth-2-0/authorization-code.

PKCE is required; a refresh token comes only with the ``offline.access`` scope
(always added by the profile); confidential clients authenticate with HTTP Basic
at the token endpoint. Access tokens live two hours; each refresh returns a new
refresh token, which replaces the stored one.
"""

from __future__ import annotations

from .mixin import ProviderFlowTests

TOKEN_URL = "https://api.x.com/2/oauth2/token"


class TestTwitter(ProviderFlowTests):
    provider = "twitter"
    authorization_endpoint = "https://x.com/i/oauth2/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "tweet.read users.read offline.access",
    }
    pkce = True
    token_url = TOKEN_URL
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
    }
    token_auth = "basic"
    # The documented answer's fields ("Step 3"; the page shows no full example, so
    # the values are illustrative): 7200 s, the granted scopes space-separated.
    token_response = {
        "token_type": "bearer",
        "expires_in": 7200,
        "access_token": "VGNibzFWSWREZm01bjN1N3dicWlNUG1oa2xRRVNNdmVHelJGY2hWeXNQRnFIOjE2MjIxNDc3NDM5MTQ6MToxOmF0OjE",
        "scope": "tweet.read users.read offline.access",
        "refresh_token": "bWRWa3gzdnk3WHRGU1o0bmRRcTJ5VUxWX1lZTDdJSUtmaWcxbTVxdEFXcW5tOjE2MjIxNDc3NDM5MTQ6MToxOnJ0OjE",
    }
    stored_access_token = token_response["access_token"]
    stored_refresh_token = token_response["refresh_token"]
    stored_expires_in = 7200
    stored_scope = "tweet.read users.read offline.access"

    refresh_url = TOKEN_URL
    # "Refresh tokens": grant_type=refresh_token and the refresh token (the page's
    # public-client example adds client_id; a confidential client uses Basic).
    refresh_body = {"grant_type": "refresh_token", "refresh_token": "<refresh_token>"}
    refresh_auth = "basic"
    refresh_response = {
        "token_type": "bearer",
        "expires_in": 7200,
        "access_token": "TnVmVk1xa0NPVTdjUWpGaDJtQUhqN0xiMkRHUERrYnJUcUZ2TkhMNWxkNlVhOjE2MjIxNDc3NDM5MTQ6MToxOmF0OjE",
        "scope": "tweet.read users.read offline.access",
        "refresh_token": "Y2ZHZ0VrZFFJclFNVnZhQWxHcE5xNnhpN0s3Q0JUSTFXbXVRdVdiQ1lvYVhxOjE2MjIxNDc3NDM5MTQ6MToxOnJ0OjE",
    }
    refreshed_access_token = refresh_response["access_token"]
    refreshed_refresh_token = refresh_response["refresh_token"]

    # No error example on the pages: the RFC 6749 §5.2 answer X gives to a bad or
    # used code.
    error_response = {
        "error": "invalid_request",
        "error_description": "Value passed for the authorization code was invalid.",
    }
