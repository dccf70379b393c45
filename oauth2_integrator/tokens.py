"""Handing out valid access tokens, refreshing them single-flight, and the failure policy.

A refresh spends a refresh token: providers that rotate them revoke the whole chain
when a spent one is replayed. So the refresh

- claims the row around the call to the token endpoint (``_claim``: a conditional
  UPDATE that only succeeds on the row as it was read; on PostgreSQL the read and
  the claim are one ``UPDATE ... RETURNING``, ``_read_and_claim``), so two
  processes never spend the same refresh token, and no transaction stays open
  during the call; the answer is stored with its audit event in one statement;
- waits a bounded time for another process's claim (``LOCK_WAIT_TIMEOUT``): a
  caller whose token is still valid does not wait at all;
- commits on its own, never inside a transaction the caller opened: when the
  caller is inside ``transaction.atomic()`` (or a view under ``ATOMIC_REQUESTS``),
  the refresh runs on a separate database connection, so a later rollback in the
  caller cannot bring back the spent refresh token or undo an ``invalid_grant``;
- never loses a successful answer to a storage error: if the full row cannot be
  saved, the new access token, refresh token and expiry are saved alone;
- after a permanent error (``invalid_client``, ``unauthorized_client``, ...) does not
  ask the provider again until the client registration changes, the client is
  re-authorized, or ``PERMANENT_ERROR_RETRY_DELAY`` has passed;
- after a transient failure (timeout, connection error, 5xx, 429, an answer that is
  not a token) backs off exponentially with jitter (``BACKOFF_FIRST`` doubling up to
  ``BACKOFF_MAX``, or the provider's longer ``Retry-After``), recorded on the row
  (``refresh_attempts``, ``next_attempt_at``) so that every caller, the sweep and
  the workers share it: during an outage the provider sees one call per step,
  while a still-valid token keeps being served;
- tells an operator once per incident (``notifications``) when one must act.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import random
import secrets
import threading
import time
import traceback
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from django.db import DatabaseError, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q, QuerySet
from django.utils import timezone

from . import (
    cache,
    events,
    flow,
    notifications,
    prepared,
    providers,
    refresh_read,
    signals,
    status,
)
from .conf import app_settings
from .exceptions import (
    AuthorizationRequired,
    ConfigurationError,
    OAuth2IntegratorError,
    TokenEndpointError,
    TokenRefreshError,
)
from .masking import mask
from .models import OAuth2Client, OAuth2Event, OAuth2Token, TokenStatus

logger = logging.getLogger("oauth2_integrator")

__all__ = [
    "get_access_token",
    "get_token_values",
    "refresh_access_token",
    "store_token_set",
]

#: ``OAuth2Token.provider_values`` key of a token endpoint chosen by the callback
#: (``ProviderProfile.token_endpoint_from_callback``): refreshes go there too.
TOKEN_ENDPOINT_VALUE = "token_endpoint"  # noqa: S105 (a key name)

T = TypeVar("T")

#: ``last_error_code`` when the refreshed token could only be saved in part.
STORAGE_ERROR = "storage_error"


class _RefreshInProgress(TokenRefreshError):
    """Another worker holds the claim on the row; the caller's token is still valid."""


class _HeldBack(TokenRefreshError):
    """A permanent error was recorded and nothing changed since, or a transient one
    is being backed off (``backoff``): no call is made."""

    backoff: bool = False


def _client(name: str) -> OAuth2Client:
    try:
        client = OAuth2Client.objects.get(name=name)
    except OAuth2Client.DoesNotExist:
        raise ConfigurationError(
            f"There is no OAuth2 client named {name!r}. Register it in the Django admin "
            "(OAuth2 clients) or with `manage.py oauth2_import_clients`.",
            client=name,
        ) from None
    return client


#: What the valid-token path reads: the access token is the only secret decrypted.
_HOT_COLUMNS = (
    "access_token",
    "expires_at",
    "obtained_at",
    "refreshed_at",
    "status",
    "client__enabled",
    "next_attempt_at",
)

#: The valid-token query: one narrow read, compiled once per thread's connection.
_HOT_READ = prepared.Select(
    lambda alias, key: (
        OAuth2Token.objects.using(alias)
        .filter(client__name=prepared.slot("name"), account=prepared.slot("account"))
        .values_list(*_HOT_COLUMNS)[:1]
    )
)


def _hot_read(name: str, account: str) -> tuple[Any, ...] | None:
    """One query: the access token (decrypted) and what decides whether it is
    served as it is; None when there is no such token."""
    alias = router.db_for_read(OAuth2Token)
    return _HOT_READ.first(alias, {"name": name, "account": account})


def _refresh_at(
    expires_at: datetime.datetime | None,
    issued: datetime.datetime,
    margin: float,
) -> datetime.datetime | None:
    """When the token enters its refresh margin (``OAuth2Token.needs_refresh``:
    the margin is capped at half the token's lifetime); None if it never expires."""
    if expires_at is None:
        return None
    lifetime = (expires_at - issued).total_seconds()
    if lifetime > 0:
        margin = min(margin, lifetime / 2)
    return expires_at - datetime.timedelta(seconds=margin)


def _read_token(name: str, account: str) -> OAuth2Token | None:
    """The token with its client, as ``select_related("client")`` would build them."""
    alias = router.db_for_read(OAuth2Token)
    row = refresh_read.FULL_READ.first(alias, {"name": name, "account": account})
    return None if row is None else refresh_read.token_from_row(alias, row)


def _read_and_claim(name: str, account: str, alias: str) -> OAuth2Token | None:
    """The token with its client, already claimed for a refresh: ``_read_token``
    and ``_claim`` in one round trip instead of two, for the common case (an
    active token with a refresh token, its client enabled, nobody refreshing it,
    no back-off or hold-back pending).

    None whenever that is not so, on databases without ``UPDATE ... RETURNING``
    and inside a caller's transaction (where the claim must commit on the
    refresh's own connection): the caller then reads and decides as before, which
    also says why a token cannot be refreshed.
    """
    connection = connections[alias]
    if connection.vendor != "postgresql" or _in_caller_transaction(connection):
        return None
    now = timezone.now()
    claim = secrets.token_hex(8)
    until = now + _claim_lifetime()
    row = refresh_read.claim(
        alias, [claim, until, name, account, TokenStatus.ACTIVE.value, now, now]
    )
    if row is None:
        return None
    return refresh_read.token_from_row(
        alias, refresh_read.FULL_READ.convert(alias, row)
    )


