"""Refreshing in the background: the tokens that are due, before anyone asks.

Host code refreshes a token only when it asks for one; a provider that revokes idle
refresh tokens, or a token that nobody asks for during its provider's outage, would
die unnoticed. The sweep (``manage.py oauth2_refresh_tokens`` on cron or a systemd
timer, or ``contrib.celery``'s periodic task) refreshes:

- tokens that expire within ``REFRESH_MARGIN``;
- tokens not refreshed (or, never refreshed, not obtained) for ``REFRESH_IDLE_AFTER``
  (a profile's ``refresh_idle_after`` wins; None: never idle-refreshed), so that
  providers that revoke idle refresh tokens keep them alive;
- tokens without a refresh token that their profile renews (``renewal_request``);

and flags, ahead of time and once per incident, a token that will expire and
cannot be renewed (``status.renewal_problem``): the ``reauthorization_required``
signal, an e-mail (``notifications``), the status in the admin and CLI.

Every refresh takes the same path as ``get_access_token`` (``tokens``): the claim
on the row, the failure policy and its back-off, the signals. A runner that finds
a token claimed by another (a parallel cron job, a Celery worker, a web request)
skips it instead of waiting, so parallel runners share the work and never block
one another.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from django.db import DatabaseError, connections, router
from django.db.models import QuerySet
from django.utils import timezone

from . import notifications, refresh_read, status, tokens
from .conf import app_settings
from .exceptions import (
    AuthorizationRequired,
    ConfigurationError,
    OAuth2IntegratorError,
)
from .models import OAuth2Client, OAuth2Token, TokenStatus

logger = logging.getLogger("oauth2_integrator")

__all__ = [
    "RefreshOutcome",
    "SweepReport",
    "due_tokens",
    "is_due",
    "refresh_due_tokens",
    "refresh_one",
]

REFRESHED = "refreshed"
SKIPPED = "skipped"
HELD_BACK = "held_back"
FAILED = "failed"
NEEDS_OPERATOR = "needs_operator"
#: ``dry_run``: would be refreshed.
DUE = "due"
RESULTS = (REFRESHED, SKIPPED, HELD_BACK, FAILED, NEEDS_OPERATOR, DUE)

#: A token counts as idle up to this long before ``REFRESH_IDLE_AFTER`` (at most a
#: tenth of it): a daily cron job that runs at the same time every day, a few
#: seconds sooner than yesterday, still refreshes every day, not every other day.
IDLE_SLACK = 3600.0

_UNSET: Any = object()


@dataclasses.dataclass(frozen=True)
class RefreshOutcome:
    """What the sweep did with one token; ``detail`` is words, never a secret."""

    name: str
    account: str
    result: str
    detail: str = ""


@dataclasses.dataclass
class SweepReport:
    outcomes: list[RefreshOutcome] = dataclasses.field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(RESULTS, 0)
        for outcome in self.outcomes:
            counts[outcome.result] += 1
        return counts

    @property
    def needs_operator(self) -> bool:
        return any(o.result == NEEDS_OPERATOR for o in self.outcomes)

    def summary(self) -> str:
        """One line for a log or a cron mail."""
        counts = self.counts
        parts = [f"{len(self.outcomes)} token(s) looked at"]
        if counts[DUE]:
            parts.append(f"{counts[DUE]} due (dry run: nothing sent)")
        parts += [
            f"{counts[REFRESHED]} refreshed",
            f"{counts[SKIPPED]} skipped",
            f"{counts[HELD_BACK]} backing off",
            f"{counts[FAILED]} failed",
            f"{counts[NEEDS_OPERATOR]} need an operator",
        ]
        line = "OAuth2 refresh: " + ", ".join(parts)
        names = sorted({o.name for o in self.outcomes if o.result == NEEDS_OPERATOR})
        if names:
            line += f" ({', '.join(names)})"
        return line


# --- what is due --------------------------------------------------------------------


def _idle_after(client: OAuth2Client, cache: dict[str, Any] | None = None) -> Any:
    """Seconds after which the client's token is idle-refreshed, or None (never)."""
    if cache is not None and client.provider in cache:
        return cache[client.provider]
    from .providers import registry

    try:
        value = getattr(registry.get(client.provider), "refresh_idle_after", _UNSET)
    except OAuth2IntegratorError:
        value = _UNSET
    if value is _UNSET:
        value = app_settings.REFRESH_IDLE_AFTER
    if cache is not None:
        cache[client.provider] = value
    return value


