"""Intuit QuickBooks Online, from
https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/oauth-2.0.

The company arrives as ``realmId`` in the callback and is kept with the token.
The token endpoint takes HTTP Basic with the client id and secret and
``Accept: application/json``. Refresh tokens rotate: every refresh answer carries
a new one, which replaces the stored one, and ``x_refresh_token_expires_in``
(about 100 days) says when the refresh token dies.
"""

from __future__ import annotations

import datetime

import responses
from django.test import Client
from django.utils import timezone

from oauth2_integrator import get_access_token
from oauth2_integrator.models import OAuth2Token

from .mixin import ProviderFlowTests

REALM_ID = "4620816365178309400"


class TestQuickBooks(ProviderFlowTests):
    provider = "quickbooks"
    authorization_endpoint = "https://appcenter.intuit.com/connect/oauth2"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "com.intuit.quickbooks.accounting",
    }
    # The redirect carries code, state and realmId (the company).
    callback_params = {"realmId": REALM_ID}

    token_url = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
    }
    token_auth = "basic"
    token_headers = {"Accept": "application/json"}
    # Intuit's sample answer to the code exchange (access token shortened), as
    # quoted in https://nishujangra.github.io/intuit-go/docs/Auth.html; the OAuth
    # 2.0 page names the same fields.
    token_response = {
        "token_type": "bearer",
        "expires_in": 3600,
        "refresh_token": "Q311488394272qbajGfLBwGmVsbF6VoNpUKaIO5oL49aXLVJUB",
        "x_refresh_token_expires_in": 15551893,
        "access_token": "eJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0..KM1_Fezsm6BUSaqqfTedaA",
    }
    stored_access_token = token_response["access_token"]
    stored_refresh_token = "Q311488394272qbajGfLBwGmVsbF6VoNpUKaIO5oL49aXLVJUB"
    stored_expires_in = 3600
    stored_values = {"realmId": REALM_ID}

    # Refreshing: the same endpoint and authentication, grant_type=refresh_token.
    refresh_url = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    refresh_body = {"grant_type": "refresh_token", "refresh_token": "<refresh_token>"}
    refresh_auth = "basic"
    # A new refresh token comes back: the old one must not be kept.
    refresh_response = {
        "token_type": "bearer",
        "expires_in": 3600,
        "refresh_token": "Q011535008931rqveFweqmueq0GlOHhLPAFMp3NI2KJm5gbMMx",
        "x_refresh_token_expires_in": 8726400,
        "access_token": "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0..refreshed",
    }
    refreshed_access_token = refresh_response["access_token"]
    refreshed_refresh_token = "Q011535008931rqveFweqmueq0GlOHhLPAFMp3NI2KJm5gbMMx"

    # Intuit answers a used or expired code with RFC 6749's invalid_grant.
    error_response = {"error": "invalid_grant"}

    def test_refresh_token_lifetime_is_stored_and_renewed(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        before = timezone.now()
        token = self.connect(browser, endpoint)
        expected = before + datetime.timedelta(seconds=15551893)
        assert token.refresh_token_expires_at is not None
        assert abs((token.refresh_token_expires_at - expected).total_seconds()) < 5

        self.refresh(token, endpoint)
        fresh = OAuth2Token.objects.get()
        expected = timezone.now() + datetime.timedelta(seconds=8726400)
        assert fresh.refresh_token_expires_at is not None
        assert abs((fresh.refresh_token_expires_at - expected).total_seconds()) < 5
        # The company id from the callback survives the refresh.
        assert fresh.provider_values == {"realmId": REALM_ID}

    def refresh(self, token: OAuth2Token, endpoint: responses.RequestsMock) -> None:
        token.expires_at = timezone.now() - datetime.timedelta(seconds=5)
        token.save()
        self.answer(endpoint, "POST", self.refresh_url or "", self.refresh_response)
        assert get_access_token("acme") == self.refreshed_access_token
