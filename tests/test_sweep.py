"""The background refresh (issue 7 item 1): what is due, one token, many tokens,
parallel runners, renewal, and flagging ahead of time a token that will die."""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from oauth2_integrator import flow, signals, sweep
from oauth2_integrator.models import OAuth2Client, OAuth2Token, TokenStatus
from oauth2_integrator.providers import registry
from oauth2_integrator.providers.base import ProviderProfile
from oauth2_integrator.status import describe
from oauth2_integrator.sweep import due_tokens, refresh_due_tokens, refresh_one

from .conftest import OPS_ADMINS, TOKEN_URL, in_seconds
from .conftest import STORED_REFRESH_TOKEN as STORED_REFRESH
from .rotating_provider import RotatingProvider, running

NEW = {
    "access_token": "sweep-new-access-RRRR-1212",
    "refresh_token": "sweep-new-refresh-SSSS-3434",
    "token_type": "Bearer",
    "expires_in": 3600,
}
RENEW_URL = "https://graph.example.test/renew"
HOUR = datetime.timedelta(hours=1)


def ago(hours: float) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(hours=hours)


@pytest.fixture(autouse=True)
def _admins(settings: Any) -> None:
    settings.ADMINS = OPS_ADMINS


class Renewing(ProviderProfile):
    """Instagram-like: renews a token without a refresh token by GET."""

    key = "test-sweep-renewing"

    def renewal_request(self, config: Any, token: OAuth2Token) -> Any:
        if token.expires_at is not None and token.expires_at <= timezone.now():
            return None
        return flow.TokenRequest(
            url=RENEW_URL,
            data={"grant_type": "ig_refresh_token", "access_token": token.access_token},
            method="GET",
        )


@pytest.fixture
def renewing(monkeypatch: pytest.MonkeyPatch) -> type[ProviderProfile]:
    registry.choices()  # the catalog is loaded first, so the test class stays
    monkeypatch.setitem(registry._profiles, Renewing.key, Renewing)
    return Renewing


# --- what is due --------------------------------------------------------------------


def test_due_tokens(make_client, make_token):
    def token(name: str, **fields: Any) -> OAuth2Token:
        return make_token(make_client(name=name), **fields)

    token("expiring", expires_at=in_seconds(120))
    token("fresh", obtained_at=ago(2), expires_at=in_seconds(3600))
    token("idle-refreshed", obtained_at=ago(80), refreshed_at=ago(25))
    token("idle-obtained", obtained_at=ago(25))
    token("idle-almost", obtained_at=ago(23.5))  # a daily cron a bit early
    token("recent", obtained_at=ago(80), refreshed_at=ago(22))
    token("no-expiry-idle", obtained_at=ago(30), expires_at=None)
    token("disabled", expires_at=in_seconds(60)).client.__class__.objects.filter(
        name="disabled"
    ).update(enabled=False)
    token(
        "dead", expires_at=in_seconds(60), status=TokenStatus.REAUTHORIZATION_REQUIRED
    )
    token("revoked", expires_at=in_seconds(60), status=TokenStatus.REVOKED)
    token(
        "backing-off",
        expires_at=in_seconds(60),
        refresh_attempts=2,
        next_attempt_at=in_seconds(60),
        last_error_at=in_seconds(1),  # after the client's creation
        last_error_code="server_error",
    )
    # Nothing to refresh it with, and its end is far: nothing to flag yet either.
    token(
        "no-refresh-token",
        obtained_at=ago(30),
        refresh_token="",
        expires_at=in_seconds(60 * 86400),
    )
    assert due_tokens() == [
        ("expiring", ""),
        ("idle-almost", ""),
        ("idle-obtained", ""),
        ("idle-refreshed", ""),
        ("no-expiry-idle", ""),
    ]
    assert [name for name, _ in due_tokens(force=True)] == [
        "expiring",
        "fresh",
        "idle-almost",
        "idle-obtained",
        "idle-refreshed",
        "no-expiry-idle",
        "recent",
    ]
    assert due_tokens(client="fresh") == []
    assert due_tokens(client="expiring") == [("expiring", "")]


def test_idle_after_is_a_setting_and_a_profile_attribute(
    oauth_client, make_token, settings, monkeypatch
):
    make_token(oauth_client, obtained_at=ago(10))
    assert due_tokens() == []
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "REFRESH_IDLE_AFTER": 6 * 3600,
    }
    assert due_tokens() == [("acme", "")]
    profile = type(registry.get(oauth_client.provider))
    monkeypatch.setattr(profile, "refresh_idle_after", None, raising=False)
    assert due_tokens() == []
    monkeypatch.setattr(profile, "refresh_idle_after", 3600, raising=False)
    assert due_tokens() == [("acme", "")]