def _load(name: str, account: str) -> tuple[OAuth2Client, OAuth2Token]:
    """The client and its usable token, in one query (the refresh path, the checks).

    Everything is loaded, client secret included: a refresh needs all of it.
    """
    token = _read_token(name, account)
    client = token.client if token else _client(name)
    if not client.enabled:
        raise AuthorizationRequired(
            f"OAuth2 client {name!r} is disabled. Enable it in the Django admin.",
            client=name,
        )
    if token is None:
        raise AuthorizationRequired(
            f"OAuth2 client {name!r} is not authorized yet: an operator must press "
            "Authorize on its page in the Django admin.",
            client=name,
        )
    if token.status != TokenStatus.ACTIVE:
        reason = f" ({token.last_error})" if token.last_error else ""
        raise AuthorizationRequired(
            f"OAuth2 client {name!r} needs re-authorization{reason}: an operator "
            "must press Re-authorize on its page in the Django admin.",
            client=name,
        )
    return client, token


def _load_for_refresh(
    name: str, account: str, *, claim: bool = True
) -> tuple[OAuth2Client, OAuth2Token, bool]:
    """``_load`` for a refresh: the client, its token, and whether the token is
    already claimed (``_read_and_claim``, unless ``claim`` is False; the claim is
    the caller's to use or release)."""
    if claim:
        token = _read_and_claim(name, account, router.db_for_write(OAuth2Token))
        if token is not None:
            return token.client, token, True
    return (*_load(name, account), False)


def get_access_token(name: str, *, account: str = "") -> str:
    """A valid access token for the client ``name``, refreshed first when it expires soon.

    Raises ``AuthorizationRequired`` when an operator must act, and
    ``TokenRefreshError`` when a needed refresh failed (or is held back after a
    permanent error) and the stored token has already expired.

    A valid token costs one narrow query and one decryption (or, with
    ``TOKEN_CACHE_TTL``, a lookup in this process's memory); anything else takes
    the full path below.
    """
    ttl = app_settings.TOKEN_CACHE_TTL
    if ttl:
        cached = cache.get(name, account)
        if cached is not None:
            return cached
        seen_generation = cache.generation()
    row = _hot_read(name, account)
    claim = False
    if row is not None:
        access_token, expires_at, obtained_at, refreshed_at, status, enabled, retry = (
            row
        )
        if enabled and status == TokenStatus.ACTIVE:
            refresh_at = _refresh_at(
                expires_at, refreshed_at or obtained_at, app_settings.REFRESH_MARGIN
            )
            if refresh_at is None or timezone.now() < refresh_at:
                if ttl:
                    cache.put(
                        name,
                        account,
                        access_token,
                        refresh_at=refresh_at,
                        ttl=ttl,
                        seen_generation=seen_generation,
                    )
                return str(access_token)
            # Due. The one-statement claim takes no token with a back-off or
            # hold-back pending: don't send it only to be refused (every caller
            # during an outage would).
            claim = retry is None or retry <= timezone.now()
    return _get_access_token_slow(name, account, claim=claim)


def _get_access_token_slow(name: str, account: str, *, claim: bool) -> str:
    client, token, claimed = _load_for_refresh(name, account, claim=claim)
    if not claimed and not token.needs_refresh(app_settings.REFRESH_MARGIN):
        return token.access_token
    if not token.refresh_token and not _can_renew(client, token):
        if token.is_expired:
            raise AuthorizationRequired(
                f"The access token of OAuth2 client {name!r} has expired and the provider "
                "gave no refresh token: an operator must re-authorize it in the Django admin.",
                client=name,
            )
        return token.access_token
    try:
        return _refresh(client, token, force=False, claimed=claimed)
    except TokenRefreshError as exc:
        if token.is_expired:
            raise
        if isinstance(exc, _RefreshInProgress | _HeldBack):
            logger.debug("OAuth2 client %r: %s", name, exc)
        else:
            logger.warning(
                "Refreshing OAuth2 client %r failed (%s); its current access token is "
                "still valid until %s and is used meanwhile.",
                name,
                exc,
                token.expires_at,
            )
        return token.access_token


def refresh_access_token(name: str, *, account: str = "") -> str:
    """Refresh now, whatever the expiry; returns the new access token.

    A permanent error recorded earlier still holds the refresh back (see
    ``get_access_token``): saving the client in the admin lifts it.
    """
    client, token, claimed = _load_for_refresh(name, account)
    if not token.refresh_token and not _can_renew(client, token):
        raise AuthorizationRequired(
            f"OAuth2 client {name!r} has no refresh token (the provider did not issue one): "
            "an operator must re-authorize it in the Django admin.",
            client=name,
        )
    return _refresh(client, token, force=True, claimed=claimed)


def get_token_values(name: str, *, account: str = "") -> dict[str, Any]:
    """The values kept with the client's token: ``callback_values`` and
    ``token_values`` of its provider profile (``realmId``, ``instance_url``, ...).

    Raises ``AuthorizationRequired`` when the client has no token yet.
    """
    row = (
        OAuth2Token.objects.filter(client__name=name, account=account)
        .values_list("provider_values", flat=True)
        .first()
    )
    if row is None:
        _client(name)  # ConfigurationError for an unknown client
        raise AuthorizationRequired(
            f"OAuth2 client {name!r} is not authorized yet: an operator must press "
            "Authorize on its page in the Django admin.",
            client=name,
        )
    return dict(row or {})


