"""The claim that keeps a refresh single-flight (issue items 7 and 10 of the
hardening issue; issue 7's at most four statements per refresh).

A refresh claims the token row with one conditional UPDATE that succeeds only on
the row as it was read and only when nobody else holds a live claim; the write
that stores the answer releases it, and only while it is still held. On
PostgreSQL the read and the claim are one statement (``_read_and_claim``), tested
at the end. The first tests run on any database (SQLite included), setting the
claim columns the way another process would; then real threads race on PostgreSQL.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oauth2_integrator import (
    AuthorizationRequired,
    TokenRefreshError,
    get_access_token,
    refresh_access_token,
    refresh_read,
    tokens,
)
from oauth2_integrator.models import OAuth2Token, TokenStatus

from .conftest import TOKEN_URL, in_seconds, two_step_claim

OLD_ACCESS = "stored-access-token-AAAA-1111-BBBB"
REFRESHED = {
    "access_token": "refreshed-access-token-EEEE-3333",
    "refresh_token": "rotated-refresh-token-IIII-7777",
    "expires_in": 3600,
}


def change_row_before_the_claim(monkeypatch: Any, **fields: Any) -> None:
    """Another worker changes the row between ``_load`` and the claim."""
    two_step_claim(monkeypatch)
    real_load = tokens._load

    def load(name: str, account: str) -> Any:
        client, token = real_load(name, account)
        OAuth2Token.objects.filter(pk=token.pk).update(**fields)
        return client, token

    monkeypatch.setattr(tokens, "_load", load)


# --- on any database -----------------------------------------------------------


def lock_wait(settings: Any, seconds: float) -> None:
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "LOCK_WAIT_TIMEOUT": seconds,
    }


def claimed_by_another(*, until: datetime.datetime) -> None:
    OAuth2Token.objects.update(
        refresh_claim="another-process", refresh_claimed_until=until
    )


def json_answer(body: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    return 200, {"Content-Type": "application/json"}, json.dumps(body)


def test_the_provider_is_called_while_the_row_is_claimed(expired, token_endpoint):
    seen: list[tuple[str, Any]] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        row = OAuth2Token.objects.get()
        seen.append((row.refresh_claim, row.refresh_claimed_until))
        return json_answer(REFRESHED)

    token_endpoint.add_callback("POST", TOKEN_URL, callback=answer)
    started = timezone.now()
    assert get_access_token("acme") == REFRESHED["access_token"]
    [(claim, until)] = seen
    assert claim
    assert until > started + datetime.timedelta(seconds=30)
    row = OAuth2Token.objects.get()
    assert (row.refresh_claim, row.refresh_claimed_until) == ("", None)


def test_a_failed_refresh_releases_the_claim(expired, token_endpoint):
    token_endpoint.post(TOKEN_URL, status=503)
    with pytest.raises(TokenRefreshError):
        get_access_token("acme")
    row = OAuth2Token.objects.get()
    assert (row.refresh_claim, row.refresh_claimed_until) == ("", None)
    assert row.refresh_attempts == 1


def test_a_refresh_cut_short_releases_the_claim(expired, monkeypatch):
    """A worker stopped in the middle of the call (its process is shutting down):
    the claim does not wait out its lifetime."""
    from oauth2_integrator import flow

    def stopped(*args: Any, **kwargs: Any) -> Any:
        raise SystemExit("worker shutting down")

    monkeypatch.setattr(flow, "refresh", stopped)
    with pytest.raises(SystemExit):
        get_access_token("acme")
    row = OAuth2Token.objects.get()
    assert (row.refresh_claim, row.refresh_claimed_until) == ("", None)


def test_a_valid_token_is_served_while_another_process_holds_the_claim(
    oauth_client, make_token, token_endpoint
):
    make_token(oauth_client, expires_at=in_seconds(120))  # inside the margin
    claimed_by_another(until=in_seconds(60))
    started = time.monotonic()
    assert get_access_token("acme") == OLD_ACCESS
    assert time.monotonic() - started < 1.0
    assert not token_endpoint.calls
    assert OAuth2Token.objects.get().refresh_claim == "another-process"


def test_an_expired_token_waits_for_a_live_claim_then_gives_up(
    expired, token_endpoint, settings
):
    lock_wait(settings, 0.4)
    claimed_by_another(until=in_seconds(60))
    started = time.monotonic()
    with pytest.raises(TokenRefreshError, match="LOCK_WAIT_TIMEOUT"):
        get_access_token("acme")
    assert time.monotonic() - started >= 0.4
    assert not token_endpoint.calls
    row = OAuth2Token.objects.get()
    assert row.refresh_claim == "another-process"  # not ours to release
    assert row.last_error == ""


def test_a_claim_left_by_a_dead_process_is_taken_over_once_it_runs_out(
    expired, token_endpoint
):
    claimed_by_another(until=in_seconds(-1))
    token_endpoint.post(TOKEN_URL, json=REFRESHED)
    assert get_access_token("acme") == REFRESHED["access_token"]
    assert OAuth2Token.objects.get().refresh_claim == ""


def test_the_status_says_a_refresh_is_in_progress(expired):
    from oauth2_integrator.status import describe

    claimed_by_another(until=in_seconds(60))
    status = describe(expired.client)
    assert status.startswith("Connected, expired")
    assert status.endswith("; a refresh is in progress")


def test_the_status_says_a_refresh_was_cut_short(expired):
    from oauth2_integrator.status import describe

    claimed_by_another(until=in_seconds(-600))
    status = describe(expired.client)
    assert "a refresh was cut short (its process stopped) 10" in status
    assert status.endswith("the next refresh takes over")


def test_a_claim_lives_longer_than_two_provider_calls(settings):
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "TOKEN_REQUEST_DEADLINE": 7,
    }
    assert tokens._claim_lifetime() > datetime.timedelta(seconds=14)


def test_a_back_off_recorded_meanwhile_is_respected(
    expired, token_endpoint, monkeypatch
):
    """Another worker's refresh failed between this one's read and its claim: the
    provider is not asked again before the recorded next attempt."""
    change_row_before_the_claim(
        monkeypatch,
        next_attempt_at=in_seconds(600),
        refresh_attempts=1,
        last_error_code="temporarily_unavailable",
        last_error_at=timezone.now(),
    )
    with pytest.raises(TokenRefreshError, match="backing off"):
        get_access_token("acme")
    assert not token_endpoint.calls


def test_a_login_during_a_refresh_wins(expired, token_endpoint):
    """The operator re-authorized while the refresh waited for the provider: the
    refresh's answer is dropped, the login's token stays."""
    from oauth2_integrator.flow import TokenSet
    from oauth2_integrator.tokens import store_token_set

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        client = OAuth2Token.objects.get().client
        store_token_set(
            client,
            TokenSet(
                access_token="login-access-KKKK-9999",
                refresh_token="login-refresh-LLLL-0000",
                expires_in=3600,
            ),
        )
        return json_answer(REFRESHED)

    token_endpoint.add_callback("POST", TOKEN_URL, callback=answer)
    with pytest.raises(TokenRefreshError, match="changed while it was being refreshed"):
        refresh_access_token("acme")
    row = OAuth2Token.objects.get()
    assert row.access_token == "login-access-KKKK-9999"
    assert row.refresh_token == "login-refresh-LLLL-0000"
    assert row.refresh_claim == ""


def test_a_token_retired_during_a_refresh_stays_retired(expired, token_endpoint):
    """The token endpoint moved to another server while the refresh was in flight."""

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        OAuth2Token.objects.update(status=TokenStatus.REAUTHORIZATION_REQUIRED)
        return json_answer(REFRESHED)

    token_endpoint.add_callback("POST", TOKEN_URL, callback=answer)
    with pytest.raises(TokenRefreshError):
        refresh_access_token("acme")
    row = OAuth2Token.objects.get()
    assert row.status == TokenStatus.REAUTHORIZATION_REQUIRED
    assert row.access_token == OLD_ACCESS


def test_the_claim_refuses_a_token_no_longer_active(
    expired, token_endpoint, monkeypatch
):
    """Another worker got invalid_grant meanwhile: no call with a dead token."""
    change_row_before_the_claim(
        monkeypatch, status=TokenStatus.REAUTHORIZATION_REQUIRED
    )
    with pytest.raises(AuthorizationRequired, match="re-authorization"):
        get_access_token("acme")
    assert not token_endpoint.calls


def test_a_refresh_done_meanwhile_is_reused(expired, token_endpoint, monkeypatch):
    """Another worker refreshed meanwhile: its token is returned, the spent refresh
    token is not replayed."""
    change_row_before_the_claim(
        monkeypatch,
        access_token="meanwhile-access-JJJJ-8888",  # update() encrypts it
        refreshed_at=timezone.now(),
        expires_at=in_seconds(3600),
    )
    assert get_access_token("acme") == "meanwhile-access-JJJJ-8888"
    assert not token_endpoint.calls


def test_a_refresh_done_meanwhile_is_reused_by_a_forced_refresh(
    oauth_client, make_token, token_endpoint, monkeypatch
):
    make_token(oauth_client, expires_at=in_seconds(86400))
    change_row_before_the_claim(monkeypatch, refreshed_at=timezone.now())
    assert refresh_access_token("acme") == OLD_ACCESS
    assert not token_endpoint.calls


# --- PostgreSQL: real processes racing -----------------------------------------


@pytest.fixture
def _needs_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("counted and raced on PostgreSQL")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_no_transaction_stays_open_while_the_provider_answers(
    expired, token_endpoint, _needs_postgresql
):
    """A row lock held across the call would pin a connection inside a transaction
    for up to TOKEN_REQUEST_DEADLINE; the claim commits before the call."""
    import psycopg

    states: list[str] = []
    settings_dict = connection.settings_dict

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        # Asked from another connection, as a DBA's monitoring would.
        pid = connection.connection.info.backend_pid
        with psycopg.connect(
            host=settings_dict["HOST"],
            port=settings_dict["PORT"] or 5432,
            user=settings_dict["USER"],
            dbname=settings_dict["NAME"],
            autocommit=True,
        ) as other:
            row = other.execute(
                "SELECT state FROM pg_stat_activity WHERE pid = %s", [pid]
            ).fetchone()
        assert row is not None
        states.append(row[0])
        return json_answer(REFRESHED)

    token_endpoint.add_callback("POST", TOKEN_URL, callback=answer)
    with CaptureQueriesContext(connection) as captured:
        assert refresh_access_token("acme") == REFRESHED["access_token"]
    assert states == ["idle"]  # not "idle in transaction"
    statements = [q["sql"].split()[0] for q in captured]
    # The read with the claim (the installed function's UPDATE ... RETURNING),
    # then the store with its event: two statements.
    assert statements == ["SELECT", "WITH"]
    assert refresh_read.function_name("default") in captured[0]["sql"]
    assert "UPDATE" in captured[1]["sql"] and "INSERT" in captured[1]["sql"]
    assert not any("FOR UPDATE" in q["sql"] for q in captured)


class SlowEndpoint:
    """A ``responses`` callback that holds the first refresh until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        import json

        self.calls += 1
        self.entered.set()
        assert self.release.wait(20)
        return 200, {"Content-Type": "application/json"}, json.dumps(REFRESHED)