def is_due(
    client: OAuth2Client,
    token: OAuth2Token,
    *,
    now: datetime.datetime | None = None,
    renews: bool | None = None,
    idle_after: Any = _UNSET,
) -> bool:
    """Should the sweep refresh (or renew) this active token now?

    It can (a refresh token, or a profile that renews) and it either expires
    within the refresh margin or has been idle for ``REFRESH_IDLE_AFTER``, counted
    from its last refresh or, when there was none, from its authorization.
    """
    now = now or timezone.now()
    if not status.has_refresh_token(token):
        if renews is None:
            renews = status.profile_renews(client)
        if not renews:
            return False
    if token.needs_refresh(app_settings.REFRESH_MARGIN, now=now):
        return True
    if idle_after is _UNSET:
        idle_after = _idle_after(client)
    if idle_after is None:
        return False
    idle_after = float(idle_after)
    slack = min(IDLE_SLACK, idle_after / 10)
    last = token.refreshed_at or token.obtained_at
    return last <= now - datetime.timedelta(seconds=idle_after - slack)


def _candidates(client: str | None) -> QuerySet[OAuth2Token]:
    """Tokens of enabled clients, secrets not decrypted."""
    rows = (
        status.without_secrets(
            OAuth2Token.objects.filter(client__enabled=True)
            .exclude(status=TokenStatus.REVOKED)
            .select_related("client")
        )
        .defer("client__client_secret")
        .order_by("client__name", "account")
    )
    if client is not None:
        rows = rows.filter(client__name=client)
    return rows


def _scan(
    *, now: datetime.datetime, client: str | None, force: bool
) -> Iterator[tuple[OAuth2Token, str, str]]:
    """(token, what to do, why) for every token of an enabled client.

    What to do: ``DUE`` (refresh, renew, or flag ahead of time), ``NEEDS_OPERATOR``
    (already told: reported, nothing sent), ``HELD_BACK`` (backing off), or ""
    (nothing to do).
    """
    renews_by_provider: dict[str, bool] = {}
    idle_by_provider: dict[str, Any] = {}
    for token in _candidates(client).iterator(chunk_size=2000):
        owner = token.client
        if token.status != TokenStatus.ACTIVE:
            why = f"needs re-authorization ({token.last_error_code or 'refused'})"
            yield token, NEEDS_OPERATOR, why
            continue
        held = tokens._held_back(owner, token, now=now)
        if held is not None:
            yield token, (HELD_BACK if held.backoff else NEEDS_OPERATOR), str(held)
            continue
        if owner.provider not in renews_by_provider:
            renews_by_provider[owner.provider] = status.profile_renews(owner)
        renews = renews_by_provider[owner.provider]
        can = renews or status.has_refresh_token(token)
        if can and force:
            yield token, DUE, "forced"
            continue
        if is_due(
            owner,
            token,
            now=now,
            renews=renews,
            idle_after=_idle_after(owner, idle_by_provider),
        ):
            yield token, DUE, "expires soon or idle"
            continue
        problem = status.renewal_problem(owner, token, renews=renews, now=now)
        if problem:
            if token.incident_notified_at is None:
                yield token, DUE, problem  # refresh_one flags it, once
            else:
                yield token, NEEDS_OPERATOR, problem
            continue
        yield token, "", ""


