"""Strava, from https://developers.strava.com/docs/authentication/ and, for the
error format, "Errors" on https://developers.strava.com/docs/.

Scopes are comma-separated; the athlete may untick some, and the granted ones come
back in the callback's ``scope`` (kept with the token). The client id and secret go
in the body. Token answers carry ``expires_at`` (epoch seconds) next to
``expires_in``; each refresh may return a new refresh token (the newest is kept).
The documentation lists no PKCE parameters; the profile sends them (a rejection
could not be checked there).
"""

from __future__ import annotations

import datetime

import responses
from django.test import Client
from django.utils import timezone

from oauth2_integrator.models import OAuth2Token

from .mixin import ProviderFlowTests

TOKEN_URL = "https://www.strava.com/oauth/token"


class TestStrava(ProviderFlowTests):
    provider = "strava"
    authorization_endpoint = "https://www.strava.com/oauth/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "read,activity:read",
        "approval_prompt": "auto",
    }
    # "Details About Requesting Access": the accepted scopes, comma-separated.
    callback_params = {"scope": "read,activity:read"}
    token_url = TOKEN_URL
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    # "Token Exchange", example response (the athlete summary shortened).
    token_response = {
        "token_type": "Bearer",
        "expires_at": 1568775134,
        "expires_in": 21600,
        "refresh_token": "e5n567567...",
        "access_token": "a4b945687g...",
        "athlete": {"id": 1234567890987654321, "username": "MeowTheCat"},
    }
    stored_access_token = "a4b945687g..."
    stored_refresh_token = "e5n567567..."
    stored_expires_in = 21600
    stored_values = {"scope": "read,activity:read"}

    refresh_url = TOKEN_URL
    # "Refreshing Expired Access Tokens": id, secret, grant_type and refresh_token.
    refresh_body = {
        "grant_type": "refresh_token",
        "refresh_token": "<refresh_token>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    refresh_response = {
        "access_token": "a9b723...",
        "expires_at": 1568775134,
        "expires_in": 20566,
        "refresh_token": "b5c569...",
        "token_type": "Bearer",
    }
    refreshed_access_token = "a9b723..."
    refreshed_refresh_token = "b5c569..."

    # "Errors": a message and an errors[] list of {resource, field, code}.
    error_response = {
        "message": "Bad Request",
        "errors": [
            {"resource": "AuthorizationCode", "field": "code", "code": "invalid"}
        ],
    }

    def test_expires_at_alone_sets_the_expiry(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        # Strava's absolute expires_at (epoch seconds) is read when expires_in is
        # missing, so a token answered that way does not live forever.
        at = timezone.now() + datetime.timedelta(hours=6)
        answer = {k: v for k, v in self.token_response.items() if k != "expires_in"}
        answer["expires_at"] = int(at.timestamp())
        query = self.login(browser)
        endpoint.add("POST", TOKEN_URL, json=answer)
        assert self.call_back(browser, query).status_code == 302

        expires_at = OAuth2Token.objects.get().expires_at
        assert expires_at is not None
        assert abs((expires_at - at).total_seconds()) < 5

    def test_the_error_list_names_the_problem(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        query = self.login(browser)
        endpoint.add("POST", TOKEN_URL, json=self.error_response, status=400)
        response = self.call_back(browser, query)
        assert response.status_code == 400
        assert b"error &#x27;invalid&#x27;" in response.content