def hold_the_claim(token_endpoint: Any) -> tuple[SlowEndpoint, threading.Thread, list]:
    """A first worker that refreshes and keeps the row claimed until released."""
    slow = SlowEndpoint()
    token_endpoint.add_callback("POST", TOKEN_URL, callback=slow)
    results: list[Any] = []

    def first() -> None:
        try:
            results.append(refresh_access_token("acme"))
        except Exception as exc:
            results.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=first)
    thread.start()
    assert slow.entered.wait(10)
    return slow, thread, results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_waiter_with_a_valid_token_does_not_wait_for_the_claim(
    oauth_client, make_token, token_endpoint, _needs_postgresql, settings
):
    lock_wait(settings, 5)
    make_token(oauth_client, expires_at=in_seconds(120))  # inside the margin
    slow, thread, results = hold_the_claim(token_endpoint)
    try:
        started = time.monotonic()
        assert get_access_token("acme") == OLD_ACCESS
        assert time.monotonic() - started < 1.0
    finally:
        slow.release.set()
        thread.join(20)
    assert results == [REFRESHED["access_token"]]
    assert slow.calls == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_waiter_with_an_expired_token_gives_up_after_the_bound(
    expired, token_endpoint, _needs_postgresql, settings
):
    lock_wait(settings, 0.6)
    slow, thread, results = hold_the_claim(token_endpoint)
    try:
        started = time.monotonic()
        with pytest.raises(TokenRefreshError) as info:
            get_access_token("acme")
        waited = time.monotonic() - started
        assert 0.6 <= waited < 3.0
        assert "'acme'" in str(info.value)
        assert "LOCK_WAIT_TIMEOUT" in str(info.value)
        assert "0.6 s" in str(info.value)
    finally:
        slow.release.set()
        thread.join(20)
    assert results == [REFRESHED["access_token"]]
    assert slow.calls == 1
    # Giving up recorded nothing: the first worker's refresh stands.
    token = OAuth2Token.objects.get()
    assert token.last_error == ""
    assert token.refresh_token == REFRESHED["refresh_token"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_waiter_with_an_expired_token_gets_the_result_within_the_bound(
    expired, token_endpoint, _needs_postgresql, settings
):
    lock_wait(settings, 5)
    slow, thread, _ = hold_the_claim(token_endpoint)
    box: list[Any] = []

    def second() -> None:
        try:
            box.append(get_access_token("acme"))
        finally:
            connections.close_all()

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.3)
    slow.release.set()
    waiter.join(10)
    thread.join(10)
    assert box == [REFRESHED["access_token"]]
    assert slow.calls == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_login_without_refresh_token_waits_for_a_refresh_in_flight(
    expired, token_endpoint, _needs_postgresql, settings
):
    """The login keeps the refresh token the refresh in flight stored, not the one
    that refresh spent."""
    from oauth2_integrator.flow import TokenSet
    from oauth2_integrator.tokens import store_token_set

    lock_wait(settings, 5)
    slow, thread, results = hold_the_claim(token_endpoint)
    threading.Timer(0.3, slow.release.set).start()
    store_token_set(
        expired.client,
        TokenSet(access_token="login-access-KKKK-9999", expires_in=3600),
    )
    thread.join(10)
    assert results == [REFRESHED["access_token"]]
    row = OAuth2Token.objects.get()
    assert row.access_token == "login-access-KKKK-9999"
    assert row.refresh_token == REFRESHED["refresh_token"]
    assert row.refresh_claim == ""