# --- one token ----------------------------------------------------------------------


def test_refresh_one_refreshes_an_idle_token(oauth_client, make_token, token_endpoint):
    make_token(oauth_client, obtained_at=ago(30))
    token_endpoint.post(TOKEN_URL, json=NEW)
    refreshed: list[Any] = []
    signals.token_refreshed.connect(
        lambda **kw: refreshed.append(kw), weak=False, dispatch_uid="t-sweep"
    )
    try:
        outcome = refresh_one("acme")
    finally:
        signals.token_refreshed.disconnect(dispatch_uid="t-sweep")
    assert outcome.result == sweep.REFRESHED
    assert len(refreshed) == 1
    token = OAuth2Token.objects.get()
    assert token.access_token == NEW["access_token"]
    assert token.refresh_token == NEW["refresh_token"]
    assert refresh_one("acme").result == sweep.SKIPPED  # no longer due
    assert len(token_endpoint.calls) == 1


def test_refresh_one_results(make_client, make_token, token_endpoint, mailoutbox):
    make_token(make_client(name="down"), expires_at=in_seconds(60))
    make_token(
        make_client(name="refused", token_endpoint="https://refused.example.test/t"),
        expires_at=in_seconds(60),
    )
    token_endpoint.post(TOKEN_URL, status=503)
    token_endpoint.post(
        "https://refused.example.test/t", status=400, json={"error": "invalid_grant"}
    )
    assert refresh_one("down").result == sweep.FAILED
    held = refresh_one("down")
    assert held.result == sweep.HELD_BACK
    assert "next attempt" in held.detail
    refused = refresh_one("refused")
    assert refused.result == sweep.NEEDS_OPERATOR
    assert "invalid_grant" in refused.detail
    assert refresh_one("refused").result == sweep.NEEDS_OPERATOR
    assert refresh_one("nobody").result == sweep.FAILED
    assert len(token_endpoint.calls) == 2
    assert len(mailoutbox) == 1


def test_a_token_without_refresh_token_is_renewed_by_its_profile(
    make_client, make_token, renewing, token_endpoint
):
    client = make_client(provider=Renewing.key)
    make_token(
        client, refresh_token="", obtained_at=ago(30), expires_at=in_seconds(86400 * 30)
    )
    token_endpoint.get(
        RENEW_URL, json={"access_token": NEW["access_token"], "expires_in": 86400 * 60}
    )
    assert due_tokens() == [("acme", "")]
    report = refresh_due_tokens()
    assert report.counts[sweep.REFRESHED] == 1
    assert OAuth2Token.objects.get().access_token == NEW["access_token"]
    assert token_endpoint.calls[0].request.method == "GET"


# --- flagged ahead of time ----------------------------------------------------------


def test_a_refresh_token_about_to_die_is_flagged_once(
    oauth_client, make_token, token_endpoint, mailoutbox, told
):
    make_token(
        oauth_client,
        obtained_at=ago(30),
        refresh_token_expires_at=timezone.now() + datetime.timedelta(days=10),
    )
    # No new refresh token: the old one, and its end of life, stay.
    token_endpoint.post(TOKEN_URL, json={**NEW, "refresh_token": None})
    first = refresh_due_tokens()
    assert first.needs_operator
    [outcome] = first.outcomes
    assert outcome.result == sweep.NEEDS_OPERATOR
    assert outcome.detail.startswith("refreshed, but the refresh token expires in")
    assert len(mailoutbox) == 1 and len(told) == 1
    assert "re-authorize" in told[0]["reason"]
    # Still idle-refreshed every day, still flagged, told no more.
    OAuth2Token.objects.update(refreshed_at=ago(25))
    second = refresh_due_tokens()
    assert second.needs_operator
    assert second.counts[sweep.NEEDS_OPERATOR] == 1
    assert len(token_endpoint.calls) == 2
    assert len(mailoutbox) == 1 and len(told) == 1
    assert "re-authorize the client before then" in describe(oauth_client)


def test_a_token_that_cannot_be_renewed_is_flagged_ahead(
    oauth_client, make_token, token_endpoint, mailoutbox, told
):
    make_token(oauth_client, refresh_token="", expires_at=in_seconds(3 * 86400))
    assert "cannot be renewed" in describe(oauth_client)
    report = refresh_due_tokens()
    assert [o.result for o in report.outcomes] == [sweep.NEEDS_OPERATOR]
    assert len(mailoutbox) == 1 and len(told) == 1
    again = refresh_due_tokens()
    assert again.needs_operator
    assert len(mailoutbox) == 1
    assert len(token_endpoint.calls) == 0  # nothing to call: there is no refresh token