def _config_for_token(
    client: OAuth2Client, token: OAuth2Token
) -> providers.ClientConfig:
    """The client's configuration, with the token endpoint its login chose
    (``token_endpoint_from_callback``) when there was one."""
    config = providers.configure(client)
    chosen = (token.provider_values or {}).get(TOKEN_ENDPOINT_VALUE)
    if isinstance(chosen, str) and chosen:
        config = config.replace(token_endpoint=chosen, refresh_endpoint=chosen)
    return config


def _can_renew(client: OAuth2Client, token: OAuth2Token) -> bool:
    """A token without a refresh token: can its profile renew it
    (``ProviderProfile.renewal_request``)? A profile that fails to say is asked
    again under the lock, where the failure is recorded as for a refresh."""
    try:
        config = _config_for_token(client, token)
        return config.profile.renewal_request(config, token) is not None
    except Exception:  # recorded by the locked attempt
        return True


# --- the failure policy for permanent errors ----------------------------------------


def _held_back(
    client: OAuth2Client, token: OAuth2Token, *, now: datetime.datetime | None = None
) -> _HeldBack | None:
    """The error to raise instead of calling the provider, or None to call it.

    After a permanent error the same request would fail the same way: it is not
    repeated until the client registration changes (``updated_at``), an operator
    re-authorizes (which clears ``next_attempt_at``), or the retry delay passes.
    """
    if token.next_attempt_at is None:
        return None
    now = now or timezone.now()
    if now >= token.next_attempt_at:
        return None
    if token.last_error_at is not None and client.updated_at > token.last_error_at:
        return None
    code = token.last_error_code or "error"
    if token.refresh_attempts:
        times = (
            "once"
            if token.refresh_attempts == 1
            else f"{token.refresh_attempts} times in a row"
        )
        held = _HeldBack(
            f"Refreshing the token of OAuth2 client {client.name!r} failed {times} "
            f"({code}); backing off, the next attempt is at "
            f"{token.next_attempt_at.astimezone(datetime.UTC):%Y-%m-%d %H:%M:%S} UTC. "
            "Nothing to do if the provider recovers; the status page has the last "
            "error.",
            client=client.name,
            error=code,
        )
        held.backoff = True
        return held
    return _HeldBack(
        f"The provider refused to refresh the token of OAuth2 client {client.name!r} "
        f"({code}) and is not asked again before "
        f"{token.next_attempt_at.astimezone(datetime.UTC):%Y-%m-%d %H:%M} UTC: fix "
        "the client registration and save it in the Django admin, or re-authorize "
        "the client.",
        client=client.name,
        error=code,
    )


def backoff_delay(attempts: int, retry_after: float | None = None) -> float:
    """Seconds to wait after the ``attempts``-th transient failure in a row.

    ``BACKOFF_FIRST`` doubled each time, at most ``BACKOFF_MAX``, times a random
    1 to 1.25 (so tokens that failed together do not come back together; the first
    step is never shorter than ``BACKOFF_FIRST``). A provider's ``Retry-After``
    wins when it is longer (``flow.parse_retry_after`` caps it at a day).
    """
    first = float(app_settings.BACKOFF_FIRST)
    cap = max(float(app_settings.BACKOFF_MAX), first)
    step = first * 2 ** min(max(attempts, 1) - 1, 40)
    delay = min(cap, step * random.uniform(1.0, 1.25))  # noqa: S311 (not a secret)
    if retry_after:
        delay = max(delay, retry_after)
    return delay


# --- running the refresh outside the caller's transaction ---------------------------


def _in_caller_transaction(connection: BaseDatabaseWrapper) -> bool:
    """True when the caller has a transaction open on ``connection``.

    The test framework's own atomic blocks (pytest-django's ``db``, Django's
    ``TestCase``) are not the caller's: Django's ``durable`` check skips them too.
    """
    if connection.in_atomic_block:
        return any(
            not getattr(block, "_from_testcase", False)
            for block in connection.atomic_blocks
        )
    return not connection.get_autocommit()


def _on_own_connection(alias: str, func: Callable[[], T]) -> T:
    """Run ``func`` so that what it commits survives a rollback in the caller.

    Inside a caller's transaction, ``func`` runs in a short-lived thread, which has
    its own Django connection (closed afterwards) and commits on its own. SQLite
    (no row-level locking: one writer locks the whole database) is the exception:
    a second connection would wait for the caller's write lock and could lose the
    refresh to "database is locked", so there the refresh shares the caller's
    transaction (SQLite is for development).
    """
    connection = connections[alias]
    row_level_locking = connection.features.has_select_for_update
    if not row_level_locking or not _in_caller_transaction(connection):
        return func()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = func()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc
        finally:
            connections.close_all()  # this thread's connections only

    thread = threading.Thread(target=run, name="oauth2-integrator-refresh")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


# --- the claim: one refresh at a time per token -------------------------------------


def _claim_lifetime() -> datetime.timedelta:
    """How long a claim protects a refresh in progress.

    Every call to the provider ends within ``TOKEN_REQUEST_DEADLINE`` (the
    transport's watchdog) and a refresh makes at most three under the claim (an
    OpenID Connect client with a cold cache fetches its discovery document and,
    when that names no revocation endpoint, RFC 8414 metadata, then the token
    request); the rest is slack for the database. A claim that ran out before the
    answer is stored would let another process send the refresh token this one
    already spent. A process that dies mid-refresh leaves its claim to run out: until
    then callers with a valid token keep it, and callers with an expired one wait
    ``LOCK_WAIT_TIMEOUT`` and get ``TokenRefreshError``.
    """
    return datetime.timedelta(
        seconds=3 * float(app_settings.TOKEN_REQUEST_DEADLINE) + 30
    )


#: The columns every writer that matters changes (a refresh, a login, a recorded
#: failure or back-off, a told incident): a row with the same values is the row as
#: it was read.
_VERSION = ("updated_at", "obtained_at", "refreshed_at", "next_attempt_at")


