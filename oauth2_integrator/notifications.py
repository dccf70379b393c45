"""Telling an operator, once per incident, that a client needs them.

An incident starts when a token turns to needing an operator (``invalid_grant``, a
refused client registration, a token that will expire and cannot be renewed) and
ends when it works again (a successful refresh or a new authorization clears
``OAuth2Token.incident_notified_at``). Whoever claims the incident on the row (under
the refresh's claim on the row in ``tokens``, or with ``claim`` here) sends the
``reauthorization_required`` signal and the e-mail; every other runner, attempt or
sweep of the same incident stays quiet.

The e-mail goes to ``settings.ADMINS`` (Django's ``mail_admins``), or to
``NOTIFY_RECIPIENTS`` when that is set; ``NOTIFY_ADMINS = False`` turns it off.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import mail_admins, send_mail
from django.db.models import Q
from django.utils import timezone

from . import signals
from .conf import app_settings
from .models import OAuth2Client, OAuth2Token

logger = logging.getLogger("oauth2_integrator")

__all__ = ["claim", "tell_operator"]


def claim(token: OAuth2Token) -> bool:
    """Mark the token's current incident as told; True for the one caller that
    did (a conditional UPDATE, so two runners never both tell).

    ``updated_at`` moves too: a refresh that read the row before would otherwise
    still claim it (``tokens._claim`` checks the version columns) and tell the
    same incident again, or clear the mark on success."""
    now = timezone.now()
    claimed = (
        OAuth2Token.objects.filter(pk=token.pk)
        .filter(Q(incident_notified_at__isnull=True))
        .update(incident_notified_at=now, updated_at=now)
    )
    if claimed:
        token.incident_notified_at = now
        token.updated_at = now
    return bool(claimed)


def tell_operator(
    client: OAuth2Client, token: OAuth2Token, *, reason: str, reauthorization: bool
) -> None:
    """Send the signal (when re-authorization is what is needed) and the e-mail.

    Call only after claiming the incident. A mail server that fails is logged,
    never raised: the refresh's own outcome must reach its caller.
    """
    if reauthorization:
        signals.reauthorization_required.send(
            sender=OAuth2Client, client=client, token=token, reason=reason
        )
    if not app_settings.NOTIFY_ADMINS:
        return
    subject = f"OAuth2 client {client.label} needs an operator"
    body = (
        f"{reason}\n\n"
        f"Client: {client.label}\n"
        f"Provider: {client.provider}\n"
        f"Token account: {token.account or '(default)'}\n\n"
        "Open the client's page in the Django admin (OAuth2 clients) to "
        + (
            "re-authorize it."
            if reauthorization
            else "fix its registration, then save it."
        )
        + "\nYou are told once per incident; the next notice comes only after the "
        "client has worked again.\n"
    )
    recipients = app_settings.NOTIFY_RECIPIENTS
    try:
        if recipients:
            send_mail(
                f"{settings.EMAIL_SUBJECT_PREFIX}{subject}",
                body,
                settings.SERVER_EMAIL,
                list(recipients),
            )
        else:
            mail_admins(subject, body)
    except Exception as exc:  # a broken mail server must not hide the incident
        logger.error(
            "Could not e-mail the operator about OAuth2 client %r (%s); the "
            "incident is: %s",
            client.name,
            type(exc).__name__,
            reason,
        )
