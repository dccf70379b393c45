"""Dropbox, from Dropbox's documentation.

- https://developers.dropbox.com/oauth-guide (the OAuth guide: short-lived access
  tokens, a refresh token only with ``token_access_type=offline``, PKCE supported)
- https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token
  (``/oauth2/token``: the request, client authentication in the body or by HTTP
  Basic, and the example answers used below)
- https://dropbox.tech/developers/using-oauth-2-0-with-offline-access (the
  "offline" flow step by step; the refresh answer has no refresh token)

The profile authenticates with HTTP Basic (documented as an alternative to the
body parameters) and asks for ``token_access_type=offline``.
"""

from __future__ import annotations

from .mixin import ProviderFlowTests

TOKEN_URL = "https://api.dropboxapi.com/oauth2/token"


class TestDropbox(ProviderFlowTests):
    provider = "dropbox"
    # Dropbox scopes are set on the app in its console; none are needed here.
    authorization_endpoint = "https://www.dropbox.com/oauth2/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "token_access_type": "offline",
    }
    token_url = TOKEN_URL
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
    }
    token_auth = "basic"
    # /oauth2/token, "Sample response" with token_access_type=offline.
    token_response = {
        "access_token": "sl.AbX9y6Fe3AuH5o66-gmJpR032jwAwQPIVVzWXZNkdzcYT02akC2de219dZi"
        "6gxYPVnYPrpvISRSf9lxKWJzYLjtMPH-d9fo_0gXex7X37VIvpty4-G8f4-WX45AcEPfRnJJDwzv-",
        "expires_in": 14400,
        "token_type": "bearer",
        "scope": "account_info.read files.content.read files.content.write "
        "files.metadata.read",
        "refresh_token": "nBiM85CZALsAAAAAAAAAAQXHBoNpNutK4ngsXHsqW4iGz9tisb3JyjGqikMJIYbd",
        "account_id": "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc",
        "uid": "12345",
    }
    stored_access_token = token_response["access_token"]
    stored_refresh_token = token_response["refresh_token"]
    stored_expires_in = 14400
    stored_scope = (
        "account_info.read files.content.read files.content.write files.metadata.read"
    )
    stored_values = {"account_id": "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"}

    refresh_url = TOKEN_URL
    refresh_body = {"grant_type": "refresh_token", "refresh_token": "<refresh_token>"}
    refresh_auth = "basic"
    # /oauth2/token, "Sample response" for grant_type=refresh_token: no new
    # refresh token, the stored one stays.
    refresh_response = {
        "access_token": "sl.u.AbX9y6Fe3AuH5o66-gmJpR032jwAwQPIVVzWXZNkdzcYT02akC2de219d"
        "Zi6gxYPVnYPrpvISRSf9lxKWJzYLjtMPH-d9fo_0gXex7X37VIvpty4-G8f4-WX45AcEPfRnJJDwzv-",
        "expires_in": 14400,
        "token_type": "bearer",
    }
    refreshed_access_token = refresh_response["access_token"]

    error_response = {
        "error": "invalid_grant",
        "error_description": "code doesn't exist or has expired",
    }