def _build_claim(alias: str, key: Any) -> tuple[QuerySet[OAuth2Token], list[str]]:
    """The claim's UPDATE: only on the row as it was read, and only when nobody
    holds a live claim. SQL's NULL equals nothing, so a version column without a
    value is matched with ``IS NULL`` (``key`` says which)."""
    active_only, empty = key
    slot = prepared.slot
    rows = OAuth2Token.objects.using(alias).filter(
        pk=slot(f"where:{_PK}"),
        **{
            column: None if null else slot(f"where:{column}")
            for column, null in zip(_VERSION, empty, strict=True)
        },
    )
    rows = rows.filter(
        Q(refresh_claim="")
        | Q(refresh_claimed_until__lt=slot("where:refresh_claimed_until"))
    )
    if active_only:
        rows = rows.filter(status=TokenStatus.ACTIVE)
    return rows, ["refresh_claim", "refresh_claimed_until"]


_PK = OAuth2Token._meta.pk.name if OAuth2Token._meta.pk else "id"
_CLAIM = prepared.Update(OAuth2Token, _build_claim)


def _version(token: OAuth2Token) -> tuple[Any, ...]:
    return tuple(getattr(token, column) for column in _VERSION)


def _claimed_now(token: OAuth2Token) -> bool:
    """Another process holds a live claim on the row (as read into ``token``)."""
    until = token.refresh_claimed_until
    return bool(token.refresh_claim) and until is not None and until > timezone.now()


