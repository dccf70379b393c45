"""Reddit, from https://github.com/reddit-archive/reddit/wiki/OAuth2.

A refresh token only with ``duration=permanent`` (set by the profile); the token
endpoint wants HTTP Basic with the client id and secret and a form body; Reddit
asks every client for a descriptive User-Agent, which an operator sets with the
``token_headers`` provider option (shown here). The wiki lists no PKCE parameters;
the profile sends them (a rejection could not be checked in the documentation).
"""

from __future__ import annotations

from .mixin import ProviderFlowTests

TOKEN_URL = "https://www.reddit.com/api/v1/access_token"
USER_AGENT = "web:com.example.acme:v1.2.3 (by /u/acme_dev)"


class TestReddit(ProviderFlowTests):
    provider = "reddit"
    client_fields = {"provider_options": {"token_headers": {"User-Agent": USER_AGENT}}}
    authorization_endpoint = "https://www.reddit.com/api/v1/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "identity",
        "duration": "permanent",
    }
    token_url = TOKEN_URL
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
    }
    token_auth = "basic"
    token_headers = {"User-Agent": USER_AGENT}
    # "Retrieving the access token": the documented fields (the wiki's
    # "expires_in" placeholder is a lifetime in seconds, one hour).
    token_response = {
        "access_token": "2643784-cO4Mzrl7mWHbM8GxU0tFbUlb8OBY",
        "token_type": "bearer",
        "expires_in": 3600,
        "scope": "identity",
        "refresh_token": "2643784-YrAkqSk4jPg0xqpKblUdQ4tlg6A",
    }
    stored_access_token = "2643784-cO4Mzrl7mWHbM8GxU0tFbUlb8OBY"
    stored_refresh_token = "2643784-YrAkqSk4jPg0xqpKblUdQ4tlg6A"
    stored_expires_in = 3600
    stored_scope = "identity"

    refresh_url = TOKEN_URL
    # "Refreshing the token": grant_type=refresh_token&refresh_token=TOKEN, Basic.
    refresh_body = {"grant_type": "refresh_token", "refresh_token": "<refresh_token>"}
    refresh_auth = "basic"
    refresh_headers = {"User-Agent": USER_AGENT}
    refresh_response = {
        "access_token": "2643784-Xh4QFzHdKk0n0hq2mVWr0mX6Yx8",
        "token_type": "bearer",
        "expires_in": 3600,
        "scope": "identity",
    }
    refreshed_access_token = "2643784-Xh4QFzHdKk0n0hq2mVWr0mX6Yx8"

    # "Retrieving the access token", errors: invalid_grant for an expired or used
    # code, reported in the JSON body with HTTP 200 (as client libraries such as
    # prawcore handle it), so it must not be stored as a token.
    error_status = 200
    error_response = {"error": "invalid_grant"}
