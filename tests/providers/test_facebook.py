"""Facebook, from Facebook Login's documentation.

- https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow
  (Manually Build a Login Flow: the login dialog with comma-separated ``scope``,
  the code exchange at ``/oauth/access_token`` and its answer)
- https://developers.facebook.com/docs/facebook-login/guides/access-tokens/get-long-lived
  (no refresh tokens: a user token is exchanged for a long-lived one, about 60
  days, with ``grant_type=fb_exchange_token``, by GET as documented there)
- https://developers.facebook.com/docs/graph-api/guides/error-handling (errors as an
  ``error`` object with ``message``, ``type``, ``code``, ``fbtrace_id``)

Facebook documents the code exchange as a GET with the parameters in the query;
the profile POSTs the same parameters in a form body, which the Graph API accepts
(Passport's OAuth 2.0 guide shows that request:
https://passportjs.org/concepts/oauth2/token), so the secret stays out of URLs.
"""

from __future__ import annotations

import datetime

import pytest
import responses
from django.test import Client
from django.utils import timezone

from oauth2_integrator import get_access_token
from oauth2_integrator.exceptions import AuthorizationRequired
from oauth2_integrator.models import OAuth2Token

from .mixin import ProviderFlowTests

GRAPH = "https://graph.facebook.com/v21.0"
SHORT_LIVED = "EAAGm0PX4ZCpsBAExampleShortLivedUserToken"


class TestFacebook(ProviderFlowTests):
    provider = "facebook"
    authorization_endpoint = "https://www.facebook.com/v21.0/dialog/oauth"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "public_profile,email",
    }
    token_url = f"{GRAPH}/oauth/access_token"
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # manual-flow, "Exchanging Code for an Access Token": {"access_token":
    # {access-token}, "token_type": {type}, "expires_in": {seconds-til-expiration}}.
    token_response = {
        "access_token": SHORT_LIVED,
        "token_type": "bearer",
        "expires_in": 5183944,
    }
    stored_access_token = SHORT_LIVED
    stored_refresh_token = ""
    stored_expires_in = 5183944

    # get-long-lived: GET with the app's id and secret and the token itself.
    renewal = True
    refresh_method = "GET"
    refresh_url = f"{GRAPH}/oauth/access_token"
    refresh_body = {
        "grant_type": "fb_exchange_token",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
        "fb_exchange_token": SHORT_LIVED,
    }
    refresh_response = {
        "access_token": "EAAGm0PX4ZCpsBAExampleLongLivedUserToken",
        "token_type": "bearer",
        "expires_in": 5183944,
    }
    refreshed_access_token = "EAAGm0PX4ZCpsBAExampleLongLivedUserToken"

    # error-handling: an OAuthException for a used or expired code, HTTP 400.
    error_response = {
        "error": {
            "message": "This authorization code has been used.",
            "type": "OAuthException",
            "code": 100,
            "fbtrace_id": "AjvMdDyxaJcZ3Nt8Bt7Opxo",
        }
    }

    def test_an_expired_token_is_not_exchanged(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        token = self.connect(browser, endpoint)
        token.expires_at = timezone.now() - datetime.timedelta(seconds=5)
        token.save()
        endpoint.calls.reset()
        with pytest.raises(AuthorizationRequired):
            get_access_token("acme")
        assert not endpoint.calls

    def test_old_graph_versions_form_encoded_expires_is_read(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        # Graph API before v2.3 answered form-encoded, with ``expires``.
        query = self.login(browser)
        self.answer(
            endpoint,
            "POST",
            self.token_url,
            f"access_token={SHORT_LIVED}&expires=5183944",
        )
        before = timezone.now()
        assert self.call_back(browser, query).status_code == 302
        token = OAuth2Token.objects.get()
        expected = before + datetime.timedelta(seconds=5183944)
        assert abs((token.expires_at - expected).total_seconds()) < 5
