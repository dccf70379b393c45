"""Every error the app raises derives from ``OAuth2IntegratorError``.

Messages are written for an operator: what happened and what to do. They never
contain a token, a code, a verifier or a client secret.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class OAuth2IntegratorError(Exception):
    """Root of the app's errors; ``error``/``description`` echo the provider's words."""

    def __init__(
        self,
        message: str,
        *,
        client: str | None = None,
        error: str | None = None,
        description: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.client = client
        self.error = error
        self.description = description
        self.status = status

    def __str__(self) -> str:
        return self.message


class ConfigurationError(OAuth2IntegratorError, ImproperlyConfigured):
    """The app or a client is set up in a way that cannot work."""


class AuthorizationRequired(OAuth2IntegratorError):
    """No usable token: an operator must (re-)authorize the client in the admin."""


class TokenEndpointError(OAuth2IntegratorError):
    """The token endpoint refused a request or gave an answer that is not a token."""

    #: True when trying again later may succeed (timeouts, 5xx, 429).
    transient: bool = False


class TransientTokenEndpointError(TokenEndpointError):
    transient = True

    #: Seconds the provider asked to wait (its ``Retry-After`` header), if it said.
    retry_after: float | None = None


class TokenRefreshError(OAuth2IntegratorError):
    """A refresh failed for a reason that may pass; the stored token is unchanged."""


class CallbackError(OAuth2IntegratorError, ValueError):
    """The redirect back from the provider cannot complete a login."""

    def __init__(
        self, message: str, *, http_status: int = 400, **kwargs: object
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.http_status = http_status
