"""Spotify, from https://developer.spotify.com/documentation/web-api/tutorials/code-flow
and https://developer.spotify.com/documentation/web-api/tutorials/refreshing-tokens.

The token endpoint wants HTTP Basic ("Authorization: Basic <base64 client_id:
client_secret>") and a form body; PKCE is supported. A refresh answer may carry a
new refresh token (kept) or none ("continue using the existing token").
"""

from __future__ import annotations

import datetime

import responses
from django.test import Client
from django.utils import timezone

from oauth2_integrator import get_access_token
from oauth2_integrator.models import OAuth2Token

from .mixin import STORED_REFRESH, ProviderFlowTests

TOKEN_URL = "https://accounts.spotify.com/api/token"


class TestSpotify(ProviderFlowTests):
    provider = "spotify"
    authorization_endpoint = "https://accounts.spotify.com/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "user-read-email",
    }
    token_url = TOKEN_URL
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
    }
    token_auth = "basic"
    # code-flow, "Response" of "Request an access token".
    token_response = {
        "access_token": "NgCXRK...MzYjw",
        "token_type": "Bearer",
        "scope": "user-read-private user-read-email",
        "expires_in": 3600,
        "refresh_token": "NgAagA...Um_SHo",
    }
    stored_access_token = "NgCXRK...MzYjw"
    stored_refresh_token = "NgAagA...Um_SHo"
    stored_expires_in = 3600
    stored_scope = "user-read-private user-read-email"

    refresh_url = TOKEN_URL
    refresh_body = {"grant_type": "refresh_token", "refresh_token": "<refresh_token>"}
    refresh_auth = "basic"
    # refreshing-tokens, "Response": here with a new refresh token, which is kept.
    refresh_response = {
        "access_token": "BQBLuPRYBQ...BP8stIv5xr-Iwaf4l8eg",
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": "AQAQfyEFmJJuCvAFh...cG_m-2KTgNDaDMQqjrOa3",
        "scope": "user-read-email user-read-private",
    }
    refreshed_access_token = "BQBLuPRYBQ...BP8stIv5xr-Iwaf4l8eg"
    refreshed_refresh_token = "AQAQfyEFmJJuCvAFh...cG_m-2KTgNDaDMQqjrOa3"

    # code-flow: an RFC 6749 §5.2 error answer.
    error_response = {
        "error": "invalid_grant",
        "error_description": "Invalid authorization code",
    }

    def test_a_refresh_without_refresh_token_keeps_the_stored_one(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        token = self.connect(browser, endpoint)
        token.refresh_token = STORED_REFRESH
        token.expires_at = timezone.now() - datetime.timedelta(seconds=5)
        token.save()
        answer = {k: v for k, v in self.refresh_response.items()}
        del answer["refresh_token"]
        endpoint.add("POST", TOKEN_URL, json=answer)

        assert get_access_token("acme") == self.refreshed_access_token
        assert OAuth2Token.objects.get().refresh_token == STORED_REFRESH
