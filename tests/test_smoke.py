from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import responses

from oauth2_integrator import get_access_token

from .conftest import TOKEN_URL


@responses.activate
def test_login_callback_and_token(operator_client, oauth_client):
    page = operator_client.get("/oauth2/acme/login/")
    assert page.status_code == 200
    start = operator_client.post("/oauth2/acme/login/")
    assert start.status_code == 302
    query = parse_qs(urlsplit(start["Location"]).query)
    responses.post(TOKEN_URL, json={"access_token": "new-access-token-xyz-0000", "expires_in": 3600,
                                    "refresh_token": "rt-0000000000000000", "token_type": "Bearer"})
    done = operator_client.get("/oauth2/acme/callback/", {"state": query["state"][0], "code": "c0de"})
    assert done.status_code == 302, done.content
    assert get_access_token("acme") == "new-access-token-xyz-0000"
