"""The audit trail: what happened to each client and its token, by whom, and how it went.

Events are written by signal receivers (connected in ``apps.ready``), by the
code that acts for an operator (``revocation.revoke``, the admin, the key
rotation), and by the refresh itself, in the statement that stores the new token
(``refreshed_event``). A plain read of a token writes nothing:
``get_access_token`` sends no signal, so the hot path stays one query.

An event must never cost the caller anything it asked for: a failure to write one
is logged and swallowed, and inside a caller's transaction the event is written on
its own connection (as a refresh is, see ``tokens._on_own_connection``), so a
rollback in the caller does not erase the record of a refresh that did happen.

``detail`` holds words meant for an operator, never a secret: the messages it is
built from are the app's own (which never quote a token or a client secret), URLs
in it lose their ``user:password@``, and it is cut to the column's 500 characters.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Any

from django.db import DatabaseError, router, transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import Signal
from django.utils import timezone

from . import signals
from .conf import app_settings
from .models import EventKind, EventOutcome, OAuth2Client, OAuth2Event

logger = logging.getLogger("oauth2_integrator")

__all__ = [
    "connect_receivers",
    "maybe_prune",
    "prune_events",
    "record",
    "refreshed_event",
]

#: ``detail`` column size.
DETAIL_LIMIT = 500

#: Seconds between two automatic prunes in one process (``record`` triggers them).
PRUNE_INTERVAL = 3600.0

#: Counted from the process start: a short-lived command does not prune (cron runs
#: ``oauth2_prune_events``), a web or Celery worker prunes once an hour.
_last_prune = time.monotonic()
_prune_lock = threading.Lock()

#: Attributes the admin sets on a client before saving it, read by the post_save
#: receiver: who saved it and which form fields changed (names, never values).
ACTOR_ATTR = "_oauth2_event_actor"
CHANGED_ATTR = "_oauth2_event_changed"


def _words(detail: object) -> str:
    """Printable, URL credentials removed, fitted to the column."""
    from .flow import clean_words
    from .validators import redact_urls

    return clean_words(redact_urls(str(detail or "")), DETAIL_LIMIT)


def _actor(actor: Any) -> tuple[Any, str]:
    """(user or None, name to keep): anonymous users count as the system."""
    if actor is None or not getattr(actor, "is_authenticated", False):
        return None, ""
    if getattr(actor, "pk", None) is None:
        return None, ""
    get_username = getattr(actor, "get_username", None)
    name = get_username() if callable(get_username) else str(actor)
    return actor, str(name)[:150]


def record(
    client: OAuth2Client | None,
    kind: str,
    *,
    actor: Any = None,
    outcome: str = EventOutcome.OK,
    detail: str = "",
    detached: bool = False,
) -> OAuth2Event | None:
    """Write one event; returns it, or None when it could not be written.

    ``client`` None: an event about the whole installation (a key rotation).
    ``actor``: the user who acted, None for the system. ``detail``: a short
    sentence for an operator; never pass a token or a secret. ``detached``: the
    event records something committed on its own (a refresh, a revocation), so
    inside a caller's transaction it is written on its own connection and
    survives a rollback there; otherwise it shares the caller's transaction (a
    client saved in it may not exist for another connection yet).
    """
    from .tokens import _on_own_connection

    user, actor_name = _actor(actor)
    event = OAuth2Event(
        client=client,
        kind=str(kind),
        actor=user,
        actor_name=actor_name,
        outcome=str(outcome),
        detail=_words(detail),
        created_at=timezone.now(),
    )
    alias = router.db_for_write(OAuth2Event)
    try:
        if detached:
            _on_own_connection(alias, lambda: event.save(using=alias))
        else:
            with transaction.atomic(using=alias):
                event.save(using=alias)
    except DatabaseError as exc:
        logger.error(
            "Could not record the %s event of OAuth2 client %r (%s).",
            kind,
            client.name if client else None,
            type(exc).__name__,
        )
        return None
    maybe_prune()
    return event


def prune_events(*, now: datetime.datetime | None = None) -> int:
    """Delete events older than ``EVENT_RETENTION_DAYS``; returns how many.

    ``EVENT_RETENTION_DAYS`` None (or 0) keeps every event.
    """
    days = app_settings.EVENT_RETENTION_DAYS
    if not days:
        return 0
    cutoff = (now or timezone.now()) - datetime.timedelta(days=float(days))
    deleted, _ = OAuth2Event.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def maybe_prune() -> None:
    """Prune at most once per ``PRUNE_INTERVAL`` per process, so a site that runs
    no cron job still keeps its trail bounded; never fails the caller."""
    global _last_prune
    moment = time.monotonic()
    if moment - _last_prune < PRUNE_INTERVAL:
        return
    with _prune_lock:
        if moment - _last_prune < PRUNE_INTERVAL:
            return
        _last_prune = moment
    try:
        deleted = prune_events()
    except DatabaseError as exc:
        logger.warning("Pruning old OAuth2 events failed (%s).", type(exc).__name__)
        return
    if deleted:
        logger.info("Deleted %d OAuth2 event(s) past EVENT_RETENTION_DAYS.", deleted)


# --- receivers -------------------------------------------------------------------------


def _on_token_obtained(
    sender: Any, *, client: OAuth2Client, token: Any, actor: Any = None, **kwargs: Any
) -> None:
    parts = ["Authorized"]
    if getattr(token, "account_name", ""):
        parts.append(f"as {token.account_name}")
    detail = " ".join(parts) + "."
    if getattr(token, "scope", ""):
        detail += f" Granted scope: {token.scope}."
    record(client, EventKind.AUTHORIZED, actor=actor, detail=detail)


def refreshed_event(client: OAuth2Client, scope_narrowed: list[str]) -> OAuth2Event:
    """The event of a refresh, not saved: the refresh writes it with the new token,
    in the same statement (``tokens._save_refreshed``), so the trail holds a
    refresh exactly when the token does, at no extra round trip."""
    detail = "Refreshed the access token."
    if scope_narrowed:
        detail += f" The provider no longer grants: {', '.join(scope_narrowed)}."
    return OAuth2Event(
        client=client,
        kind=EventKind.REFRESHED,
        outcome=EventOutcome.OK,
        detail=_words(detail),
        created_at=timezone.now(),
    )


def _on_token_refresh_failed(
    sender: Any,
    *,
    client: OAuth2Client,
    error: Exception,
    reauthorization_required: bool = False,
    **kwargs: Any,
) -> None:
    """A failed refresh. When it left the token needing an operator and there is
    no ``reauthorization_required`` signal to say so, the event says it instead."""
    kind = EventKind.REFRESH_FAILED
    if reauthorization_required and not _has_reauthorization_signal():
        kind = EventKind.REAUTHORIZATION_REQUIRED
    record(
        client,
        kind,
        actor=kwargs.get("actor"),
        outcome=EventOutcome.FAILED,
        detail=str(error),
        detached=True,
    )


def _on_reauthorization_required(
    sender: Any, *, client: OAuth2Client, reason: object = "", **kwargs: Any
) -> None:
    record(
        client,
        EventKind.REAUTHORIZATION_REQUIRED,
        outcome=EventOutcome.FAILED,
        detail=str(reason or "An operator must re-authorize the client."),
        detached=True,
    )


#: Set by the pre_save receiver: the fields whose stored value a save changes.
STORED_DIFF_ATTR = "_oauth2_event_stored_diff"
_NOT_COMPARED = frozenset({"id", "created_at", "updated_at"})


def _on_client_saving(
    sender: Any, *, instance: OAuth2Client, raw: bool = False, **kwargs: Any
) -> None:
    """Which fields this save really changes, compared with the stored row.

    ``update_or_create`` and code that saves every field would otherwise be
    recorded as changing them all. The admin says what its form changed itself.
    """
    if raw or instance.pk is None or CHANGED_ATTR in instance.__dict__:
        return
    names = [
        f.attname
        for f in OAuth2Client._meta.concrete_fields
        if f.attname not in _NOT_COMPARED
    ]
    try:
        stored = OAuth2Client.objects.filter(pk=instance.pk).values(*names).first()
    except Exception:  # an undecryptable column, a broken row: fall back
        logger.debug("Could not compare client %r with its stored row.", instance.pk)
        return
    if stored is None:
        return
    instance.__dict__[STORED_DIFF_ATTR] = [
        name for name in names if stored[name] != getattr(instance, name)
    ]


def _on_client_saved(
    sender: Any,
    *,
    instance: OAuth2Client,
    created: bool,
    update_fields: Any = None,
    raw: bool = False,
    **kwargs: Any,
) -> None:
    """A registration was added or changed (admin, import, code): which fields,
    never their values."""
    if raw:  # loaddata
        return
    actor = instance.__dict__.pop(ACTOR_ATTR, None)
    changed = instance.__dict__.pop(CHANGED_ATTR, None)
    stored_diff = instance.__dict__.pop(STORED_DIFF_ATTR, None)
    if changed is None:
        changed = stored_diff
    if created:
        detail = "Registered the client."
    else:
        names = changed if changed is not None else update_fields
        names = sorted(set(names or ()) - {"updated_at"})
        if changed is not None and not names:
            detail = "Saved the client without changes."
        elif names:
            detail = "Changed: " + ", ".join(n.replace("_", " ") for n in names) + "."
        else:
            detail = "Changed the client."
    record(instance, EventKind.CLIENT_CHANGED, actor=actor, detail=detail)


def _has_reauthorization_signal() -> bool:
    """K1's ``signals.reauthorization_required``, sent once when a token turns to
    needing an operator; where it exists, it alone writes that event."""
    return isinstance(getattr(signals, "reauthorization_required", None), Signal)


def connect_receivers() -> None:
    """Connect the receivers (``apps.ready``); idempotent (dispatch uids)."""
    signals.token_obtained.connect(
        _on_token_obtained, dispatch_uid="oauth2_integrator.events.obtained"
    )
    signals.token_refresh_failed.connect(
        _on_token_refresh_failed, dispatch_uid="oauth2_integrator.events.failed"
    )
    if _has_reauthorization_signal():
        getattr(signals, "reauthorization_required").connect(  # noqa: B009
            _on_reauthorization_required,
            dispatch_uid="oauth2_integrator.events.reauthorization",
        )
    pre_save.connect(
        _on_client_saving,
        sender=OAuth2Client,
        dispatch_uid="oauth2_integrator.events.client_saving",
    )
    post_save.connect(
        _on_client_saved,
        sender=OAuth2Client,
        dispatch_uid="oauth2_integrator.events.client_saved",
    )
