"""Hold OAuth 2.0 tokens for third-party services, encrypted, and keep them fresh.

Only the public API lives here; it is imported lazily so that importing the package
(for example from ``settings.py``) never touches Django's app registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .exceptions import (
    AuthorizationRequired,
    CallbackError,
    ConfigurationError,
    OAuth2IntegratorError,
    TokenEndpointError,
    TokenRefreshError,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "AuthorizationRequired",
    "CallbackError",
    "ConfigurationError",
    "OAuth2Auth",
    "OAuth2IntegratorError",
    "TokenEndpointError",
    "TokenRefreshError",
    "__version__",
    "get_access_token",
    "get_token_values",
    "refresh_access_token",
    "revoke",
]

if TYPE_CHECKING:
    from .auth import OAuth2Auth
    from .revocation import revoke
    from .tokens import get_access_token, get_token_values, refresh_access_token


def __getattr__(name: str) -> Any:
    if name in {"get_access_token", "get_token_values", "refresh_access_token"}:
        from . import tokens

        return getattr(tokens, name)
    if name == "OAuth2Auth":
        from .auth import OAuth2Auth

        return OAuth2Auth
    if name == "revoke":
        from .revocation import revoke

        return revoke
    raise AttributeError(f"module 'oauth2_integrator' has no attribute {name!r}")
