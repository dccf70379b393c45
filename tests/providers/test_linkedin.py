"""LinkedIn, from
https://learn.microsoft.com/en-us/linkedin/shared/authentication/authorization-code-flow
and https://learn.microsoft.com/en-us/linkedin/shared/authentication/programmatic-refresh-tokens.

The client id and secret go in the form body (the documented request). Refresh
tokens are issued only to approved partners; their lifetime arrives as
``refresh_token_expires_in`` and is stored so the admin can warn before it ends.
The documented authorization request lists no PKCE parameters; the profile sends
them (LinkedIn's rejection of them could not be checked in the documentation).
"""

from __future__ import annotations

import datetime

import responses
from django.test import Client
from django.utils import timezone

from oauth2_integrator.models import OAuth2Token

from .mixin import ProviderFlowTests

TOKEN_URL = "https://www.linkedin.com/oauth/v2/accessToken"


class TestLinkedIn(ProviderFlowTests):
    provider = "linkedin"
    authorization_endpoint = "https://www.linkedin.com/oauth/v2/authorization"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "openid profile email",
    }
    token_url = TOKEN_URL
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # programmatic-refresh-tokens, "Step 1: Getting a Refresh Token": the fields of
    # the sample response (token values shortened); access tokens live 60 days,
    # refresh tokens a year, both in seconds.
    token_response = {
        "access_token": "AQUvlL_DYEzvT2wz1QJiEPeLioeA",
        "expires_in": 5184000,
        "refresh_token": "AQWAft_WjYZKwuWXLC5hQlghgTam-tuT8CvFej9-XxGyqeER",
        "refresh_token_expires_in": 31536000,
        "scope": "r_basicprofile",
    }
    stored_access_token = "AQUvlL_DYEzvT2wz1QJiEPeLioeA"
    stored_refresh_token = "AQWAft_WjYZKwuWXLC5hQlghgTam-tuT8CvFej9-XxGyqeER"
    stored_expires_in = 5184000
    stored_scope = "r_basicprofile"

    refresh_url = TOKEN_URL
    refresh_body = {
        "grant_type": "refresh_token",
        "refresh_token": "<refresh_token>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # programmatic-refresh-tokens, "Step 2: Exchanging a Refresh Token": a new
    # access token for 60 days; the refresh token keeps its first TTL (here on day
    # 59 of 365: 306 days left, the page's "Refresh Token Lifespan" example).
    refresh_response = {
        "access_token": "AQXNnd2kXITHELmWblJigbHEuoFdfRhOwGA0QNnumBI8XOVSs0Ht",
        "expires_in": 5184000,
        "refresh_token": "AQWAft_WjYZKwuWXLC5hQlghgTam-tuT8CvFej9-XxGyqeER",
        "refresh_token_expires_in": 26438400,
        "scope": "r_basicprofile",
    }
    refreshed_access_token = "AQXNnd2kXITHELmWblJigbHEuoFdfRhOwGA0QNnumBI8XOVSs0Ht"
    refreshed_refresh_token = "AQWAft_WjYZKwuWXLC5hQlghgTam-tuT8CvFej9-XxGyqeER"

    # authorization-code-flow, "Step 3: Exchange Authorization Code": error table.
    error_response = {
        "error": "invalid_request",
        "error_description": 'A required parameter "redirect_uri" is missing',
    }

    def test_the_refresh_token_lifetime_is_stored(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        before = timezone.now()
        self.connect(browser, endpoint)
        dies = OAuth2Token.objects.get().refresh_token_expires_at
        expected = before + datetime.timedelta(seconds=31536000)
        assert dies is not None
        assert abs((dies - expected).total_seconds()) < 5
