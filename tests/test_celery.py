"""oauth2_integrator.contrib.celery: the tasks, and the real thing on real workers.

The first tests run the tasks in this process with a stand-in ``sweep`` module (what
the tasks do with its answers). The rest start two real Celery workers
(``celery -A example_project worker``, so the example project's Celery app is tested
too) on a real Redis broker, pointed at this test's PostgreSQL database, with a real
token endpoint served from this process (tests/rotating_provider.py); the workers are
started once per module.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.utils import timezone

celery = pytest.importorskip("celery", reason="the `celery` extra is not installed")

from oauth2_integrator.contrib import celery as tasks  # noqa: E402
from oauth2_integrator.models import OAuth2Event, OAuth2Token  # noqa: E402

from .rotating_provider import RotatingProvider, running  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
#: How long a test waits for the workers before it says what it saw (never a speed
#: assertion: a healthy run takes a fraction of it).
PATIENCE = 60.0


# --- the tasks, with a stand-in sweep -------------------------------------------------


@dataclasses.dataclass
class Outcome:
    name: str
    account: str
    result: str
    detail: str = ""


@pytest.fixture
def fake_sweep(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """``oauth2_integrator.sweep`` replaced by a recorder the test programs."""
    import oauth2_integrator

    fake = types.SimpleNamespace(due=[], refreshed=[])

    def due_tokens(**kwargs: Any) -> list[tuple[str, str]]:
        assert kwargs == {}, "the periodic task sweeps everything that is due"
        return list(fake.due)

    def refresh_one(name: str, account: str = "", **kwargs: Any) -> Outcome:
        fake.refreshed.append((name, account, kwargs))
        return Outcome(name, account, "refreshed", "expires in 1 hour")

    fake.due_tokens, fake.refresh_one = due_tokens, refresh_one
    monkeypatch.setitem(sys.modules, "oauth2_integrator.sweep", fake)
    monkeypatch.setattr(oauth2_integrator, "sweep", fake, raising=False)
    return fake


def test_refresh_client_calls_refresh_one_and_returns_the_outcome(fake_sweep):
    result = tasks.refresh_client.apply(args=("acme", "ops@example.com")).get()

    assert fake_sweep.refreshed == [("acme", "ops@example.com", {})]
    assert result == {
        "name": "acme",
        "account": "ops@example.com",
        "result": "refreshed",
        "detail": "expires in 1 hour",
    }
    json.dumps(result)  # a result backend stores it as JSON


def test_refresh_client_account_defaults_to_the_client_token(fake_sweep):
    tasks.refresh_client.apply(args=("acme",)).get()
    assert fake_sweep.refreshed == [("acme", "", {})]


def test_refresh_due_fans_out_one_task_per_due_token(fake_sweep, monkeypatch):
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.refresh_client, "delay", lambda *a: sent.append(a))
    fake_sweep.due = [("acme", ""), ("acme", "b@example.com"), ("globex", "")]

    result = tasks.refresh_due.apply().get()  # no arguments: a beat entry as is

    assert sent == [("acme", ""), ("acme", "b@example.com"), ("globex", "")]
    assert result == {"queued": 3}
    assert fake_sweep.refreshed == [], "the periodic task never calls a provider"


def test_refresh_due_with_nothing_due_queues_nothing(fake_sweep, monkeypatch):
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.refresh_client, "delay", lambda *a: sent.append(a))
    assert tasks.refresh_due.apply().get() == {"queued": 0}
    assert sent == []


def test_the_beat_schedule_names_the_periodic_task():
    (entry,) = tasks.BEAT_SCHEDULE.values()
    assert entry["task"] == tasks.refresh_due.name == "oauth2_integrator.refresh_due"
    assert tasks.refresh_client.name == "oauth2_integrator.refresh_client"
    # A tick left in the queue while the workers were down expires before the next.
    assert 0 < entry["options"]["expires"] < entry["schedule"]


def test_the_readme_and_the_example_project_paste_the_same_schedule():
    from example_project import settings

    assert settings.CELERY_BEAT_SCHEDULE == tasks.BEAT_SCHEDULE
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Celery", 1)[1].split("\n## ", 1)[0]
    block = section.split("CELERY_BEAT_SCHEDULE = ", 1)[1].split("\n}\n", 1)[0] + "}"
    assert eval(block, {}) == tasks.BEAT_SCHEDULE  # noqa: S307 - our own README


def test_the_example_project_celery_app_registers_the_tasks():
    from example_project.celery import app

    assert app.main == "example_project"
    app.loader.import_default_modules()
    assert "oauth2_integrator.refresh_due" in app.tasks
    assert "oauth2_integrator.refresh_client" in app.tasks


# --- real workers, real Redis, real PostgreSQL ------------------------------------------


def _redis_reachable() -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((REDIS_HOST, REDIS_PORT)) == 0


STORED_REFRESH = "stored-refresh-token-CCCC-2222-DDDD"


@pytest.fixture
def token_server() -> Iterator[RotatingProvider]:
    with running(RotatingProvider(STORED_REFRESH)) as provider:
        yield provider


@dataclasses.dataclass
class Workers:
    app: Any
    logs: list[Path]
    procs: list[subprocess.Popen[bytes]]

    def output(self) -> str:
        return "\n".join(log.read_text(errors="replace") for log in self.logs)


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    user = quote(db.get("USER") or "postgres")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def _wait_ready(workers: Workers, names: list[str]) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        for proc in workers.procs:
            if proc.poll() is not None:
                pytest.fail(f"a Celery worker exited:\n{workers.output()[-3000:]}")
        replies = workers.app.control.ping(destination=names, timeout=0.5)
        answered = {name for reply in replies for name in reply}
        if answered >= set(names):
            return
    pytest.fail(f"the Celery workers did not start:\n{workers.output()[-3000:]}")


@pytest.fixture(scope="module")
def workers(
    django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    """Two Celery workers (``-A example_project``) on this test's database.

    Their Django runs ``tests.settings`` on the test database pytest-django created;
    the broker and result backend are a Redis database of their own, flushed first
    (its number comes from the test database's name, so two checkouts testing on
    different databases do not share a queue).
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the Celery workers share the test database: PostgreSQL only")
    if not _redis_reachable():
        pytest.skip(
            f"Redis is not answering on {REDIS_HOST}:{REDIS_PORT}; "
            "scripts/ensure-services.sh (run by `make test` and .ci/run) starts it"
        )
    import redis

    db_number = 1 + zlib.crc32(connection.settings_dict["NAME"].encode()) % 15
    broker = f"redis://{REDIS_HOST}:{REDIS_PORT}/{db_number}"
    redis.Redis.from_url(broker).flushdb()

    app = celery.Celery("oauth2-integrator-tests", broker=broker, backend=broker)
    app.conf.broker_connection_retry_on_startup = False
    previous = celery._state.get_current_app()
    app.set_current()  # so `tasks.refresh_due.delay()` sends through this broker

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TEST_DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "PYTHONPATH": str(REPO),
    }
    names = ["oauth2-w1@tests", "oauth2-w2@tests"]
    logdir = tmp_path_factory.mktemp("celery-workers")
    logs = [logdir / f"{name.split('@')[0]}.log" for name in names]
    procs = []
    for name, log in zip(names, logs, strict=True):
        with log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "example_project",
                        "worker",
                        "--pool=solo",
                        f"--hostname={name}",
                        "--prefetch-multiplier=1",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                        "--loglevel=INFO",
                    ],
                    cwd=REPO,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    running = Workers(app, logs, procs)
    try:
        _wait_ready(running, names)
        yield running
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)  # warm shutdown: finish, then leave
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        previous.set_current()
        redis.Redis.from_url(broker).flushdb()


