"""Slack (user token and bot token), from Slack's documentation.

- https://docs.slack.dev/authentication/installing-with-oauth (the v2 flow:
  ``scope`` for the bot, ``user_scope`` for the user, comma-separated; the
  ``oauth.v2.access`` answer with the user token nested under ``authed_user``)
- https://docs.slack.dev/reference/methods/oauth.v2.access (the method, its
  example answer and ``"ok": false`` errors, which come with HTTP 200)
- https://docs.slack.dev/authentication/using-token-rotation (refresh with
  ``grant_type=refresh_token`` when token rotation is on; the refreshed token
  comes at the top level, as in Slack's own SDKs' token rotators)

Slack's ``token_type`` is ``"user"`` or ``"bot"``; both tokens are used as Bearer
tokens (``Authorization: Bearer xoxp-...``).
"""

from __future__ import annotations

import json
from typing import Any

import responses
from django.test import Client

from .mixin import ProviderFlowTests

TOKEN_URL = "https://slack.com/api/oauth.v2.access"

#: oauth.v2.access, "Example response" (identical on installing-with-oauth).
DOCUMENTED_ANSWER: dict[str, Any] = {
    "ok": True,
    "access_token": "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
    "token_type": "bot",
    "scope": "commands,incoming-webhook",
    "bot_user_id": "U0KRQLJ9H",
    "app_id": "A0KRD7HC3",
    "team": {"name": "Slack Softball Team", "id": "T9TK3CUKW"},
    "enterprise": {"name": "slack-sports", "id": "E12345678"},
    "authed_user": {
        "id": "U1234",
        "scope": "chat:write",
        "access_token": "xoxp-1234",
        "token_type": "user",
    },
}

#: oauth.v2.access, "Errors": ok false, HTTP 200.
DOCUMENTED_ERROR = {"ok": False, "error": "invalid_code"}


class TestSlackUserToken(ProviderFlowTests):
    stored_account_name = "Slack Softball Team"  # account_fields: team.name
    provider = "slack"
    # Slack has no default scope: the operator enters the user scopes.
    client_fields = {"scope": "chat:write channels:read"}
    pkce = False

    authorization_endpoint = "https://slack.com/oauth/v2/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "user_scope": "chat:write,channels:read",
    }
    token_url = TOKEN_URL
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    token_response = DOCUMENTED_ANSWER
    # The user token from authed_user, never the bot token next to it.
    stored_access_token = "xoxp-1234"
    stored_refresh_token = ""
    stored_expires_in = None
    stored_scope = "chat:write"

    # using-token-rotation: the rotated user token at the top level.
    refresh_url = TOKEN_URL
    refresh_body = {
        "grant_type": "refresh_token",
        "refresh_token": "<refresh_token>",
        "client_id": "<client_id>",
        "client_secret": "<client_secret>",
    }
    refresh_response = {
        "ok": True,
        "access_token": "xoxe.xoxp-1-Mi0yLTEyMzQ",
        "token_type": "user",
        "expires_in": 43200,
        "refresh_token": "xoxe-1-My0xLTEyMzQ",
        "scope": "chat:write",
    }
    refreshed_access_token = "xoxe.xoxp-1-Mi0yLTEyMzQ"
    refreshed_refresh_token = "xoxe-1-My0xLTEyMzQ"

    error_status = 200
    error_response = DOCUMENTED_ERROR

    def test_the_bot_token_next_to_the_user_token_is_not_kept(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        token = self.connect(browser, endpoint)
        assert token.token_type == "Bearer"
        assert "xoxb-" not in json.dumps(token.extra)
        assert token.extra["team"] == {"name": "Slack Softball Team", "id": "T9TK3CUKW"}


class TestSlackBotToken(ProviderFlowTests):
    provider = "slack-bot"
    client_fields = {"scope": "commands incoming-webhook"}
    pkce = False

    authorization_endpoint = "https://slack.com/oauth/v2/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "scope": "commands,incoming-webhook",
    }
    token_url = TOKEN_URL
    token_body = TestSlackUserToken.token_body
    token_response = DOCUMENTED_ANSWER
    stored_access_token = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
    stored_refresh_token = ""
    stored_expires_in = None
    stored_scope = "commands incoming-webhook"  # the comma becomes a space
    stored_values = {"bot_user_id": "U0KRQLJ9H", "app_id": "A0KRD7HC3"}
    stored_account_name = "Slack Softball Team"  # account_fields: team.name

    error_status = 200
    error_response = DOCUMENTED_ERROR
