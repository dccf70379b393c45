"""``requests`` authentication with a client's current access token.

    requests.get(url, auth=OAuth2Auth("crm"))

The token is fetched (and refreshed when due) at the moment each request is
prepared, so a long-lived ``requests.Session`` never sends a stale one.
"""

from __future__ import annotations

import requests

from .tokens import get_access_token


class OAuth2Auth(requests.auth.AuthBase):
    def __init__(self, name: str, *, account: str = "") -> None:
        self.name = name
        self.account = account

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = get_access_token(self.name, account=self.account)
        request.headers["Authorization"] = f"Bearer {token}"
        return request

    def __repr__(self) -> str:
        return f"OAuth2Auth({self.name!r})"