@pytest.fixture
def worker_log(
    workers: Workers, secret_values: Any, token_server: RotatingProvider
) -> Iterator[Workers]:
    """The workers, and afterwards: no secret in what they logged during the test."""
    offsets = [log.stat().st_size for log in workers.logs]
    yield workers
    for value in token_server.issued:
        secret_values.add(value, "issued by the test's token endpoint")
    for log, offset in zip(workers.logs, offsets, strict=True):
        with log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
        leaks = secret_values.found_in(text)
        assert not leaks, f"{leaks} in a worker's log:\n{secret_values.hide(text)}"


def _collect(result: Any) -> list[Any]:
    """The values of a task and of every task it queued, in the order they finished."""
    return [value for _, value in result.collect(timeout=PATIENCE)]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_refreshes_the_due_token_from_the_periodic_task(
    worker_log: Workers,
    token_server: RotatingProvider,
    make_client: Any,
    make_token: Any,
):
    client = make_client(token_endpoint=token_server.url)
    due = make_token(client, expires_at=timezone.now() + datetime.timedelta(seconds=60))
    other = make_client(name="fresh", token_endpoint=token_server.url)
    make_token(  # neither expiring nor idle: not due
        other,
        obtained_at=timezone.now() - datetime.timedelta(minutes=10),
        expires_at=timezone.now() + datetime.timedelta(hours=1),
    )
    before = timezone.now()

    result = tasks.refresh_due.delay()
    values = _collect(result)

    assert values[0] == {"queued": 1}, worker_log.output()[-3000:]
    assert len(values) == 2, values
    assert (values[1]["name"], values[1]["account"]) == ("acme", "")
    assert values[1]["result"] == "refreshed", values[1]
    assert len(token_server.calls) == 1
    assert token_server.calls[0].form["refresh_token"] == STORED_REFRESH
    token = OAuth2Token.objects.get(pk=due.pk)
    assert token.access_token == "provider-access-00001-wwwwwwww"
    assert token.refresh_token == "rotated-refresh-00001-zzzzzzzz"
    assert token.status == "active"
    assert token.refreshed_at is not None and token.refreshed_at >= before
    assert token.expires_at > timezone.now() + datetime.timedelta(minutes=50)
    assert OAuth2Token.objects.get(client=other).refreshed_at is None
    # The token_refreshed signal reached the audit trail's receiver in the worker.
    (event,) = OAuth2Event.objects.filter(client=client, kind="refreshed")
    assert (event.outcome, event.actor) == ("ok", None)
    assert not OAuth2Event.objects.filter(client=other, kind="refreshed").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_and_overlapping_ticks_call_the_provider_once(
    worker_log: Workers,
    token_server: RotatingProvider,
    make_client: Any,
    make_token: Any,
):
    """While one worker is inside the token endpoint (holding the claim on the token row), the other
    worker takes the other tasks for the same token and finishes them without waiting
    for the lock and without calling the provider (a replayed refresh token would
    have been answered with invalid_grant); overlapping beat ticks change nothing."""
    client = make_client(token_endpoint=token_server.url)
    make_token(client, expires_at=timezone.now() + datetime.timedelta(seconds=60))
    token_server.hold = True

    first = tasks.refresh_client.delay("acme")
    assert token_server.called.wait(PATIENCE), worker_log.output()[-3000:]
    again = [tasks.refresh_client.delay("acme") for _ in range(3)]
    ticks = [tasks.refresh_due.delay(), tasks.refresh_due.delay()]
    # The endpoint holds its answer for at most 4 s: look for 3 s.
    deadline = time.monotonic() + 3
    while not any(r.ready() for r in again) and time.monotonic() < deadline:
        time.sleep(0.02)
    during_hold = [r.get() for r in again if r.ready()]
    token_server.release.set()

    outcomes = [first.get(timeout=PATIENCE)] + [r.get(timeout=PATIENCE) for r in again]
    for tick in ticks:
        outcomes += [value for value in _collect(tick) if "result" in value]

    assert during_hold, f"no task finished while the lock was held: {outcomes}"
    assert all(o["result"] == "skipped" for o in during_hold), during_hold
    assert len(token_server.calls) == 1, token_server.calls
    assert outcomes[0]["result"] == "refreshed", outcomes
    assert [o["result"] for o in outcomes].count("refreshed") == 1, outcomes
    token = OAuth2Token.objects.get()
    assert token.access_token == "provider-access-00001-wwwwwwww"
    assert token.refresh_token == "rotated-refresh-00001-zzzzzzzz"
    assert token.status == "active"
    assert OAuth2Event.objects.filter(client=client, kind="refreshed").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_outage_costs_the_provider_one_call_however_many_tasks_ask(
    worker_log: Workers,
    token_server: RotatingProvider,
    make_client: Any,
    make_token: Any,
):
    """The back-off a worker records on the token holds back the next tick and every
    other worker, while the still-valid token is kept (nothing is lost)."""
    client = make_client(token_endpoint=token_server.url)
    token = make_token(
        client, expires_at=timezone.now() + datetime.timedelta(seconds=60)
    )
    token_server.outage = True

    first = _collect(tasks.refresh_due.delay())
    assert first[0] == {"queued": 1}, worker_log.output()[-3000:]
    assert first[1]["result"] == "failed", first
    later = _collect(tasks.refresh_due.delay()) + [
        tasks.refresh_client.delay("acme").get(timeout=PATIENCE) for _ in range(3)
    ]

    assert len(token_server.calls) == 1, token_server.calls
    assert later[0] == {"queued": 0}, later
    assert {o["result"] for o in later[1:]} == {"held_back"}, later
    stored = OAuth2Token.objects.get(pk=token.pk)
    assert stored.access_token == "stored-access-token-AAAA-1111-BBBB"
    assert stored.refresh_token == STORED_REFRESH
    assert stored.status == "active"
    assert stored.refresh_attempts == 1
    assert stored.next_attempt_at is not None
    assert stored.next_attempt_at > timezone.now()
    assert OAuth2Event.objects.filter(client=client, kind="refresh_failed").count() == 1
