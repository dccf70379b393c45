"""Discord, from https://discord.com/developers/docs/topics/oauth2.

The documented token requests authenticate with HTTP Basic (the examples pass
``auth=(CLIENT_ID, CLIENT_SECRET)``) and send a form body; PKCE is supported.
Access tokens live about seven days (604800 s).
"""

from __future__ import annotations

from .mixin import ProviderFlowTests

TOKEN_URL = "https://discord.com/api/oauth2/token"


class TestDiscord(ProviderFlowTests):
    provider = "discord"
    authorization_endpoint = "https://discord.com/oauth2/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "identify",
    }
    token_url = TOKEN_URL
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
    }
    token_auth = "basic"
    # "Authorization Code Grant", "Access Token Response".
    token_response = {
        "access_token": "6qrZcUqja7812RVdnEKjpzOL4CvHBFG",
        "token_type": "Bearer",
        "expires_in": 604800,
        "refresh_token": "D43f5y0ahjqew82jZ4NViEr2YafMKhue",
        "scope": "identify",
    }
    stored_access_token = "6qrZcUqja7812RVdnEKjpzOL4CvHBFG"
    stored_refresh_token = "D43f5y0ahjqew82jZ4NViEr2YafMKhue"
    stored_expires_in = 604800
    stored_scope = "identify"

    refresh_url = TOKEN_URL
    # "Refresh Token Exchange Example": grant_type and refresh_token, Basic.
    refresh_body = {"grant_type": "refresh_token", "refresh_token": "<refresh_token>"}
    refresh_auth = "basic"
    # The refresh answer has the shape of the Access Token Response (new pair).
    refresh_response = {
        "access_token": "9dDaPtDu5xSJEUzVaQSjpCmbZBm5WS",
        "token_type": "Bearer",
        "expires_in": 604800,
        "refresh_token": "Fw7KMDsWrNs3IuDFRFrJd7E0xo4d6G",
        "scope": "identify",
    }
    refreshed_access_token = "9dDaPtDu5xSJEUzVaQSjpCmbZBm5WS"
    refreshed_refresh_token = "Fw7KMDsWrNs3IuDFRFrJd7E0xo4d6G"

    # The page shows no error example; Discord answers RFC 6749 §5.2 errors.
    error_response = {
        "error": "invalid_grant",
        "error_description": 'Invalid "code" in request.',
    }
