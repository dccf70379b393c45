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

__all__ = [
    "client_queryset",
    "describe",
    "refresh_problem",
    "renewal_problem",
    "rows",
    "token_queryset",
]

NOT_AUTHORIZED = "Not authorized"
NEEDS_REAUTHORIZATION = "Needs re-authorization"
DISABLED = "Disabled"
DISCONNECTED = "Disconnected"

_MISSING: Any = object()


def client_queryset() -> QuerySet[OAuth2Client]:
    """Clients by name, without decrypting their secrets."""
    return OAuth2Client.objects.defer("client_secret").order_by("name")


def without_secrets(rows: QuerySet[OAuth2Token]) -> QuerySet[OAuth2Token]:
    """``rows`` with no secret decrypted, and ``has_refresh_token`` known anyway.

    ``has_refresh_token`` compares the raw column with "" (the field stores no
    ciphertext for an empty value), so no key is needed to know whether one exists.
    """
    return rows.defer(*OAuth2Token.SECRET_FIELDS).annotate(
        has_refresh_token=ExpressionWrapper(
            ~Q(refresh_token=""), output_field=BooleanField()
        )
    )


def token_queryset() -> QuerySet[OAuth2Token]:
    """Current tokens (the default account) without decrypting anything."""
    return without_secrets(OAuth2Token.objects.filter(account=""))


def current_token(client: OAuth2Client) -> OAuth2Token | None:
    return token_queryset().filter(client=client).first()


def describe(
    client: OAuth2Client,
    *,
    token: OAuth2Token | None = _MISSING,
    now: datetime.datetime | None = None,
) -> str:
    """One of: Disabled / Not authorized / Disconnected / Needs re-authorization /
    Connected, expires in ... / Connected, no expiry ("Connected as
    alice@example.com, ..." when the token names its account); followed by
    "; refresh refused (invalid_client): ..." after a permanent refresh error.

    Pass ``token`` (``None`` for "no token") when it is already loaded, to save a
    query per client in a list.
    """
    if not client.enabled:
        return DISABLED
    if token is _MISSING:
        token = current_token(client)
    if token is None:
        return NOT_AUTHORIZED
    if token.status == TokenStatus.REVOKED:
        return DISCONNECTED  # an operator chose it; Authorize connects it again
    if token.status != TokenStatus.ACTIVE:
        return NEEDS_REAUTHORIZATION
    now = now or timezone.now()
    problem = (
        refresh_problem(client, token, now=now)
        or renewal_problem(client, token, now=now)
        or refresh_in_flight(token, now=now)
    )
    # Who the token belongs to, when the provider said (OpenID Connect's ID token,
    # a profile's userinfo): "Connected as alice@example.com, expires in ...".
    account = getattr(token, "account_name", "")
    who = f"Connected as {account}" if account else "Connected"
    if token.expires_at is None:
        connected = f"{who}, no expiry"
    elif token.expires_at > now:
        connected = f"{who}, expires in {_words(timeuntil(token.expires_at, now))}"
    elif not has_refresh_token(token):
        # get_access_token() cannot renew it: an operator must act.
        return NEEDS_REAUTHORIZATION
    else:
        ago = _words(timesince(token.expires_at, now))
        connected = f"{who}, expired {ago} ago"
        if not problem:
            connected += " (refreshed on next use)"
    return f"{connected}; {problem}" if problem else connected


#: How long before a refresh token's known end of life the status warns.
REFRESH_TOKEN_WARNING = datetime.timedelta(days=14)


def refresh_token_ending(
    token: OAuth2Token, *, now: datetime.datetime | None = None
) -> str:
    """A warning when the refresh token dies soon or has died, else "".

    Providers that say how long a refresh token lives (``refresh_token_expires_in``:
    LinkedIn, QuickBooks, GitHub Apps, ...) end the connection then, whatever the
    app does: an operator must re-authorize before, and is told two weeks ahead.
    """
    ends = getattr(token, "refresh_token_expires_at", None)
    if ends is None:
        return ""
    now = now or timezone.now()
    if ends <= now:
        return (
            f"the refresh token expired {_words(timesince(ends, now))} ago: "
            "re-authorize the client"
        )
    if ends - now <= REFRESH_TOKEN_WARNING:
        return (
            f"the refresh token expires in {_words(timeuntil(ends, now))}: "
            "re-authorize the client before then"
        )
    return ""


def profile_renews(client: OAuth2Client) -> bool:
    """True when the client's provider profile renews tokens without a refresh
    token (it implements ``renewal_request``: Facebook, Instagram); read from the
    class, so no secret is needed to know."""
    from .providers import registry
    from .providers.base import ProviderProfile

    try:
        profile = registry.get(client.provider)
    except Exception:  # an unknown profile: the refresh path reports it
        return False
    return type(profile).renewal_request is not ProviderProfile.renewal_request