# --- PostgreSQL: the read and the claim in one statement ----------------------------


def _unchanged_after_claimed_read(pk: int) -> OAuth2Token:
    before = OAuth2Token.objects.get(pk=pk)
    assert tokens._read_and_claim("acme", "", "default") is None
    after = OAuth2Token.objects.get(pk=pk)
    assert (after.refresh_claim, after.refresh_claimed_until, after.updated_at) == (
        before.refresh_claim,
        before.refresh_claimed_until,
        before.updated_at,
    )
    return after


@pytest.mark.postgres
def test_the_claimed_read_returns_the_row_and_its_client_claimed(
    expired, _needs_postgresql
):
    token = tokens._read_and_claim("acme", "", "default")
    assert token is not None
    assert token.refresh_claim == OAuth2Token.objects.get().refresh_claim != ""
    assert token.refresh_claimed_until is not None
    assert token.refresh_claimed_until > timezone.now() + datetime.timedelta(seconds=60)
    assert token.refresh_token == expired.refresh_token  # decrypted
    assert token.client.name == "acme" and token.client.client_secret
    assert tokens._read_and_claim("acme", "", "default") is None  # claimed now


@pytest.mark.postgres
def test_the_claimed_read_takes_over_a_claim_that_ran_out(expired, _needs_postgresql):
    claimed_by_another(until=in_seconds(-1))
    token = tokens._read_and_claim("acme", "", "default")
    assert token is not None and token.refresh_claim != "another-process"


