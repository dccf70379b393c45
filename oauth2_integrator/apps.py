from __future__ import annotations

from django.apps import AppConfig


class OAuth2IntegratorConfig(AppConfig):
    name = "oauth2_integrator"
    verbose_name = "OAuth2 integrations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # checks and providers register themselves on import.
        from django.db.models.signals import post_migrate

        from . import checks, events, providers, refresh_read, revocation  # noqa: F401

        # The audit trail and the revocation of a deleted client's tokens.
        events.connect_receivers()
        revocation.connect_receivers()
        # The PostgreSQL function that claims a token for a refresh.
        post_migrate.connect(
            refresh_read.install, sender=self, dispatch_uid="oauth2_integrator.claim"
        )
