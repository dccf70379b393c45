"""The example project's Celery app: ``celery -A example_project worker --beat``.

The broker comes from the ``CELERY_BROKER_URL`` environment variable (settings.py,
default ``redis://127.0.0.1:6379/0``); every ``CELERY_*`` setting is read from
Django's settings, including the beat schedule that refreshes due tokens. The
token refresh tasks live in ``oauth2_integrator.contrib.celery``.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project", include=["oauth2_integrator.contrib.celery"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
