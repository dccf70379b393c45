"""Instagram (Instagram API with Instagram Login): no refresh tokens.

Data is in ``catalog/instagram.toml``. What data cannot say:

- After the code exchange the one-hour token is exchanged at once for a 60-day
  one: GET ``https://graph.instagram.com/access_token`` with
  ``grant_type=ig_exchange_token``, the app secret and the token
  (https://developers.facebook.com/docs/instagram-platform/reference/access_token).
  When that fails the short-lived token is kept (it works for an hour) and a
  warning says to re-authorize.
- ``renewal_request``: a long-lived token is renewed before it expires by GET to
  ``https://graph.instagram.com/refresh_access_token`` with
  ``grant_type=ig_refresh_token`` and the token itself
  (https://developers.facebook.com/docs/instagram-platform/reference/refresh_access_token).
- The code exchange may answer ``{"data": [{"access_token": ...}]}``; the first
  entry is read.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .base import ProviderProfile
from .facebook import current_access_token
from .registry import register

if TYPE_CHECKING:
    import requests

    from ..flow import TokenRequest
    from ..models import OAuth2Token
    from .config import ClientConfig

logger = logging.getLogger("oauth2_integrator")

#: Where a short-lived token becomes a long-lived one (documented above).
EXCHANGE_ENDPOINT = "https://graph.instagram.com/access_token"


@register
class InstagramProfile(ProviderProfile):
    key = "instagram"
    catalog_key = "instagram"
    exchange_endpoint = EXCHANGE_ENDPOINT

    def renewal_request(
        self, config: ClientConfig, token: OAuth2Token
    ) -> TokenRequest | None:
        from ..flow import TokenRequest

        access_token = current_access_token(token)
        if access_token is None:
            return None
        return TokenRequest(
            url=config.refresh_endpoint,
            data={"grant_type": "ig_refresh_token", "access_token": access_token},
            method="GET",
        )

    def parse_token_response(
        self, config: ClientConfig, response: requests.Response
    ) -> dict[str, Any] | None:
        body = super().parse_token_response(config, response)
        data = body.get("data") if body else None
        if isinstance(data, list) and data and isinstance(data[0], dict):
            body = data[0]
        if not body or not isinstance(body.get("access_token"), str):
            return body  # an error answer: flow reports it
        if "expires_in" in body:
            return body  # already long-lived
        long_lived = self._exchange(config, body["access_token"])
        return {**body, **long_lived} if long_lived else body

    def _exchange(self, config: ClientConfig, short_lived: str) -> dict[str, Any]:
        """The long-lived token for a short-lived one, or {} (warning logged)."""
        from .. import transport
        from ..flow import client_secret

        try:
            response = transport.get(
                self.exchange_endpoint,
                params={
                    "grant_type": "ig_exchange_token",
                    "client_secret": client_secret(config.client),
                    "access_token": short_lived,
                },
            )
            body = super().parse_token_response(config, response)
        except Exception as exc:  # the short-lived token still works for an hour
            body, reason = None, type(exc).__name__
        else:
            reason = f"HTTP {response.status_code}"
        if (
            body is not None
            and isinstance(body.get("access_token"), str)
            and "error" not in body
        ):
            return {
                key: body[key]
                for key in ("access_token", "token_type", "expires_in")
                if key in body
            }
        logger.warning(
            "OAuth2 client %r: Instagram did not exchange the short-lived token for "
            "a long-lived one (%s); the token works for about an hour and cannot be "
            "renewed. Re-authorize the client.",
            config.client.name,
            reason,
        )
        return {}