@pytest.mark.postgres
@pytest.mark.parametrize(
    "situation",
    [
        "claimed",
        "backing_off",
        "disabled",
        "needs_reauthorization",
        "no_refresh_token",
        "other_account",
    ],
)
def test_the_claimed_read_leaves_a_token_it_cannot_refresh_at_once(
    expired, _needs_postgresql, situation
):
    """Each of these takes the two-step path, which says why (or waits): the one
    statement must not claim the row."""
    rows = OAuth2Token.objects.filter(pk=expired.pk)
    if situation == "claimed":
        claimed_by_another(until=in_seconds(60))
    elif situation == "backing_off":
        rows.update(next_attempt_at=in_seconds(30), refresh_attempts=1)
    elif situation == "disabled":
        expired.client.__class__.objects.update(enabled=False)
    elif situation == "needs_reauthorization":
        rows.update(status=TokenStatus.REAUTHORIZATION_REQUIRED)
    elif situation == "no_refresh_token":
        rows.update(refresh_token="")
    elif situation == "other_account":
        rows.update(account="someone-else")
    _unchanged_after_claimed_read(expired.pk)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_inside_a_callers_transaction_the_claim_is_not_taken_on_its_connection(
    expired, _needs_postgresql
):
    """There the claim must commit on the refresh's own connection
    (``_on_own_connection``): the caller's rollback must not undo it."""
    from django.db import transaction

    with transaction.atomic():
        assert tokens._read_and_claim("acme", "", "default") is None
    assert OAuth2Token.objects.get().refresh_claim == ""


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("form", ["function", "plain statement"])
def test_the_claim_commits_without_waiting_for_the_disk_and_only_the_claim(
    expired, _needs_postgresql, form
):
    """``synchronous_commit`` is off in the claim's own transaction, and back on
    for whatever the connection runs next (the host's writes, the refresh's store)."""
    from django.db import transaction

    if form == "function":
        sql = refresh_read._call("default")
    else:
        sql = refresh_read.statement("default")
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, ["c", in_seconds(60), "acme", "", "active", now, now])
        assert cursor.fetchone() is not None
        assert _synchronous_commit() == "off"
    assert _synchronous_commit() == "on"
    OAuth2Token.objects.update(refresh_claim="", refresh_claimed_until=None)
    assert tokens._read_and_claim("acme", "", "default") is not None  # autocommit
    assert _synchronous_commit() == "on"


