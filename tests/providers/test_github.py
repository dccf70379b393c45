"""GitHub, from GitHub's documentation.

- https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps
  (the web application flow: the request, and the answer "by default" form-encoded,
  as JSON with ``Accept: application/json``; OAuth App tokens have no expiry)
- https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens
  (GitHub App user tokens: 8 hours, refreshed with a refresh token that itself
  expires, ``refresh_token_expires_in``)
- https://docs.github.com/en/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-oauth-app-access-token-request-errors
  (errors such as ``bad_verification_code`` come with HTTP 200)

The app sends ``Accept: application/json`` and reads the form-encoded default too;
an error answered with HTTP 200 is refused and nothing is stored.
"""

from __future__ import annotations

from typing import Any

import responses
from django.test import Client

from oauth2_integrator import get_access_token
from oauth2_integrator.models import OAuth2Token

from .mixin import ProviderFlowTests

TOKEN_URL = "https://github.com/login/oauth/access_token"


class TestGitHub(ProviderFlowTests):
    provider = "github"
    authorization_endpoint = "https://github.com/login/oauth/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "read:user",
    }
    token_url = TOKEN_URL
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    token_headers = {"Accept": "application/json"}
    # authorizing-oauth-apps, step 2, with "Accept: application/json". An OAuth App
    # token: no expires_in, no refresh token. The granted scope is comma-separated.
    token_response = {
        "access_token": "gho_16C7e42F292c6912E7710c838347Ae178B4a",
        "scope": "repo,gist",
        "token_type": "bearer",
    }
    stored_access_token = "gho_16C7e42F292c6912E7710c838347Ae178B4a"
    stored_refresh_token = ""
    stored_expires_in = None
    stored_scope = "repo,gist"

    # refreshing-user-access-tokens (GitHub Apps): a new refresh token comes back.
    refresh_url = TOKEN_URL
    refresh_body = {
        "grant_type": "refresh_token",
        "refresh_token": "<refresh_token>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    refresh_response = {
        "access_token": "ghu_16C7e42F292c6912E7710c838347Ae178B4a",
        "expires_in": 28800,
        "refresh_token": "ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C4"
        "6812d16D5B1A9Dc86A1498",
        "refresh_token_expires_in": 15811200,
        "scope": "",
        "token_type": "bearer",
    }
    refreshed_access_token = "ghu_16C7e42F292c6912E7710c838347Ae178B4a"
    refreshed_refresh_token = refresh_response["refresh_token"]

    # troubleshooting-oauth-app-access-token-request-errors, "Bad verification
    # code": GitHub answers it with HTTP 200.
    error_status = 200
    error_response = {
        "error": "bad_verification_code",
        "error_description": "The code passed is incorrect or expired.",
        "error_uri": "/apps/managing-oauth-apps/troubleshooting-oauth-app-access-"
        "token-request-errors/#bad-verification-code",
    }

    def exchange_answering(
        self, browser: Client, endpoint: responses.RequestsMock, body: str
    ) -> Any:
        query = self.login(browser)
        self.answer(endpoint, "POST", TOKEN_URL, body)  # a str: form-encoded
        return self.call_back(browser, query)

    def test_the_form_encoded_default_answer_is_read(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        # authorizing-oauth-apps: "By default, the response takes the following form".
        body = (
            "access_token=gho_16C7e42F292c6912E7710c838347Ae178B4a"
            "&scope=repo%2Cgist&token_type=bearer"
        )
        response = self.exchange_answering(browser, endpoint, body)
        assert response.status_code == 302, response.content
        token = OAuth2Token.objects.get()
        assert token.access_token == "gho_16C7e42F292c6912E7710c838347Ae178B4a"
        assert token.expires_at is None
        assert token.refresh_token == ""
        assert get_access_token("acme") == token.access_token

    def test_a_form_encoded_error_with_http_200_stores_nothing(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        body = (
            "error=bad_verification_code"
            "&error_description=The+code+passed+is+incorrect+or+expired."
        )
        response = self.exchange_answering(browser, endpoint, body)
        assert response.status_code == 400
        assert b"bad_verification_code" in response.content
        assert not OAuth2Token.objects.exists()

    def test_a_github_app_refresh_token_lifetime_is_stored(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        self.test_refresh_request_and_what_is_stored(browser, endpoint)
        token = OAuth2Token.objects.get()
        assert token.refresh_token_expires_at is not None
        lifetime = token.refresh_token_expires_at - token.updated_at
        assert abs(lifetime.total_seconds() - 15811200) < 60