def test_a_token_far_from_its_end_is_not_flagged(oauth_client, make_token, mailoutbox):
    make_token(oauth_client, refresh_token="", expires_at=in_seconds(60 * 86400))
    make_token(
        oauth_client,
        account="other",
        obtained_at=ago(1),
        refresh_token_expires_at=timezone.now() + datetime.timedelta(days=60),
    )
    report = refresh_due_tokens()
    assert not report.needs_operator
    assert report.outcomes == []
    assert mailoutbox == []


def test_a_token_already_needing_reauthorization_fails_the_report(
    oauth_client, make_token
):
    make_token(oauth_client, status=TokenStatus.REAUTHORIZATION_REQUIRED)
    report = refresh_due_tokens()
    assert report.needs_operator
    assert "1 need an operator (acme)" in report.summary()


def test_dry_run_calls_nobody(oauth_client, make_token, token_endpoint):
    make_token(oauth_client, obtained_at=ago(30))
    report = refresh_due_tokens(dry_run=True)
    assert [o.result for o in report.outcomes] == [sweep.DUE]
    assert len(token_endpoint.calls) == 0
    assert OAuth2Token.objects.get().refreshed_at is None


# --- a runner reads its next tokens in one query -----------------------------------


@pytest.fixture
def three_due(make_client, make_token, token_endpoint) -> list[OAuth2Client]:
    clients = [make_client(name=f"due-{n}", token_endpoint=TOKEN_URL) for n in range(3)]
    for client in clients:
        make_token(client, obtained_at=ago(30))
    token_endpoint.post(
        TOKEN_URL,
        json={"access_token": "swept-access-TTTT", "expires_in": 3600},
    )
    return clients


def test_a_runner_reads_its_next_tokens_in_one_query(three_due, monkeypatch):
    reads: list[list[int]] = []
    real = sweep._load_chunk

    def counting(pks: list[int]) -> dict[int, OAuth2Token]:
        reads.append(pks)
        return real(pks)

    monkeypatch.setattr(sweep, "_load_chunk", counting)
    monkeypatch.setattr(
        sweep,
        "_load",
        lambda *a: pytest.fail("read one by one"),  # type: ignore[arg-type]
    )
    report = refresh_due_tokens()
    assert report.counts[sweep.REFRESHED] == 3
    assert [sorted(pks) for pks in reads] == [
        sorted(OAuth2Token.objects.values_list("pk", flat=True))
    ]


def test_a_secret_no_key_opens_costs_only_its_own_token(three_due):
    """The chunk cannot be read whole: each token is read on its own, the one
    whose refresh token no configured key opens needs an operator, and the others
    are refreshed all the same."""
    from cryptography.fernet import Fernet

    lost = Fernet(Fernet.generate_key()).encrypt(b"refresh-under-a-lost-key").decode()
    broken = OAuth2Token.objects.get(client=three_due[0])
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {OAuth2Token._meta.db_table} SET refresh_token = %s "  # noqa: S608
            "WHERE id = %s",
            [lost, broken.pk],
        )
    report = refresh_due_tokens()
    results = {o.name: o.result for o in report.outcomes}
    assert results == {
        "due-0": sweep.NEEDS_OPERATOR,
        "due-1": sweep.REFRESHED,
        "due-2": sweep.REFRESHED,
    }


def test_a_token_refreshed_after_its_chunk_was_read_is_not_refreshed_again(
    three_due, token_endpoint, monkeypatch
):
    """Another runner refreshed it meanwhile: the claim on the stale row fails, the
    row is read again and found not due; its spent refresh token is never sent."""
    real = sweep._load_chunk

    def then_refreshed_elsewhere(pks: list[int]) -> dict[int, OAuth2Token]:
        loaded = real(pks)
        OAuth2Token.objects.filter(client__name="due-1").update(
            refreshed_at=timezone.now(),
            expires_at=in_seconds(3600),
            updated_at=timezone.now(),
        )
        return loaded

    monkeypatch.setattr(sweep, "_load_chunk", then_refreshed_elsewhere)
    report = refresh_due_tokens()
    outcomes = {o.name: o for o in report.outcomes}
    assert outcomes["due-1"].result == sweep.SKIPPED
    assert outcomes["due-0"].result == outcomes["due-2"].result == sweep.REFRESHED
    assert len(token_endpoint.calls) == 2


def test_a_secret_no_key_opens_needs_an_operator_for_its_token_alone(three_due):
    from cryptography.fernet import Fernet

    foreign = Fernet(Fernet.generate_key()).encrypt(b"lost-refresh").decode()
    token = OAuth2Token.objects.get(client__name="due-1")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE oauth2_integrator_oauth2token SET refresh_token = %s WHERE id = %s",
            [foreign, token.pk],
        )
    report = refresh_due_tokens()
    outcomes = {o.name: o for o in report.outcomes}
    assert outcomes["due-1"].result == sweep.NEEDS_OPERATOR
    assert "decrypt" in outcomes["due-1"].detail
    assert outcomes["due-0"].result == outcomes["due-2"].result == sweep.REFRESHED