def test_a_token_refreshed_since_the_hot_read_is_served_and_the_claim_released(
    expired, token_endpoint, monkeypatch
):
    """The valid-token read saw the token due; by the time the refresh reads it
    (claimed at once on PostgreSQL), another process has refreshed it: it is served
    as it is, the provider is not asked, and the claim is given back."""
    OAuth2Token.objects.update(
        access_token="refreshed-elsewhere-MMMM-5555",
        expires_at=in_seconds(3600),
        refreshed_at=timezone.now(),
    )
    real_hot_read = tokens._hot_read

    def stale_hot_read(name: str, account: str) -> Any:
        row = list(real_hot_read(name, account))
        row[1] = in_seconds(-60)  # expires_at, as read before the other refresh
        return tuple(row)

    monkeypatch.setattr(tokens, "_hot_read", stale_hot_read)
    assert get_access_token("acme") == "refreshed-elsewhere-MMMM-5555"
    assert len(token_endpoint.calls) == 0
    assert OAuth2Token.objects.get().refresh_claim == ""


@pytest.mark.parametrize(
    ("situation", "outcome"),
    [
        ("backing_off", TokenRefreshError),
        ("valid_backing_off", None),
        ("reauthorization", AuthorizationRequired),
        ("disabled", AuthorizationRequired),
    ],
)
def test_a_caller_whose_token_cannot_be_refreshed_now_writes_nothing(
    expired, token_endpoint, situation, outcome
):
    """During an outage every caller asks: the valid-token read already shows a
    pending back-off (or a token no refresh can help), so no claim is attempted,
    not even one the database would refuse."""
    rows = OAuth2Token.objects.filter(pk=expired.pk)
    if situation == "backing_off":
        rows.update(next_attempt_at=in_seconds(30), refresh_attempts=1)
    elif situation == "valid_backing_off":
        rows.update(
            expires_at=in_seconds(60),
            next_attempt_at=in_seconds(30),
            refresh_attempts=1,
        )
    elif situation == "reauthorization":
        rows.update(status=TokenStatus.REAUTHORIZATION_REQUIRED)
    else:
        expired.client.__class__.objects.update(enabled=False)
    with CaptureQueriesContext(connection) as captured:
        if outcome is None:
            assert get_access_token("acme") == expired.access_token
        else:
            with pytest.raises(outcome):
                get_access_token("acme")
    assert [q["sql"].split()[0] for q in captured] == ["SELECT", "SELECT"]
    assert len(token_endpoint.calls) == 0