class _Patience:
    """Short sleeps, 20 ms doubling to 250 ms, until ``wait`` seconds have passed:
    for waiting on another process's claim without hammering the database."""

    def __init__(self, wait: float) -> None:
        self._deadline = time.monotonic() + max(0.0, wait)
        self._pause = 0.02

    def sleep(self) -> bool:
        """Sleep a little; False (without sleeping) once the time is up."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(self._pause, remaining))
        self._pause = min(self._pause * 2, 0.25)
        return True


def _claim(
    seen: OAuth2Token,
    alias: str,
    *,
    name: str,
    wait: float,
    active_only: bool = True,
    follow: bool = False,
) -> OAuth2Token:
    """Claim the token row for one refresh (or a revocation) and return it.

    A refresh spends the refresh token, so two processes must never send the same
    one. Rather than a row lock held across the call to the provider (a database
    transaction and connection pinned for up to ``TOKEN_REQUEST_DEADLINE``, which
    a transaction-pooling proxy cannot share, and nothing at all on SQLite), the
    row is claimed by one conditional ``UPDATE`` in its own short transaction: it
    succeeds only if the row is still as ``seen`` was read and nobody else holds a
    live claim. So what ``seen`` holds is current, and no re-read is needed; the
    claim is released by the write that stores the outcome (``_store_claimed``),
    which also only succeeds while the claim is ours.

    The returned token carries its ``refresh_claim``; a token whose claim is "" is
    the row as it is now, changed since ``seen`` was read (a refresh or a login
    meanwhile, a recorded failure): the caller decides again on it, or with
    ``follow`` the claim is retried on it. Raises ``AuthorizationRequired`` when
    the row is gone or (``active_only``) no longer active, ``_RefreshInProgress``
    when another process holds the claim and ``wait`` is 0, and
    ``TokenRefreshError`` when it holds it longer than ``wait`` seconds.
    """
    patience = _Patience(wait)
    races = 0
    rows = OAuth2Token.objects.using(alias)
    while True:
        now = timezone.now()
        claim = secrets.token_hex(8)
        until = now + _claim_lifetime()
        version = _version(seen)
        taken = _CLAIM.run(
            alias,
            {
                f"where:{_PK}": seen.pk,
                **{f"where:{c}": v for c, v in zip(_VERSION, version, strict=True)},
                "where:refresh_claimed_until": now,
                "refresh_claim": claim,
                "refresh_claimed_until": until,
            },
            key=(active_only, tuple(value is None for value in version)),
        )
        if taken:
            seen.refresh_claim, seen.refresh_claimed_until = claim, until
            return seen
        current = rows.filter(pk=seen.pk).first()
        if current is None or (active_only and current.status != TokenStatus.ACTIVE):
            raise AuthorizationRequired(
                f"OAuth2 client {name!r} needs re-authorization: an operator must "
                "press Re-authorize on its page in the Django admin.",
                client=name,
            )
        if _version(current) != version:
            if not follow:
                # Not claimed by this process, whatever claim the row carries.
                current.refresh_claim = ""
                return current
            current.client = seen.client
            seen = current
            continue
        if not _claimed_now(current) and races < 3:
            races += 1  # released between the UPDATE and the read: try again
            continue
        if not patience.sleep():
            if wait <= 0:
                raise _RefreshInProgress(
                    f"Another worker is refreshing the token of OAuth2 client {name!r} "
                    "right now.",
                    client=name,
                )
            raise TokenRefreshError(
                f"Another worker has been refreshing the token of OAuth2 client "
                f"{name!r} for more than {wait:g} s (LOCK_WAIT_TIMEOUT); try again "
                "shortly. If this repeats, check that the token endpoint answers "
                "within TOKEN_REQUEST_DEADLINE.",
                client=name,
            )


_RELEASE = prepared.Update(
    OAuth2Token,
    lambda alias, key: (
        OAuth2Token.objects.using(alias).filter(
            pk=prepared.slot(f"where:{_PK}"),
            refresh_claim=prepared.slot("where:refresh_claim"),
        ),
        ["refresh_claim", "refresh_claimed_until"],
    ),
)


def _release(token: OAuth2Token, alias: str) -> None:
    """Give the claim back without storing anything (the refresh was not made)."""
    if not token.refresh_claim:
        return
    _RELEASE.run(
        alias,
        {
            f"where:{_PK}": token.pk,
            "where:refresh_claim": token.refresh_claim,
            "refresh_claim": "",
            "refresh_claimed_until": None,
        },
    )
    token.refresh_claim, token.refresh_claimed_until = "", None


def _one_statement(alias: str) -> contextlib.AbstractContextManager[Any]:
    """Around a write that may fail: on its own it is a transaction of its own;
    inside a transaction (the test framework's, or a caller's on SQLite) it needs
    a savepoint, or PostgreSQL refuses every later statement of that transaction."""
    if connections[alias].in_atomic_block:
        return transaction.atomic(using=alias)
    return contextlib.nullcontext()


def _build_store(alias: str, fields: Any) -> tuple[QuerySet[OAuth2Token], list[str]]:
    rows = OAuth2Token.objects.using(alias).filter(
        pk=prepared.slot(f"where:{_PK}"),
        refresh_claim=prepared.slot("where:refresh_claim"),
        status=TokenStatus.ACTIVE,
    )
    return rows, [*fields, "updated_at", "refresh_claim", "refresh_claimed_until"]


_STORE = prepared.Update(OAuth2Token, _build_store)


def _store_claimed(
    token: OAuth2Token,
    alias: str,
    fields: list[str],
    *,
    event: OAuth2Event | None = None,
) -> bool:
    """Write ``fields`` of the claimed row and release the claim, in one UPDATE.

    Only while the claim is still ours and the token active: a login, a
    Disconnect or a moved token endpoint meanwhile wins, and so does a process that
    took over a claim this one outlived. False when nothing was written.
    ``event`` is written with the row, only if the row is (``prepared.Update``).
    """
    now = timezone.now()
    values = {field: getattr(token, field) for field in fields}
    values.update(
        {
            f"where:{_PK}": token.pk,
            "where:refresh_claim": token.refresh_claim,
            "updated_at": now,
            "refresh_claim": "",
            "refresh_claimed_until": None,
        }
    )
    written = _STORE.run(alias, values, key=tuple(fields), and_insert=event)
    if written:
        token.updated_at = now
        token.refresh_claim, token.refresh_claimed_until = "", None
    return bool(written)


# --- the refresh --------------------------------------------------------------------


@dataclasses.dataclass
class _Outcome:
    """What the locked part did; signals and errors go out after it committed."""

    token: OAuth2Token
    refreshed: bool = False
    failure: OAuth2IntegratorError | None = None
    scope_narrowed: list[str] = dataclasses.field(default_factory=list)
    #: This failure opened an incident (recorded under the claim): tell the operator.
    incident: bool = False


#: Decides, on the freshly locked row, whether a refresh is still due.
DuePredicate = Callable[[OAuth2Client, OAuth2Token], bool]


def _refresh(
    client: OAuth2Client, seen: OAuth2Token, *, force: bool, claimed: bool = False
) -> str:
    return _refresh_outcome(
        client, seen, force=force, claimed=claimed
    ).token.access_token


def _refresh_outcome(
    client: OAuth2Client,
    seen: OAuth2Token,
    *,
    force: bool,
    due: DuePredicate | None = None,
    wait: float | None = None,
    claimed: bool = False,
) -> _Outcome:
    """Refresh under the claim; signals and the operator's notice go out after.

    ``due`` replaces the expiry check made once the row is locked (the sweep
    refreshes idle tokens too); ``wait`` 0 skips a token another runner holds;
    ``claimed``: ``seen`` holds this process's claim already (``_read_and_claim``).
    """
    # A claimed row had no back-off pending (``_read_and_claim``); either way the
    # check is made again under the claim.
    held = None if claimed else _held_back(client, seen)
    if held is not None:
        raise held
    alias = router.db_for_write(OAuth2Token)
    if wait is None:
        wait = (
            float(app_settings.LOCK_WAIT_TIMEOUT)
            if force or seen.is_expired
            else 0.0  # a still-valid token is served at once while another refreshes
        )
    outcome = _on_own_connection(
        alias,
        lambda: _refresh_locked(
            client, seen, force=force, alias=alias, wait=wait, due=due, claimed=claimed
        ),
    )
    token = outcome.token
    if outcome.failure is not None:
        needs_reauthorization = isinstance(outcome.failure, AuthorizationRequired)
        signals.token_refresh_failed.send(
            sender=OAuth2Client,
            client=client,
            error=outcome.failure,
            reauthorization_required=needs_reauthorization,
        )
        if outcome.incident:
            notifications.tell_operator(
                client,
                token,
                reason=str(outcome.failure),
                reauthorization=needs_reauthorization,
            )
        raise outcome.failure
    if outcome.refreshed:
        logger.info("Refreshed the access token of OAuth2 client %r.", client.name)
        signals.token_refreshed.send(
            sender=OAuth2Client,
            client=client,
            token=token,
            scope_narrowed=outcome.scope_narrowed,
        )
    return outcome


def _refresh_locked(
    client: OAuth2Client,
    seen: OAuth2Token,
    *,
    force: bool,
    alias: str,
    wait: float,
    due: DuePredicate | None = None,
    claimed: bool = False,
) -> _Outcome:
    token = seen
    ours = claimed
    try:
        while True:
            if token is not seen and (
                token.refreshed_at != seen.refreshed_at
                or token.obtained_at != seen.obtained_at
            ):
                # Another process refreshed (or an operator re-authorized) meanwhile.
                return _Outcome(token)
            if due is not None:
                still_due = force or due(client, token)
            else:
                still_due = force or token.needs_refresh(app_settings.REFRESH_MARGIN)
            if not still_due:
                return _Outcome(token)
            held = _held_back(client, token)
            if held is not None:
                raise held
            if ours:
                break
            token = _claim(token, alias, name=client.name, wait=wait)
            token.client = client  # already loaded; saves a query
            ours = bool(token.refresh_claim)
        return _refresh_claimed(client, token, alias)
    finally:
        if ours:
            _release(token, alias)  # when nothing was stored


def _refresh_claimed(client: OAuth2Client, token: OAuth2Token, alias: str) -> _Outcome:
    try:
        config = _config_for_token(client, token)
        if token.refresh_token:
            token_set = flow.refresh(
                config, refresh_token=token.refresh_token, scope=token.scope
            )
        else:
            renewal = config.profile.renewal_request(config, token)
            if renewal is None:
                raise AuthorizationRequired(
                    f"OAuth2 client {client.name!r} has no refresh token any "
                    "more: an operator must re-authorize it in the Django admin.",
                    client=client.name,
                )
            token_set = flow.renew(config, renewal)
    except TokenEndpointError as exc:
        failure, told = _record_failure(client, token, exc, alias)
        return _Outcome(token, failure=failure, incident=told)
    except (ConfigurationError, AuthorizationRequired) as exc:
        # An operator's problem with a clear message: recorded and raised as is.
        told = _write_failure(
            token, alias, message=str(exc), code="configuration", incident=True
        )
        return _Outcome(token, failure=exc, incident=told)
    except Exception as exc:
        return _Outcome(token, failure=_record_unexpected(client, token, exc, alias))
    dropped = _dropped_scopes(config, token.scope, token_set.scope)
    told_at = token.incident_notified_at
    stored_secrets = {field: getattr(token, field) for field in _SECRETS_OFTEN_KEPT}
    _apply(token, token_set, keep_refresh_token=True)
    unchanged = {f for f, v in stored_secrets.items() if getattr(token, f) == v}
    token.refreshed_at = timezone.now()
    if told_at is not None and status.renewal_problem(
        client, token, renews=True if token.refresh_token else None
    ):
        # Still ending (a refresh token whose known lifetime runs out): the
        # operator was told about this incident already.
        token.incident_notified_at = told_at
    event = events.refreshed_event(client, dropped)
    _save_refreshed(client, token, alias, event, unchanged=unchanged)
    if dropped:
        logger.warning(
            "The provider narrowed the scope of OAuth2 client %r on refresh: it no "
            "longer grants %s. Re-authorize the client if they are needed.",
            client.name,
            ", ".join(dropped),
        )
    return _Outcome(token, refreshed=True, scope_narrowed=dropped)


def _dropped_scopes(
    config: providers.ClientConfig, before: str, after: str | None
) -> list[str]:
    """Scopes granted before and missing from a refresh's ``scope`` (RFC 6749 §6).

    A response without ``scope`` keeps the scope as it was (§5.1), so drops nothing.
    """
    if after is None:
        return []
    separator = config.options.scope_separator or " "

    def split(scope: str) -> set[str]:
        return {s for part in scope.split() for s in part.split(separator) if s}

    return sorted(split(before) - split(after))


#: What a refresh writes: the provider's answer (``_apply``) and when it came.
_REFRESHED_FIELDS = [
    "access_token",
    "token_type",
    "refresh_token",
    "refresh_token_expires_at",
    "scope",
    "expires_at",
    "extra",
    "provider_values",
    "status",
    "last_error",
    "last_error_at",
    "last_error_code",
    "next_attempt_at",
    "refresh_attempts",
    "incident_notified_at",
    "refreshed_at",
]

#: Encrypted columns a refresh often leaves as they were (a provider that does not
#: rotate refresh tokens, or sends the same one again; an answer without extras).
#: Unchanged, they are not written again, which spares their encryption and their
#: bytes on the wire. Nobody else writes them while the claim is held: a login or
#: a Disconnect ends the claim, and the store then writes nothing.
_SECRETS_OFTEN_KEPT = ("refresh_token", "extra")

#: What survives a database that refuses the rest of the answer: the values that
#: come from the provider as free text or JSON are left out.
_ESSENTIAL_FIELDS = [
    field
    for field in _REFRESHED_FIELDS
    if field not in ("token_type", "scope", "extra", "provider_values")
]


def _save_refreshed(
    client: OAuth2Client,
    token: OAuth2Token,
    alias: str,
    event: OAuth2Event,
    *,
    unchanged: Collection[str] = (),
) -> None:
    """Save a refreshed token with its event; if the whole row cannot be stored,
    save what matters.

    The provider has already spent the old refresh token: losing its answer to a
    provider string that does not fit a column would leave the spent one behind.
    The encrypted columns and the expiry always fit, so they are saved alone and
    the problem is recorded; the event then follows on its own (``events.record``
    never fails the caller), so it cannot cost the token either.
    """
    try:
        with _one_statement(alias):
            fields = [f for f in _REFRESHED_FIELDS if f not in unchanged]
            stored = _store_claimed(token, alias, fields, event=event)
    except DatabaseError as exc:
        problem: DatabaseError | None = exc
    else:
        problem = None
    if problem is not None:
        stored = _save_essentials(client, token, alias, problem)
        if stored:
            events.record(
                client, event.kind, outcome=event.outcome, detail=event.detail
            )
    elif stored:
        events.maybe_prune()  # as ``events.record`` does after each event
    if not stored:
        logger.error(
            "The refreshed token of OAuth2 client %r was not stored: the token was "
            "changed meanwhile (re-authorized, disconnected, or taken over by another "
            "process after this refresh outlived its claim).",
            client.name,
        )
        raise TokenRefreshError(
            f"The token of OAuth2 client {client.name!r} was changed while it was "
            "being refreshed (re-authorized or disconnected); this refresh's result "
            "was dropped. Ask again for the current token.",
            client=client.name,
        )


def _save_essentials(
    client: OAuth2Client, token: OAuth2Token, alias: str, problem: DatabaseError
) -> bool:
    note = (
        "The refreshed token was saved, but not the rest of the provider's answer "
        f"(token type, scope, extras): the database refused it ({type(problem).__name__}). "
        "The server log has the details."
    )
    logger.error(
        "Saving the refreshed token of OAuth2 client %r failed (%s: %s); saving the "
        "new access token, refresh token and expiry alone.",
        client.name,
        type(problem).__name__,
        flow.clean_words(problem, 300),
    )
    token.last_error = note
    token.last_error_at = timezone.now()
    token.last_error_code = STORAGE_ERROR
    try:
        with _one_statement(alias):
            return _store_claimed(token, alias, _ESSENTIAL_FIELDS)
    except DatabaseError as exc:
        logger.error(
            "Could not store the refreshed token of OAuth2 client %r at all (%s); the "
            "provider may have rotated its refresh token, so the client may need "
            "re-authorization.",
            client.name,
            type(exc).__name__,
        )
        raise TokenRefreshError(
            f"The token of OAuth2 client {client.name!r} was refreshed but could not be "
            f"stored: the database failed ({type(exc).__name__}). Check the database; "
            "if the next refresh fails with invalid_grant, re-authorize the client.",
            client=client.name,
            error=STORAGE_ERROR,
        ) from exc


def _write_failure(
    token: OAuth2Token,
    alias: str,
    *,
    message: str,
    code: str,
    retry_after: float | None = None,
    status: str | None = None,
    attempts: int = 0,
    incident: bool = False,
) -> bool:
    """Record a failed refresh on the claimed row and release the claim; a storage
    problem here is only logged.

    ``attempts``: transient failures in a row, this one included (0 for the
    others). ``incident``: an operator must act; the row is marked as told, and
    True is returned when this call is the one that must tell them (the row is
    claimed, so exactly one runner does).
    """
    now = timezone.now()
    token.last_error = message
    token.last_error_at = now
    token.last_error_code = code[:100]
    token.next_attempt_at = (
        now + datetime.timedelta(seconds=retry_after) if retry_after else None
    )
    token.refresh_attempts = attempts
    fields = [
        "last_error",
        "last_error_at",
        "last_error_code",
        "next_attempt_at",
        "refresh_attempts",
    ]
    tell = incident and token.incident_notified_at is None
    if tell:
        token.incident_notified_at = now
        fields.append("incident_notified_at")
    if status is not None:
        token.status = status
        fields.append("status")
    try:
        with _one_statement(alias):
            written = _store_claimed(token, alias, fields)
    except DatabaseError as exc:
        logger.error(
            "Could not record the failed refresh of OAuth2 client %r (%s).",
            token.client.name,
            type(exc).__name__,
        )
        return False
    return tell and written


def _back_off(
    token: OAuth2Token,
    alias: str,
    *,
    message: str,
    code: str,
    retry_after: float | None = None,
) -> str:
    """Record a transient failure and the wait before the next attempt; returns
    the sentence that says when that is."""
    attempts = token.refresh_attempts + 1
    delay = backoff_delay(attempts, retry_after)
    _write_failure(
        token, alias, message=message, code=code, retry_after=delay, attempts=attempts
    )
    when = (token.next_attempt_at or timezone.now()).astimezone(datetime.UTC)
    return (
        f"The provider is asked again at {when:%Y-%m-%d %H:%M:%S} UTC "
        f"(attempt {attempts + 1})."
    )


def _record_failure(
    client: OAuth2Client, token: OAuth2Token, exc: TokenEndpointError, alias: str
) -> tuple[OAuth2IntegratorError, bool]:
    """Write down what went wrong; only ``invalid_grant`` changes the token's status.

    Returns the error for the caller and whether this failure opened an incident
    the operator must be told about.

    Transient failures back off (``_back_off``). So does an answer that is not a
    token (``invalid_response``: an HTML page, a body too large or too deep): that
    is far more often a proxy's error page or a maintenance page than a wrong URL,
    and the back-off reaches ``BACKOFF_MAX`` (an hour by default) within a few steps
    anyway. Other permanent errors (``invalid_client``, ``unauthorized_client``,
    ``invalid_scope``) would fail the same way on the next call, so the provider is
    not asked again for a while (``next_attempt_at``) and the operator is told.
    """
    code = exc.error or "error"
    told = False
    if exc.error == "invalid_grant":
        told = _write_failure(
            token,
            alias,
            message=str(exc),
            code=code,
            status=TokenStatus.REAUTHORIZATION_REQUIRED,
            incident=True,
        )
        failure: OAuth2IntegratorError = AuthorizationRequired(
            f"The provider no longer accepts the refresh token of OAuth2 client "
            f"{client.name!r} (invalid_grant): an operator must re-authorize it in the "
            "Django admin.",
            client=client.name,
            error=exc.error,
            description=exc.description,
            status=exc.status,
        )
    elif exc.transient or exc.error == "invalid_response":
        when = _back_off(
            token,
            alias,
            message=str(exc),
            code=code,
            retry_after=getattr(exc, "retry_after", None),
        )
        failure = _refresh_failed(client, exc, when)
    elif _client_saved_since_read(client):
        # The operator fixed the registration while this refresh, made with the
        # client as it was read, was on its way: no hold-back, nobody to tell.
        _write_failure(token, alias, message=str(exc), code=code)
        failure = _refresh_failed(
            client,
            exc,
            "The client was saved in the meantime; the next refresh uses the saved "
            "registration.",
        )
    else:
        delay = float(app_settings.PERMANENT_ERROR_RETRY_DELAY)
        told = _write_failure(
            token, alias, message=str(exc), code=code, retry_after=delay, incident=True
        )
        failure = _refresh_failed(
            client,
            exc,
            f"The provider is not asked again for {delay:g} s unless the client "
            "registration is changed in the Django admin or the client is "
            "re-authorized.",
        )
    logger.warning("Refreshing OAuth2 client %r failed: %s", client.name, exc)
    return failure, told


def _refresh_failed(
    client: OAuth2Client, exc: TokenEndpointError, then: str
) -> TokenRefreshError:
    """The caller's error: what the provider said, then what happens next."""
    return TokenRefreshError(
        f"Refreshing OAuth2 client {client.name!r} failed: {exc} {then}",
        client=client.name,
        error=exc.error,
        description=exc.description,
        status=exc.status,
    )


