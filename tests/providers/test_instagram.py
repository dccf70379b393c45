"""Instagram (Instagram API with Instagram Login), from Meta's documentation.

- https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/business-login
  (the authorization request with comma-separated ``scope``, the code exchange by
  POST with the parameters in the form body, its ``data[]`` answer, and the
  exchange of the one-hour token for a 60-day one)
- https://developers.facebook.com/docs/instagram-platform/reference/access_token
  (GET ``graph.instagram.com/access_token``, ``grant_type=ig_exchange_token``)
- https://developers.facebook.com/docs/instagram-platform/reference/refresh_access_token
  (GET ``graph.instagram.com/refresh_access_token``, ``grant_type=ig_refresh_token``
  and the token itself: the renewal, no refresh token)

Not documented: whether Instagram accepts PKCE parameters (sent, as by default),
and the exact error body of a refused code exchange (the ``error_type`` /
``error_message`` shape below is the one Instagram's older APIs documented).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import responses
from django.test import Client
from django.utils import timezone

from oauth2_integrator.models import OAuth2Token

from .mixin import CLIENT_SECRET, ProviderFlowTests

EXCHANGE_URL = "https://graph.instagram.com/access_token"
SHORT_LIVED = "IGQVJYexampleShortLivedToken"
LONG_LIVED = "IGQVJWexampleLongLivedToken"


class TestInstagram(ProviderFlowTests):
    provider = "instagram"
    authorization_endpoint = "https://www.instagram.com/oauth/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "instagram_business_basic",
    }
    token_url = "https://api.instagram.com/oauth/access_token"
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # business-login, "Step 2: Exchange the code for a token" (sample answer).
    token_response = {
        "data": [
            {
                "access_token": SHORT_LIVED,
                "user_id": "1020000000000000",
                "permissions": "instagram_business_basic",
            }
        ]
    }
    # business-login, "Get a long-lived access token" (sample answer).
    follow_up_answers = [
        (
            "GET",
            EXCHANGE_URL,
            {"access_token": LONG_LIVED, "token_type": "bearer", "expires_in": 5183944},
        )
    ]
    stored_access_token = LONG_LIVED
    stored_refresh_token = ""
    stored_expires_in = 5183944
    stored_values = {"user_id": "1020000000000000"}

    renewal = True
    refresh_method = "GET"
    refresh_url = "https://graph.instagram.com/refresh_access_token"
    refresh_body = {"grant_type": "ig_refresh_token", "access_token": LONG_LIVED}
    # refresh_access_token reference (sample answer).
    refresh_response = {
        "access_token": "IGQVJWexampleRenewedToken",
        "token_type": "bearer",
        "expires_in": 5183944,
    }
    refreshed_access_token = "IGQVJWexampleRenewedToken"

    error_response = {
        "error_type": "OAuthException",
        "code": 400,
        "error_message": "Matching code was not found or was already used",
    }

    def test_the_short_lived_token_is_exchanged_by_get(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        self.connect(browser, endpoint)
        exchange = endpoint.calls[1].request
        assert exchange.method == "GET"
        assert exchange.url.split("?")[0] == EXCHANGE_URL
        assert dict(parse_qsl(urlsplit(exchange.url).query)) == {
            "grant_type": "ig_exchange_token",
            "client_secret": CLIENT_SECRET,
            "access_token": SHORT_LIVED,
        }

    def test_a_failed_exchange_keeps_the_short_lived_token(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        query = self.login(browser)
        self.answer(endpoint, "POST", self.token_url, self.token_response)
        self.answer(endpoint, "GET", EXCHANGE_URL, {"error": "x"}, status=400)
        assert self.call_back(browser, query).status_code == 302
        token = OAuth2Token.objects.get()
        assert token.access_token == SHORT_LIVED
        # It lives one hour (business-login), though the answer does not say so.
        lifetime = token.expires_at - timezone.now()
        assert 3500 < lifetime.total_seconds() <= 3600
