"""``requests`` authentication with a client's current access token.

    requests.get(url, auth=OAuth2Auth("crm"))

The token is fetched (and refreshed when due) at the moment each request is
prepared, so a long-lived ``requests.Session`` never sends a stale one. When the
API still answers 401 (the provider revoked or expired the token early), the token
is refreshed once and the request is sent once more (RFC 6750 §3.1,
``invalid_token``); a second 401 is returned to the caller as it is.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from .tokens import get_access_token, refresh_access_token

logger = logging.getLogger("oauth2_integrator")

#: Marks a request already retried, so a retry never retries again.
_RETRIED = "_oauth2_integrator_retried"


class OAuth2Auth(requests.auth.AuthBase):
    def __init__(self, name: str, *, account: str = "") -> None:
        self.name = name
        self.account = account

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = get_access_token(self.name, account=self.account)
        request.headers["Authorization"] = f"Bearer {token}"
        request.register_hook("response", self._retry_on_401)
        return request

    def _retry_on_401(
        self, response: requests.Response, **kwargs: Any
    ) -> requests.Response:
        """Refresh once and resend once after a 401 (a response hook).

        A body that was a stream cannot be sent twice: the 401 is returned then.
        """
        request = response.request
        if response.status_code != 401 or getattr(request, _RETRIED, False):
            return response
        body = request.body
        if body is not None and not isinstance(body, str | bytes):
            return response
        sent_header = request.headers.get("Authorization", "")
        token = get_access_token(self.name, account=self.account)
        if sent_header == f"Bearer {token}":
            # Nobody replaced the refused token meanwhile: replace it now. Errors
            # (AuthorizationRequired after invalid_grant, ...) reach the caller.
            token = refresh_access_token(self.name, account=self.account)
        logger.info(
            "The API refused the access token of OAuth2 client %r (401); sending the "
            "request once more with a refreshed one.",
            self.name,
        )
        response.content  # noqa: B018 (read the body so the connection is released)
        response.close()
        retry = request.copy()
        retry.headers["Authorization"] = f"Bearer {token}"
        setattr(retry, _RETRIED, True)
        retry.hooks = {"response": []}
        connection = response.connection
        sent = connection.send(retry, **kwargs)
        sent.history.append(response)
        sent.request = retry
        return sent

    def __repr__(self) -> str:
        return f"OAuth2Auth({self.name!r})"