def _client_saved_since_read(client: OAuth2Client) -> bool:
    """True when the client row was saved after ``client`` was read: asked only
    after a refusal, so the refresh path pays nothing for it."""
    return OAuth2Client.objects.filter(
        pk=client.pk, updated_at__gt=client.updated_at
    ).exists()


def _record_unexpected(
    client: OAuth2Client, token: OAuth2Token, exc: Exception, alias: str
) -> TokenRefreshError:
    """A bug or a hostile answer (RecursionError, a provider hook's ValueError, ...).

    The traceback goes to the log with every secret this code knows masked; the
    caller gets a ``TokenRefreshError`` like any other failed refresh, and the
    next attempt backs off like a transient failure's (a hostile answer must not
    be fetched again by every caller).
    """
    kind = type(exc).__name__
    message = (
        f"Refreshing OAuth2 client {client.name!r} failed with an unexpected {kind}; "
        "the server log has the details. The stored token was not changed."
    )
    _back_off(token, alias, message=message, code="unexpected_error")
    text = "".join(traceback.format_exception(exc))
    secrets = [token.refresh_token, token.access_token]
    loaded_secret = client.__dict__.get("client_secret")
    if isinstance(loaded_secret, str):
        secrets.append(loaded_secret)
    for secret in secrets:
        if secret:
            text = text.replace(secret, mask(secret))
    logger.error(
        "Refreshing OAuth2 client %r failed with an unexpected %s:\n%s",
        client.name,
        kind,
        text,
    )
    return TokenRefreshError(message, client=client.name, error="unexpected_error")


