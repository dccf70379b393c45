from __future__ import annotations

from django.apps import AppConfig


class OAuth2IntegratorConfig(AppConfig):
    name = "oauth2_integrator"
    verbose_name = "OAuth2 integrations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, providers  # noqa: F401  (registers checks and profiles)
