"""Notion, from https://developers.notion.com/docs/authorization,
https://developers.notion.com/reference/create-a-token and
https://developers.notion.com/reference/refresh-a-token.

The token endpoint wants HTTP Basic ("Basic <base64 client_id:client_secret>"), a
JSON body and a ``Notion-Version`` header; the authorization URL carries
``owner=user``. Access tokens have no ``expires_in``; newer integrations also get a
refresh token, which is replaced on every refresh. The workspace and bot ids are
kept with the token. The guide lists no PKCE parameters; the profile sends them (a
rejection could not be checked in the documentation).
"""

from __future__ import annotations

from .mixin import ProviderFlowTests

TOKEN_URL = "https://api.notion.com/v1/oauth/token"


class TestNotion(ProviderFlowTests):
    provider = "notion"
    authorization_endpoint = "https://api.notion.com/v1/oauth/authorize"
    authorize_params = {
        "response_type": "code",
        "client_id": "<client_id>",
        "redirect_uri": "<redirect_uri>",
        "owner": "user",
    }
    token_url = TOKEN_URL
    token_body = {
        "grant_type": "authorization_code",
        "code": "<code>",
        "redirect_uri": "<redirect_uri>",
    }
    token_body_format = "json"
    token_auth = "basic"
    token_headers = {"Notion-Version": "2022-06-28"}
    # create-a-token, 200 response (the values from the authorization guide's
    # example; the reference adds token_type and refresh_token).
    token_response = {
        "access_token": "e202e8c9-0990-40af-855f-ff8f872b1ec6c",
        "token_type": "bearer",
        "refresh_token": "nrt_4991090011501Ejc6Xn4sHguI7jZIN449mKe9PRhpMfNK",
        "bot_id": "b3414d659-1224-5ty7-6ffr-cc9d8773drt601288f",
        "duplicated_template_id": None,
        "owner": {"workspace": True},
        "workspace_icon": "https://website.domain/images/image.png",
        "workspace_id": "j565j4d7x3-2882-61bs-564a-jj9d9ui-c36hxfr7x",
        "workspace_name": "Ada's Notion Workspace",
    }
    stored_access_token = "e202e8c9-0990-40af-855f-ff8f872b1ec6c"
    stored_refresh_token = "nrt_4991090011501Ejc6Xn4sHguI7jZIN449mKe9PRhpMfNK"
    stored_expires_in = None
    stored_values = {
        "workspace_id": "j565j4d7x3-2882-61bs-564a-jj9d9ui-c36hxfr7x",
        "workspace_name": "Ada's Notion Workspace",
        "bot_id": "b3414d659-1224-5ty7-6ffr-cc9d8773drt601288f",
    }

    refresh_url = TOKEN_URL
    # refresh-a-token: JSON {"grant_type": "refresh_token", "refresh_token"}, Basic.
    refresh_body = {"grant_type": "refresh_token", "refresh_token": "<refresh_token>"}
    refresh_auth = "basic"
    refresh_headers = {"Notion-Version": "2022-06-28"}
    refresh_response = {
        "access_token": "ntn_5d2b1c0a-7f3e-4c1b-9a8d-2e6f4b3c1a90",
        "token_type": "bearer",
        "refresh_token": "nrt_77a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4",
        "bot_id": "b3414d659-1224-5ty7-6ffr-cc9d8773drt601288f",
        "workspace_id": "j565j4d7x3-2882-61bs-564a-jj9d9ui-c36hxfr7x",
        "workspace_name": "Ada's Notion Workspace",
    }
    refreshed_access_token = "ntn_5d2b1c0a-7f3e-4c1b-9a8d-2e6f4b3c1a90"
    refreshed_refresh_token = "nrt_77a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4"

    # create-a-token, 400: Notion's error object (a code, not an OAuth "error").
    error_response = {
        "object": "error",
        "status": 400,
        "code": "invalid_grant",
        "message": "Invalid code.",
    }