def _apply(
    token: OAuth2Token, token_set: flow.TokenSet, *, keep_refresh_token: bool
) -> None:
    # The provider's clock started when it received the request: counting from
    # the answer's arrival would overstate the lifetime by the round trip.
    start = token_set.requested_at or timezone.now()
    token.access_token = token_set.access_token
    token.token_type = token_set.token_type
    if token_set.refresh_token_expires_in:
        token.refresh_token_expires_at = start + datetime.timedelta(
            seconds=token_set.refresh_token_expires_in
        )
    elif token_set.refresh_token or not keep_refresh_token:
        # A new refresh token whose lifetime was not said: the old date is not its.
        token.refresh_token_expires_at = None
    if token_set.refresh_token:
        token.refresh_token = token_set.refresh_token
    elif not keep_refresh_token:
        token.refresh_token = ""
    if token_set.scope is not None:
        token.scope = token_set.scope
    token.expires_at = (
        start + datetime.timedelta(seconds=token_set.expires_in)
        if token_set.expires_in
        else None
    )
    token.extra = {**(token.extra or {}), **token_set.extra}
    token.provider_values = {
        **(token.provider_values or {}),
        **token_set.provider_values,
    }
    token.status = TokenStatus.ACTIVE
    token.last_error = ""
    token.last_error_at = None
    token.last_error_code = ""
    token.next_attempt_at = None
    token.refresh_attempts = 0
    token.incident_notified_at = None


