"""System checks: fail at startup, with the fix in the message, rather than at first use."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from .conf import app_settings
from .crypto import parse_keys


@checks.register(checks.Tags.security)
def check_encryption_keys(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    try:
        parse_keys(app_settings.ENCRYPTION_KEYS)
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc),
                hint="Set OAUTH2_INTEGRATOR = {'ENCRYPTION_KEYS': ['<key>', ...]} in settings.",
                id="oauth2_integrator.E001",
            )
        ]
    return []
