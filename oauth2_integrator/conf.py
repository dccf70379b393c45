"""The app's settings: one ``OAUTH2_INTEGRATOR`` dict, read through one object.

Defaults live here; unknown keys are rejected with a message naming the key, and the
object re-reads Django's settings whenever ``override_settings`` changes them.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

SETTINGS_NAME = "OAUTH2_INTEGRATOR"

DEFAULTS: dict[str, Any] = {
    # Fernet keys (urlsafe base64, 32 bytes). The first encrypts; all decrypt.
    "ENCRYPTION_KEYS": [],
    # Refresh an access token that expires within this many seconds.
    "REFRESH_MARGIN": 300,
    # A pending login (state, PKCE verifier) is valid for this many seconds.
    "AUTHORIZATION_REQUEST_TTL": 600,
    # requests' (connect, read) timeouts for calls to token endpoints.
    "CONNECT_TIMEOUT": 5.0,
    "READ_TIMEOUT": 15.0,
    # Sent on every request to a provider; None means "django-oauth2-integrator/<version>".
    "USER_AGENT": None,
    # Verify TLS certificates (a path to a CA bundle is accepted too, as in requests).
    "VERIFY_TLS": True,
    # Permission a staff user needs to start a login for a client.
    "AUTHORIZE_PERMISSION": "oauth2_integrator.authorize",
    # Largest token endpoint answer read, in bytes, counted after decompression.
    "MAX_RESPONSE_BYTES": 1024 * 1024,
    # Wall-clock limit, in seconds, for one request to a token endpoint (connect,
    # send, headers and body together); a refresh's claim on the token row outlives
    # three of these (tokens._claim_lifetime).
    "TOKEN_REQUEST_DEADLINE": 20.0,
    # Seconds a get_access_token() whose token has expired waits for another
    # worker's refresh of it before raising TokenRefreshError (a caller whose
    # token is still valid does not wait: it gets that token at once).
    "LOCK_WAIT_TIMEOUT": 5.0,
    # After a permanent refresh error other than invalid_grant (invalid_client,
    # unauthorized_client, invalid_scope, ...), the provider is not called again
    # for this many seconds unless the client registration changes first.
    "PERMANENT_ERROR_RETRY_DELAY": 3600,
    # Audit trail (OAuth2Event): events older than this many days are deleted by
    # `manage.py oauth2_prune_events` and, at most once an hour, as events are written.
    "EVENT_RETENTION_DAYS": 90,
    # The background refresh (manage.py oauth2_refresh_tokens, contrib.celery) also
    # refreshes a token not refreshed (or, never refreshed, not obtained) for this
    # many seconds, so providers that revoke idle refresh tokens keep them alive. A
    # provider profile's `refresh_idle_after` (seconds, or None for never) wins.
    "REFRESH_IDLE_AFTER": 86400,
    # Transient refresh failures (timeouts, connection errors, 5xx, 429, answers that
    # are not a token) back off exponentially with jitter: BACKOFF_FIRST seconds,
    # then twice as long each time, at most BACKOFF_MAX. A provider's Retry-After
    # wins when it is longer (honoured up to a day).
    "BACKOFF_FIRST": 30,
    "BACKOFF_MAX": 3600,
    # E-mail settings.ADMINS (or NOTIFY_RECIPIENTS, a list of addresses, when set)
    # once per incident when a client needs an operator (re-authorization, a
    # refused client registration, a refresh token about to die).
    "NOTIFY_ADMINS": True,
    "NOTIFY_RECIPIENTS": None,
    # Accept plain http:// endpoints for hosts other than loopback (development).
    "ALLOW_INSECURE_HTTP": False,
    # Keep access tokens in this process's memory for up to this many seconds
    # (never past the refresh margin); 0 turns the cache off. Another process's
    # refresh or revocation is seen here only when the entry ends (README).
    "TOKEN_CACHE_TTL": 0,
}


class IntegratorSettings:
    """Attribute access to the merged settings, e.g. ``app_settings.REFRESH_MARGIN``."""

    def __init__(self) -> None:
        self._cached: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        from django.conf import settings

        user = getattr(settings, SETTINGS_NAME, {}) or {}
        if not isinstance(user, dict):
            raise ImproperlyConfigured(f"{SETTINGS_NAME} must be a dict.")
        unknown = sorted(set(user) - set(DEFAULTS))
        if unknown:
            raise ImproperlyConfigured(
                f"Unknown key(s) in {SETTINGS_NAME}: {', '.join(unknown)}. "
                f"Known keys: {', '.join(sorted(DEFAULTS))}."
            )
        return {**DEFAULTS, **user}

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(name)
        if self._cached is None:
            self._cached = self._load()
        return self._cached[name]

    def reload(self) -> None:
        self._cached = None


app_settings = IntegratorSettings()

_reload_hooks: list[Any] = []


def on_reload(func: Any) -> Any:
    """Register a function to call when the settings change (e.g. to drop a cache)."""
    _reload_hooks.append(func)
    return func


@receiver(setting_changed)
def _reload_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTINGS_NAME:
        app_settings.reload()
        for hook in _reload_hooks:
            hook()
