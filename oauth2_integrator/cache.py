"""An opt-in, in-process cache of access tokens (``TOKEN_CACHE_TTL`` seconds; 0 = off).

A hit costs a dictionary lookup instead of a database read. An entry lives at most
``TOKEN_CACHE_TTL`` seconds and never past the moment its token enters the refresh
margin, so a cached token is always one ``get_access_token`` would hand out too.

What this process does to a token drops its entry at once: a refresh, a failed
refresh, a new authorization, a revocation, saving the token, saving or deleting
its client (disabling it in the admin). Another process (another web worker, a Celery
worker, the refresh command) cannot reach this memory: after it refreshes or
revokes a token, this process may keep serving the token it cached for up to
``TOKEN_CACHE_TTL`` seconds. A refreshed provider normally keeps the old access
token valid until it expires; a revoked one is refused by the provider meanwhile.
Keep the TTL short (a few seconds) where that matters.
"""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any

from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from . import signals
from .conf import on_reload

__all__ = ["clear", "forget", "generation", "get", "put"]

_lock = threading.Lock()
#: (client name, account) -> (access token, time.monotonic() deadline)
_entries: dict[tuple[str, str], tuple[str, float]] = {}
#: Bumped by every forget(): a read that started before a forget may not fill it.
_generation = 0


def get(name: str, account: str = "") -> str | None:
    """The cached access token, or None when there is none or it is too old."""
    entry = _entries.get((name, account))
    if entry is None:
        return None
    if time.monotonic() >= entry[1]:
        with _lock:
            if _entries.get((name, account)) is entry:
                del _entries[(name, account)]
        return None
    return entry[0]


def generation() -> int:
    """Take this before reading the database; hand it to ``put``."""
    return _generation


def put(
    name: str,
    account: str,
    access_token: str,
    *,
    refresh_at: datetime.datetime | None,
    ttl: float,
    seen_generation: int,
) -> None:
    """Cache a token read from the database for at most ``ttl`` seconds and never
    past ``refresh_at`` (when it enters the refresh margin).

    Nothing is stored when a ``forget`` ran since ``seen_generation`` was taken: the
    row read may be the one a refresh or revocation has just replaced.
    """
    lifetime = float(ttl)
    if refresh_at is not None:
        lifetime = min(lifetime, (refresh_at - timezone.now()).total_seconds())
    if lifetime <= 0:
        return
    with _lock:
        if _generation != seen_generation:
            return
        _entries[(name, account)] = (access_token, time.monotonic() + lifetime)


def forget(name: str | None = None, account: str | None = None) -> None:
    """Drop the entries of client ``name`` (one ``account``, or all of its
    accounts when None); every entry when ``name`` is None."""
    global _generation
    with _lock:
        _generation += 1
        if name is None:
            _entries.clear()
            return
        for key in [k for k in _entries if k[0] == name]:
            if account is None or key[1] == account:
                del _entries[key]


def clear() -> None:
    forget()


on_reload(clear)


# --- what this process does to a token drops its entry ------------------------------


def _forget_token(*, token: Any = None, client: Any = None, **kwargs: Any) -> None:
    name = getattr(client, "name", None)
    if name is None and token is not None:
        # A token whose client is not loaded: drop everything rather than query.
        forget()
        return
    account = getattr(token, "account", None) if token is not None else None
    if account is None:
        account = kwargs.get("account")  # token_revoked sends it without a token
    forget(name, account)


def _forget_saved_token(*, instance: Any, **kwargs: Any) -> None:
    client = instance._state.fields_cache.get("client")
    if client is None:
        forget()  # the client name is not at hand without a query
        return
    forget(client.name, instance.account)


def _forget_client(*, instance: Any, **kwargs: Any) -> None:
    forget(instance.name)


def _connect() -> None:
    from .models import OAuth2Client, OAuth2Token

    signals.token_refreshed.connect(_forget_token, dispatch_uid="oauth2-cache-refresh")
    signals.token_obtained.connect(_forget_token, dispatch_uid="oauth2-cache-obtain")
    signals.token_refresh_failed.connect(
        _forget_token, dispatch_uid="oauth2-cache-failed"
    )
    revoked = getattr(signals, "token_revoked", None)
    if revoked is not None:
        revoked.connect(_forget_token, dispatch_uid="oauth2-cache-revoked")
    # No delete receiver for tokens: it would turn Django's fast delete of
    # tokens into loading (and decrypting) every row first. A deleted client
    # (which takes its tokens along) is dropped; revoke() sends token_revoked.
    post_save.connect(
        _forget_saved_token, sender=OAuth2Token, dispatch_uid="oauth2-cache-token"
    )
    post_save.connect(
        _forget_client, sender=OAuth2Client, dispatch_uid="oauth2-cache-client"
    )
    post_delete.connect(
        _forget_client, sender=OAuth2Client, dispatch_uid="oauth2-cache-client-gone"
    )


_connect()
