"""``manage.py oauth2_prune_events``: delete audit events past ``EVENT_RETENTION_DAYS``.

A thin wrapper around :func:`oauth2_integrator.events.prune_events`, for a daily cron
line; long-running processes (web and Celery workers) also prune once an hour as
they write events.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ...conf import app_settings
from ...events import prune_events


class Command(BaseCommand):
    help = "Delete OAuth2 events older than OAUTH2_INTEGRATOR['EVENT_RETENTION_DAYS']."

    def handle(self, *args: Any, **options: Any) -> None:
        days = app_settings.EVENT_RETENTION_DAYS
        if not days:
            self.stdout.write("EVENT_RETENTION_DAYS is not set: every event is kept.")
            return
        deleted = prune_events()
        self.stdout.write(f"Deleted {deleted} event(s) older than {days:g} days.")
