"""Any OpenID Connect provider, configured from its issuer URL alone.

- ``configure``: endpoints the client leaves blank come from discovery
  (OpenID Connect Discovery 1.0 §4, https://openid.net/specs/openid-connect-discovery-1_0.html);
  an endpoint the operator set wins.
- ``validate_token_set``: the code exchange's ``id_token`` is validated (OpenID
  Connect Core 1.0 §3.1.3.7, https://openid.net/specs/openid-connect-core-1_0.html)
  before anything is stored, the login's nonce included.
- ``account_name``: ``email``, else ``preferred_username``, else ``sub`` of that token.

Every login sends ``openid`` (``required_scopes``), a nonce, and PKCE S256.
The protocol itself lives in ``oauth2_integrator.oidc``.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, ClassVar

from .. import oidc
from ..exceptions import OAuth2IntegratorError
from .base import ProviderProfile
from .registry import register

if TYPE_CHECKING:
    from ..flow import TokenSet
    from .config import ClientConfig


@register
class OpenIDConnectProvider(ProviderProfile):
    key = "oidc"
    name = "OpenID Connect (discovery)"
    docs = "https://openid.net/specs/openid-connect-discovery-1_0.html"
    notes = (
        "Enter only the issuer URL (exactly as the provider names it, e.g. "
        "https://accounts.example.com): the endpoints come from its "
        "/.well-known/openid-configuration. Endpoints you enter win over discovery."
    )
    default_scopes: ClassVar[list[str]] = ["openid", "email", "profile"]
    default_scope = "openid email profile"
    #: OpenID Connect Core §3.1.2.1: without ``openid`` the answer is plain OAuth 2.0
    #: (no ID token, no nonce), so it is always requested.
    required_scopes: ClassVar[list[str]] = ["openid"]
    use_pkce = True

    def configure(self, config: ClientConfig) -> ClientConfig:
        metadata = oidc.discover(config.issuer, client=config.client.name)
        token_endpoint = config.token_endpoint or metadata.token_endpoint
        options = config.options
        if metadata.authorization_response_iss_parameter_supported:
            # RFC 9207 §3: the provider says it always sends iss; a callback
            # without it is then refused.
            options = types.SimpleNamespace(**{**vars(options), "sends_iss": True})
        return config.replace(
            authorization_endpoint=(
                config.authorization_endpoint or metadata.authorization_endpoint
            ),
            token_endpoint=token_endpoint,
            refresh_endpoint=config.refresh_endpoint or token_endpoint,
            revocation_endpoint=(
                config.revocation_endpoint or metadata.revocation_endpoint
            ),
            userinfo_endpoint=config.userinfo_endpoint or metadata.userinfo_endpoint,
            # Every OpenID Connect login sends PKCE S256 (RFC 9700 §2.1.1).
            use_pkce=True,
            options=options,
        )

    def validate_token_set(
        self, config: ClientConfig, token_set: TokenSet, *, nonce: str
    ) -> None:
        oidc.validate_id_token(
            token_set.extra.get("id_token"),
            issuer=config.issuer,
            client_id=config.client.client_id,
            nonce=nonce,
            client=config.client.name,
        )

    def account_name(self, config: ClientConfig, token_set: TokenSet) -> str:
        """From the ID token, validated again (without the nonce: this is called
        after ``validate_token_set`` and on refreshes). A label only: a token that
        does not validate here names nobody rather than failing the caller."""
        id_token = token_set.extra.get("id_token")
        if not id_token:
            return ""
        try:
            claims = oidc.validate_id_token(
                id_token,
                issuer=config.issuer,
                client_id=config.client.client_id,
                nonce=None,
                client=config.client.name,
            )
        except OAuth2IntegratorError:
            return ""
        return oidc.account_from_claims(claims)
