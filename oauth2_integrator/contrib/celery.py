"""Celery tasks that keep tokens fresh on many workers (extra ``celery``).

A site that outgrows one machine runs the sweep as Celery tasks instead of (or beside)
``manage.py oauth2_refresh_tokens``: beat sends :func:`refresh_due` every few minutes,
which queues one :func:`refresh_client` per due token, so the refreshes spread over
every worker. The tasks call the same functions as the command
(:mod:`oauth2_integrator.sweep`), so the claim on the token row keeps each token
single-flight (a token another worker is refreshing is skipped, never waited for),
the back-off recorded on the token holds back every worker alike, and the same
signals and events are sent.

Register the tasks with the site's Celery app and paste the schedule into
``settings.py`` (the README's "Celery" section)::

    CELERY_IMPORTS = ["oauth2_integrator.contrib.celery"]
    CELERY_BEAT_SCHEDULE = {
        "oauth2-integrator-refresh-due": {
            "task": "oauth2_integrator.refresh_due",
            "schedule": 300.0,
            "options": {"expires": 240.0},
        },
    }

Nothing here touches the database at import time, so the module may be imported
before Django is set up.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

logger = logging.getLogger(__name__)

#: How often beat queues :func:`refresh_due`, in seconds. Five minutes is well inside
#: the default 300 s refresh margin's reach for tokens that live an hour or more.
REFRESH_DUE_EVERY = 300.0

#: The schedule to paste into a site's settings as ``CELERY_BEAT_SCHEDULE`` (with
#: ``app.config_from_object("django.conf:settings", namespace="CELERY")``). A tick
#: left in the queue while every worker was down expires before the next one is
#: sent, so a worker that comes back runs one sweep, not one per missed tick.
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "oauth2-integrator-refresh-due": {
        "task": "oauth2_integrator.refresh_due",
        "schedule": REFRESH_DUE_EVERY,
        "options": {"expires": REFRESH_DUE_EVERY * 0.8},
    },
}


#: What :func:`refresh_client` returns of :class:`oauth2_integrator.sweep.RefreshOutcome`.
OUTCOME_FIELDS = ("name", "account", "result", "detail")


@shared_task(name="oauth2_integrator.refresh_client")
def refresh_client(name: str, account: str = "") -> dict[str, str]:
    """Refresh one client's token (one connected account) if it is still due.

    Returns the outcome as plain data (``name``, ``account``, ``result``,
    ``detail``: words, never a secret) for a result backend or Flower. A failure is
    an outcome, not an exception: the back-off and the operator's notice are recorded
    on the token by :func:`oauth2_integrator.sweep.refresh_one`, and the next
    :func:`refresh_due` tries again when the token is due, so Celery retries would
    only add calls to a provider that is already struggling.
    """
    from oauth2_integrator import sweep

    outcome = sweep.refresh_one(name, account)
    data = {key: str(getattr(outcome, key, "")) for key in OUTCOME_FIELDS}
    logger.info(
        "Celery refresh of %s%s: %s%s",
        name,
        f" (account {account})" if account else "",
        data["result"],
        f" ({data['detail']})" if data["detail"] else "",
    )
    return data


@shared_task(name="oauth2_integrator.refresh_due")
def refresh_due() -> dict[str, int]:
    """Queue :func:`refresh_client` for every token that is due now.

    The periodic task: no arguments, cheap (one query), never calls a provider itself,
    so beat's tick finishes at once and the refreshes run on whichever workers are
    free. Two overlapping ticks are harmless: each token is refreshed by whichever
    task locks it first and skipped by the others.
    """
    from oauth2_integrator import sweep

    due = sweep.due_tokens()
    for name, account in due:
        refresh_client.delay(name, account)
    if due:
        logger.info("Queued %d token refresh(es) for the Celery workers", len(due))
    return {"queued": len(due)}