def due_tokens(
    *,
    now: datetime.datetime | None = None,
    client: str | None = None,
    force: bool = False,
) -> list[tuple[str, str]]:
    """(client name, account) of the tokens a runner should pass to ``refresh_one``.

    Due: expiring within the refresh margin, idle past ``REFRESH_IDLE_AFTER``,
    renewable and due, to be flagged ahead of time (not told yet), or every
    refreshable token with ``force``. Disabled clients, tokens that are not active
    and tokens held back by ``next_attempt_at`` (back-off, permanent error) are
    left out. No secret is decrypted.
    """
    now = now or timezone.now()
    return [
        (token.client.name, token.account)
        for token, what, _ in _scan(now=now, client=client, force=force)
        if what == DUE
    ]


# --- one token ----------------------------------------------------------------------


def _due_locked(client: OAuth2Client, token: OAuth2Token) -> bool:
    return is_due(client, token)


def refresh_one(name: str, account: str = "", *, force: bool = False) -> RefreshOutcome:
    """Refresh one token if it is (still) due, through ``get_access_token``'s path.

    Never waits for a token another runner holds (it is ``skipped``) and never
    raises: the result is one of ``refreshed``, ``skipped``, ``held_back``
    (backing off after transient failures), ``failed`` (a transient failure, now
    backing off) or ``needs_operator``; ``detail`` says why in words.
    """
    return _refresh_one_safely(name, account, force=force)


def _refresh_one_safely(
    name: str, account: str, *, force: bool, loaded: OAuth2Token | None = None
) -> RefreshOutcome:
    try:
        return _refresh_one(name, account, force=force, loaded=loaded)
    except Exception as exc:  # a database outage, a bug: one token, not the sweep
        logger.error(
            "The background refresh of OAuth2 client %r failed with an unexpected %s.",
            name,
            type(exc).__name__,
            exc_info=not isinstance(exc, OAuth2IntegratorError),
        )
        return RefreshOutcome(
            name, account, FAILED, f"unexpected {type(exc).__name__}; see the log"
        )


def _load(name: str, account: str) -> OAuth2Token | None:
    """The whole row and its client, from the refresh path's compiled read: the
    claim does not read it again, and a token passed to ``refresh_one`` is due, so
    it is about to be refreshed (secrets included)."""
    return tokens._read_token(name, account)


def _load_chunk(pks: list[int]) -> dict[int, OAuth2Token]:
    """Whole rows and their clients for a runner's next tokens, in one query.

    A row read here may be a little old by the time its turn comes: the claim
    only succeeds on the row as read, and otherwise reads it again (``tokens._claim``),
    so a stale row costs a statement, never a wrong refresh. Empty when a secret
    no configured key opens is among them (or the database failed): each is then
    read on its own, and only that one needs an operator.
    """
    try:
        loaded = refresh_read.read_chunk(router.db_for_read(OAuth2Token), pks)
    except (ConfigurationError, DatabaseError):
        return {}  # read one by one, where each failure is that token's alone
    return {token.pk: token for token in loaded}


def _refresh_one(
    name: str, account: str, *, force: bool, loaded: OAuth2Token | None = None
) -> RefreshOutcome:
    def outcome(result: str, detail: str) -> RefreshOutcome:
        return RefreshOutcome(name, account, result, detail)

    try:
        token = loaded if loaded is not None else _load(name, account)
    except ConfigurationError as exc:  # a secret no configured key opens
        return outcome(NEEDS_OPERATOR, str(exc))
    if token is None:
        if OAuth2Client.objects.filter(name=name).exists():
            return outcome(NEEDS_OPERATOR, "not authorized yet")
        return outcome(FAILED, "no such OAuth2 client")
    client = token.client
    if not client.enabled:
        return outcome(SKIPPED, "client disabled")
    if token.status == TokenStatus.REVOKED:
        return outcome(SKIPPED, "disconnected")
    if token.status != TokenStatus.ACTIVE:
        return outcome(NEEDS_OPERATOR, token.last_error or "needs re-authorization")
    try:
        done = tokens._refresh_outcome(
            client, token, force=force, due=_due_locked, wait=0.0
        )
    except tokens._RefreshInProgress:
        return outcome(SKIPPED, "another runner is refreshing it")
    except tokens._HeldBack as exc:
        return outcome(HELD_BACK if exc.backoff else NEEDS_OPERATOR, str(exc))
    except (AuthorizationRequired, ConfigurationError) as exc:
        return outcome(NEEDS_OPERATOR, str(exc))
    except OAuth2IntegratorError as exc:
        return outcome(FAILED, str(exc))
    result = outcome(REFRESHED, "") if done.refreshed else outcome(SKIPPED, "not due")
    flagged = _flag_ahead(client, done.token)
    if flagged:
        detail = f"refreshed, but {flagged}" if done.refreshed else flagged
        return outcome(NEEDS_OPERATOR, detail)
    return result