def renewal_problem(
    client: OAuth2Client,
    token: OAuth2Token,
    *,
    renews: bool | None = None,
    now: datetime.datetime | None = None,
) -> str:
    """Why the token will stop working, ahead of time, or "" when nothing is known.

    Either its refresh token has a known end of life within
    ``REFRESH_TOKEN_WARNING`` (``refresh_token_ending``), or it has no refresh
    token, its profile cannot renew it (``renews``; read from the profile when not
    given) and the access token expires within that window. The sweep flags these
    (``reauthorization_required``, one e-mail) before the connection dies.
    """
    now = now or timezone.now()
    if has_refresh_token(token):
        return refresh_token_ending(token, now=now)
    if token.expires_at is None or token.expires_at - now > REFRESH_TOKEN_WARNING:
        return ""
    if renews is None:
        renews = profile_renews(client)
    if renews and token.expires_at > now:
        return ""
    if token.expires_at <= now:
        return (
            f"the access token expired {_words(timesince(token.expires_at, now))} "
            "ago and there is no refresh token: re-authorize the client"
        )
    return (
        f"the access token expires in {_words(timeuntil(token.expires_at, now))} "
        "and cannot be renewed (no refresh token): re-authorize the client before "
        "then"
    )


#: What an operator does about a permanent refresh error (RFC 6749 §5.2).
_FIXES = {
    "invalid_client": "check the client ID and secret",
    "unauthorized_client": (
        "the provider does not let this client refresh tokens; check its "
        "registration there"
    ),
    "invalid_scope": "the provider refuses the scope; check the client's scope",
}


def refresh_problem(
    client: OAuth2Client, token: OAuth2Token, *, now: datetime.datetime | None = None
) -> str:
    """A refresh error that holds refreshes back, in an operator's words.

    Empty when there is none. Mirrors ``tokens``: the provider is not asked again
    before ``next_attempt_at`` unless the client was changed after the error;
    after transient failures (``refresh_attempts``) that is the back-off.
    """
    if token.next_attempt_at is None:
        return ""
    code = token.last_error_code or "error"
    now = now or timezone.now()
    changed = token.last_error_at is not None and (
        client.updated_at > token.last_error_at
    )
    attempts = getattr(token, "refresh_attempts", 0)
    if attempts:
        times = "once" if attempts == 1 else f"{attempts} times in a row"
        if changed or token.next_attempt_at <= now:
            return f"refresh failed {times} ({code}); retried on next use"
        return (
            f"refresh failed {times} ({code}), probably a provider outage; "
            f"next attempt in {_words(timeuntil(token.next_attempt_at, now))}"
        )
    fix = _FIXES.get(code, "see the last error")
    if changed or token.next_attempt_at <= now:
        retry = "retried on next use"
    else:
        retry = (
            f"not retried for {_words(timeuntil(token.next_attempt_at, now))} "
            "unless the client is saved or re-authorized"
        )
    return f"refresh refused ({code}): {fix}; {retry}"


def refresh_in_flight(
    token: OAuth2Token, *, now: datetime.datetime | None = None
) -> str:
    """A refresh claimed by a process (``tokens._claim``), in an operator's words.

    A claim past its end was left by a process that stopped in the middle of a
    refresh: harmless, the next refresh takes it over, but worth seeing when
    callers of an expired token were told that another worker was refreshing it.
    """
    claim = getattr(token, "refresh_claim", "")
    until = getattr(token, "refresh_claimed_until", None)
    if not claim or until is None:
        return ""
    now = now or timezone.now()
    if until > now:
        return "a refresh is in progress"
    return (
        "a refresh was cut short (its process stopped) "
        f"{_words(timesince(until, now))} ago; the next refresh takes over"
    )


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
                "account_name": token.account_name if token else "",
                "token_status": token.status if token else None,
                "expires_at": _iso(token.expires_at if token else None),
                "refresh_token_expires_at": _iso(
                    token.refresh_token_expires_at if token else None
                ),
                "obtained_at": _iso(token.obtained_at if token else None),
                "refreshed_at": _iso(token.refreshed_at if token else None),
                "last_error": token.last_error if token else "",
                "last_error_at": _iso(token.last_error_at if token else None),
                "last_error_code": token.last_error_code if token else "",
                "next_attempt_at": _iso(token.next_attempt_at if token else None),
                "refresh_attempts": token.refresh_attempts if token else 0,
            }
        )
    return result


def has_refresh_token(token: OAuth2Token) -> bool:
    """From ``without_secrets``'s annotation when there is one (no decryption)."""
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