def store_token_set(
    client: OAuth2Client,
    token_set: flow.TokenSet,
    *,
    account: str = "",
    account_name: str = "",
    actor: Any = None,
) -> OAuth2Token:
    """Save the tokens of a completed authorization.

    A response without a refresh token keeps the stored one while it is still
    believed to work (Google issues one only on the first consent); after
    ``invalid_grant`` the stored one is dead and is dropped. A new login replaces
    the scope (the client's requested scope when the response names none) and the
    rest of the old response (an old ``id_token`` must not survive).

    A refresh in flight (its claim) may be spending the stored refresh token
    right now, and the login drops its answer: a login that would keep the stored
    one first waits for that refresh (at most ``LOCK_WAIT_TIMEOUT``) and, if it
    is still running, does not keep a refresh token that may be spent.
    """
    if token_set.refresh_token is None:
        _wait_for_refresh_in_flight(client, account)
    with transaction.atomic():
        # Two logins finishing at once for a client without a token would both
        # insert one: the client row's lock makes the second update the first's.
        OAuth2Client.objects.select_for_update().filter(pk=client.pk).values_list(
            "pk"
        ).first()
        # The old secrets are not read: a login must repair a token whose columns
        # no configured key opens any more. Saving writes only what is assigned.
        token = (
            OAuth2Token.objects.select_for_update()
            .defer(*OAuth2Token.SECRET_FIELDS)
            .filter(client=client, account=account)
            .first()
        )
        if token is None:
            token = OAuth2Token(client=client, account=account, scope=client.scope)
        replaced = _stored_refresh_token(token)
        keep = token.pk is not None and token.status == TokenStatus.ACTIVE
        if keep and token_set.refresh_token is None and _claimed_now(token):
            keep = False
            logger.warning(
                "OAuth2 client %r was re-authorized while a refresh of its old token "
                "was still running: the stored refresh token may be spent, so it is "
                "not kept. Re-authorize again if the provider sends none.",
                client.name,
            )
        token.extra = {}
        token.provider_values = {}
        _apply(token, token_set, keep_refresh_token=keep)
        token.account_name = flow.clean_words(account_name, 300)
        if token_set.scope is None:
            token.scope = client.scope
        token.obtained_at = timezone.now()
        token.refreshed_at = None
        # A refresh of the old token still in flight must not store its answer
        # over this login's (``_store_claimed`` needs its claim).
        token.refresh_claim, token.refresh_claimed_until = "", None
        token.save()
    signals.token_obtained.send(
        sender=OAuth2Client, client=client, token=token, actor=actor
    )
    if replaced and replaced != token.refresh_token:
        # RFC 7009 at the provider, after the commit and outside the lock; it
        # never fails the login (revocation.py).
        from .revocation import revoke_replaced_refresh_token

        revoke_replaced_refresh_token(client, replaced, actor=actor)
    return token


def _wait_for_refresh_in_flight(client: OAuth2Client, account: str) -> None:
    """Until the token's claim is released (or has run out), at most
    ``LOCK_WAIT_TIMEOUT``; the secrets are not read (see ``store_token_set``)."""
    patience = _Patience(float(app_settings.LOCK_WAIT_TIMEOUT))
    rows = OAuth2Token.objects.filter(client=client, account=account).only(
        "refresh_claim", "refresh_claimed_until"
    )
    while (token := rows.first()) is not None and _claimed_now(token):
        if not patience.sleep():
            return


def _stored_refresh_token(token: OAuth2Token) -> str:
    """The refresh token a new login is about to replace ("" when none, or when no
    configured key decrypts it: the login must still repair such a row)."""
    if token.pk is None:
        return ""
    try:
        value = (
            OAuth2Token.objects.filter(pk=token.pk)
            .values_list("refresh_token", flat=True)
            .first()
        )
    except ConfigurationError:
        return ""
    return value or ""