def test_chunks_shrink_so_that_every_worker_has_tokens(monkeypatch):
    taken: list[int] = []
    monkeypatch.setattr(sweep, "_load_chunk", lambda pks: taken.append(len(pks)) or {})
    monkeypatch.setattr(
        sweep,
        "_refresh_one_safely",
        lambda name, account, **kw: sweep.RefreshOutcome(name, account, "skipped", ""),
    )
    items = [(f"c{n}", "", n) for n in range(30)]
    sweep._run(items, force=False, workers=8, done=lambda outcome: None)
    assert sum(taken) == 30
    assert max(taken) <= 4  # 30 tokens over 8 workers: none takes 20


# --- parallel runners, on PostgreSQL ------------------------------------------------

CLIENTS = 6


@pytest.fixture
def providers(make_client, make_token) -> Iterator[list[RotatingProvider]]:
    """One rotating provider per client, each token idle (due)."""
    if connection.vendor != "postgresql":
        pytest.skip("races real connections on PostgreSQL")
    with contextlib.ExitStack() as stack:
        started = []
        for number in range(CLIENTS):
            provider = stack.enter_context(
                running(RotatingProvider(STORED_REFRESH, delay=0.1))
            )
            client = make_client(name=f"c{number}", token_endpoint=provider.url)
            make_token(client, obtained_at=ago(30))
            started.append(provider)
        yield started


def run_together(*targets: Any) -> list[Any]:
    barrier = threading.Barrier(len(targets))
    results: list[Any] = [None] * len(targets)

    def worker(index: int) -> None:
        try:
            barrier.wait()
            results[index] = targets[index]()
        except Exception as exc:
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(targets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads)
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_runners_share_the_tokens_and_refresh_each_once(providers):
    first, second = run_together(refresh_due_tokens, refresh_due_tokens)
    assert not isinstance(first, Exception), first
    assert not isinstance(second, Exception), second
    refreshed = first.counts[sweep.REFRESHED] + second.counts[sweep.REFRESHED]
    assert refreshed == CLIENTS
    assert [len(p.calls) for p in providers] == [1] * CLIENTS
    assert all(c.status == 200 for p in providers for c in p.calls)
    for provider, token in zip(
        providers, OAuth2Token.objects.order_by("client__name"), strict=True
    ):
        assert token.refresh_token == provider.refresh_token
    skipped = [
        o.detail for o in first.outcomes + second.outcomes if o.result == sweep.SKIPPED
    ]
    assert len(skipped) == CLIENTS
    assert set(skipped) <= {"another runner is refreshing it", "not due"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_runner_skips_a_token_another_holds(providers):
    """A runner never waits for a token claimed elsewhere (a web request's refresh,
    another runner): it goes on with the others."""
    # Expired: get_access_token would wait LOCK_WAIT_TIMEOUT for it; a sweep not.
    OAuth2Token.objects.filter(client__name="c0").update(expires_at=in_seconds(-60))
    locked = threading.Event()
    release = threading.Event()

    def hold() -> None:
        OAuth2Token.objects.filter(client__name="c0").update(
            refresh_claim="another-runner", refresh_claimed_until=in_seconds(60)
        )
        locked.set()
        release.wait(30)

    def sweep_when_locked() -> Any:
        locked.wait(30)
        try:
            return refresh_due_tokens()
        finally:
            release.set()

    _, report = run_together(hold, sweep_when_locked)
    outcomes = {o.name: o for o in report.outcomes}
    assert outcomes["c0"].result == sweep.SKIPPED
    assert outcomes["c0"].detail == "another runner is refreshing it"
    assert {o.result for n, o in outcomes.items() if n != "c0"} == {sweep.REFRESHED}
    assert len(providers[0].calls) == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_refresh_everything_once_and_close_their_connections(
    providers, monkeypatch
):
    closed_by: list[str] = []
    original = connections.close_all

    def close_all() -> None:
        closed_by.append(threading.current_thread().name)
        original()

    monkeypatch.setattr(connections, "close_all", close_all)
    report = refresh_due_tokens(workers=3)
    assert report.counts[sweep.REFRESHED] == CLIENTS
    assert [len(p.calls) for p in providers] == [1] * CLIENTS
    assert sorted(closed_by) == [
        "oauth2-refresh-0",
        "oauth2-refresh-1",
        "oauth2-refresh-2",
    ]
    assert OAuth2Client.objects.count() == CLIENTS
