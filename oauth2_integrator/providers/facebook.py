"""Facebook: no refresh tokens; a user token is renewed by exchanging it.

Data (endpoints, comma-separated scopes) is in ``catalog/facebook.toml``; this class
adds what data cannot say:

- ``renewal_request``: Facebook gives no refresh token. A valid user token is
  exchanged for a long-lived one (about 60 days) with ``grant_type=fb_exchange_token``
  before it expires, the app's ID and secret as parameters, as documented in
  https://developers.facebook.com/docs/facebook-login/guides/access-tokens/get-long-lived
  (GET, as there). An expired token cannot be exchanged: an operator re-authorizes.
- ``parse_token_response``: old Graph API versions answered ``expires`` instead of
  ``expires_in``; both are read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils import timezone

from .base import ProviderProfile
from .registry import register

if TYPE_CHECKING:
    import requests

    from ..flow import TokenRequest
    from ..models import OAuth2Token
    from .config import ClientConfig


def current_access_token(token: OAuth2Token) -> str | None:
    """The token's access token while it still works, else None (cannot renew)."""
    if token.expires_at is not None and token.expires_at <= timezone.now():
        return None
    value = token.access_token
    return value if isinstance(value, str) and value else None


def with_expires_in(body: dict[str, Any] | None) -> dict[str, Any] | None:
    """Old Graph versions' ``expires`` read as ``expires_in`` when that is missing."""
    if body is not None and "expires_in" not in body and "expires" in body:
        body = {**body, "expires_in": body["expires"]}
    return body


@register
class FacebookProfile(ProviderProfile):
    key = "facebook"
    catalog_key = "facebook"

    def renewal_request(
        self, config: ClientConfig, token: OAuth2Token
    ) -> TokenRequest | None:
        from ..flow import TokenRequest, client_secret

        access_token = current_access_token(token)
        if access_token is None:
            return None
        return TokenRequest(
            url=config.token_endpoint,
            data={
                "grant_type": "fb_exchange_token",
                "client_id": config.client.client_id,
                "client_secret": client_secret(config.client),
                "fb_exchange_token": access_token,
            },
            method="GET",
        )

    def parse_token_response(
        self, config: ClientConfig, response: requests.Response
    ) -> dict[str, Any] | None:
        return with_expires_in(super().parse_token_response(config, response))
