"""A client's connection state in an operator's words, shared by the admin and CLI.

Nothing here reads a secret: tokens are loaded with their encrypted columns
deferred, so the status of every client can be shown even when a key is missing
from ENCRYPTION_KEYS (which is exactly when an operator needs to look).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.utils import timezone
from django.utils.timesince import timesince, timeuntil

from .models import OAuth2Client, OAuth2Token, TokenStatus

__all__ = ["client_queryset", "describe", "rows", "token_queryset"]

NOT_AUTHORIZED = "Not authorized"
NEEDS_REAUTHORIZATION = "Needs re-authorization"
DISABLED = "Disabled"

_SECRET_FIELDS = ("access_token", "refresh_token", "extra")
_MISSING: Any = object()


def client_queryset() -> QuerySet[OAuth2Client]:
    """Clients by name, without decrypting their secrets."""
    return OAuth2Client.objects.defer("client_secret").order_by("name")


def token_queryset() -> QuerySet[OAuth2Token]:
    """Current tokens (the default account) without decrypting anything.

    ``has_refresh_token`` compares the raw column with "" (the field stores no
    ciphertext for an empty value), so no key is needed to know whether one exists.
    """
    return (
        OAuth2Token.objects.filter(account="")
        .defer(*_SECRET_FIELDS)
        .annotate(
            has_refresh_token=ExpressionWrapper(
                ~Q(refresh_token=""), output_field=BooleanField()
            )
        )
    )


def current_token(client: OAuth2Client) -> OAuth2Token | None:
    return token_queryset().filter(client=client).first()


def describe(
    client: OAuth2Client,
    *,
    token: OAuth2Token | None = _MISSING,
    now: datetime.datetime | None = None,
) -> str:
    """One of: Disabled / Not authorized / Needs re-authorization /
    Connected, expires in ... / Connected, no expiry.

    Pass ``token`` (``None`` for "no token") when it is already loaded, to save a
    query per client in a list.
    """
    if not client.enabled:
        return DISABLED
    if token is _MISSING:
        token = current_token(client)
    if token is None:
        return NOT_AUTHORIZED
    if token.status != TokenStatus.ACTIVE:
        return NEEDS_REAUTHORIZATION
    if token.expires_at is None:
        return "Connected, no expiry"
    now = now or timezone.now()
    if token.expires_at > now:
        return f"Connected, expires in {_words(timeuntil(token.expires_at, now))}"
    if not _has_refresh_token(token):
        # get_access_token() cannot renew it: an operator must act.
        return NEEDS_REAUTHORIZATION
    ago = _words(timesince(token.expires_at, now))
    return f"Connected, expired {ago} ago (refreshed on next use)"


def rows(
    clients: Iterable[OAuth2Client] | None = None,
    *,
    now: datetime.datetime | None = None,
) -> list[dict[str, Any]]:
    """One plain dict per client for tables and JSON; never a secret."""
    now = now or timezone.now()
    if clients is None:
        clients = client_queryset()
    clients = list(clients)
    tokens = {
        token.client_id: token
        for token in token_queryset().filter(client__in=[c.pk for c in clients])
    }
    result = []
    for client in clients:
        token = tokens.get(client.pk)
        result.append(
            {
                "name": client.name,
                "display_name": client.display_name,
                "provider": client.provider,
                "enabled": client.enabled,
                "status": describe(client, token=token, now=now),
                "token_status": token.status if token else None,
                "expires_at": _iso(token.expires_at if token else None),
                "obtained_at": _iso(token.obtained_at if token else None),
                "refreshed_at": _iso(token.refreshed_at if token else None),
                "last_error": token.last_error if token else "",
                "last_error_at": _iso(token.last_error_at if token else None),
            }
        )
    return result


def _has_refresh_token(token: OAuth2Token) -> bool:
    annotated = getattr(token, "has_refresh_token", None)
    if annotated is not None:
        return bool(annotated)
    return bool(token.refresh_token)


def _words(text: str) -> str:
    # timesince() joins number and unit with a no-break space; plain text is
    # easier to read in a terminal and to match in tests.
    return text.replace("\xa0", " ")


def _iso(value: datetime.datetime | None) -> str | None:
    """ISO 8601 in UTC, so values from different servers compare as text."""
    return value.astimezone(datetime.UTC).isoformat() if value else None