def _flag_ahead(client: OAuth2Client, token: OAuth2Token) -> str:
    """Tell the operator, once, about a token that will stop working; returns why
    ("" when nothing is known to end). ``token`` is the row as the refresh left it."""
    if token.status != TokenStatus.ACTIVE:
        return ""
    problem = status.renewal_problem(client, token)
    if problem and notifications.claim(token):
        notifications.tell_operator(
            client,
            token,
            reason=f"OAuth2 client {client.label}: {problem}.",
            reauthorization=True,
        )
    return problem


# --- many tokens --------------------------------------------------------------------

Progress = Callable[[RefreshOutcome, int, int], None]


def refresh_due_tokens(
    *,
    client: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
) -> SweepReport:
    """Refresh every due token (``due_tokens``) on ``workers`` threads.

    The report also lists, without calling anyone, the tokens that already need
    an operator (``needs_operator``) and those backing off (``held_back``), so a
    cron job's exit code says whether someone must act. ``progress(outcome, done,
    total)`` is called after each token, from the worker threads.
    """
    now = timezone.now()
    due: list[tuple[str, str, str, int]] = []
    known: list[RefreshOutcome] = []
    for token, what, why in _scan(now=now, client=client, force=force):
        if what == DUE:
            due.append((token.client.name, token.account, why, token.pk))
        elif what:
            known.append(RefreshOutcome(token.client.name, token.account, what, why))
    report = SweepReport()
    total = len(due) + len(known)
    lock = threading.Lock()

    def done(outcome: RefreshOutcome) -> None:
        with lock:
            report.outcomes.append(outcome)
            count = len(report.outcomes)
        if progress is not None:
            progress(outcome, count, total)

    for outcome in known:
        done(outcome)
    if dry_run:
        for name, account, why, _ in due:
            done(RefreshOutcome(name, account, DUE, why))
        return report
    items = [(name, account, pk) for name, account, _, pk in due]
    _run(items, force=force, workers=workers, done=done)
    return report


#: Due tokens a runner reads at once: one query instead of one per token.
CHUNK = 20


def _run(
    items: list[tuple[str, str, int]],
    *,
    force: bool,
    workers: int,
    done: Callable[[RefreshOutcome], None],
) -> None:
    pending = collections.deque(items)
    lock = threading.Lock()

    runners = max(1, min(workers, len(items)))

    def take() -> list[tuple[str, str, int]]:
        # Smaller near the end, so that no runner waits while another works
        # through a whole chunk.
        with lock:
            size = min(CHUNK, -(-len(pending) // runners))
            return [pending.popleft() for _ in range(size)]

    def work() -> None:
        while chunk := take():
            loaded = _load_chunk([pk for _, _, pk in chunk])
            for name, account, pk in chunk:
                token = loaded.get(pk)
                done(_refresh_one_safely(name, account, force=force, loaded=token))

    if workers <= 1 or len(items) <= 1:
        work()
        return

    def thread_work() -> None:
        try:
            work()
        finally:
            connections.close_all()  # this thread's connections only

    threads = [
        threading.Thread(target=thread_work, name=f"oauth2-refresh-{i}", daemon=True)
        for i in range(runners)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
