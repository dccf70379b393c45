"""Shared fixtures: a registered client, an operator allowed to authorize it, a token.

And one suite-wide promise, kept by an autouse fixture: no test may let a secret it
handled reach a log record (see ``_no_secret_in_logs``).
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import django
import pytest
from django.contrib.auth.models import Permission, User
from django.http import HttpRequest
from django.test import Client
from django.utils import timezone

from oauth2_integrator import signals
from oauth2_integrator.fields import (
    EncryptedJSONField,
    EncryptedTextField,
    Undecryptable,
)
from oauth2_integrator.masking import mask
from oauth2_integrator.models import OAuth2Client, OAuth2Token

#: pytester runs a test session inside a test (tests/test_no_secrets.py proves the
#: log guard below fails a test that logs a secret).
pytest_plugins = ["pytester"]

AUTHORIZE_URL = "https://auth.example.test/oauth/authorize"
TOKEN_URL = "https://auth.example.test/oauth/token"
CLIENT_SECRET = "s3cr3t-client-secret-value-0123456789"
#: ``settings.ADMINS`` with one operator: Django 6 takes plain addresses (and
#: deprecates the (name, address) pairs that Django 5.2 requires).
OPS_ADMINS: list[Any] = (
    ["ops@example.com"] if django.VERSION >= (6, 0) else [("Ops", "ops@example.com")]
)

STORED_ACCESS_TOKEN = "stored-access-token-AAAA-1111-BBBB"
STORED_REFRESH_TOKEN = "stored-refresh-token-CCCC-2222-DDDD"


@pytest.fixture
def make_client(db: Any) -> Callable[..., OAuth2Client]:
    def make(**fields: Any) -> OAuth2Client:
        values: dict[str, Any] = {
            "name": "acme",
            "display_name": "Acme API",
            "client_id": "acme-client-id",
            "client_secret": CLIENT_SECRET,
            "authorization_endpoint": AUTHORIZE_URL,
            "token_endpoint": TOKEN_URL,
            "scope": "read write",
        }
        values.update(fields)
        return OAuth2Client.objects.create(**values)

    return make


@pytest.fixture
def oauth_client(make_client: Callable[..., OAuth2Client]) -> OAuth2Client:
    return make_client()


@pytest.fixture
def make_token(db: Any) -> Callable[..., OAuth2Token]:
    def make(client: OAuth2Client, **fields: Any) -> OAuth2Token:
        """A token obtained a day ago: its lifetime never caps the refresh margin."""
        now = timezone.now()
        values: dict[str, Any] = {
            "access_token": STORED_ACCESS_TOKEN,
            "refresh_token": STORED_REFRESH_TOKEN,
            "obtained_at": now - datetime.timedelta(days=1),
            "expires_at": now + datetime.timedelta(hours=1),
            "scope": client.scope,
        }
        values.update(fields)
        return OAuth2Token.objects.create(client=client, **values)

    return make


def in_seconds(seconds: float) -> datetime.datetime:
    return timezone.now() + datetime.timedelta(seconds=seconds)


def two_step_claim(monkeypatch: Any) -> None:
    """The read, then the claim, as the sweep does (and any refresh inside a
    caller's transaction or on another database than PostgreSQL): PostgreSQL's
    one-statement claim (``tokens._read_and_claim``) leaves no moment between
    them for a test to change the row in."""
    from oauth2_integrator import tokens

    monkeypatch.setattr(tokens, "_read_and_claim", lambda *args: None)


@pytest.fixture
def expiring(oauth_client: OAuth2Client, make_token: Any) -> OAuth2Token:
    """A token inside the default 300 s refresh margin, still valid."""
    return make_token(oauth_client, expires_at=in_seconds(120))


@pytest.fixture
def expired(oauth_client: OAuth2Client, make_token: Any) -> OAuth2Token:
    return make_token(oauth_client, expires_at=in_seconds(-60))


@pytest.fixture
def operator(db: Any) -> User:
    """A staff user who may view and change clients and start logins."""
    user = User.objects.create_user("operator", password="operator-pass", is_staff=True)
    codenames = [
        "authorize",
        "view_oauth2client",
        "change_oauth2client",
        "add_oauth2client",
    ]
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="oauth2_integrator", codename__in=codenames
        )
    )
    return user


@pytest.fixture
def operator_client(operator: User) -> Client:
    browser = Client()
    browser.force_login(operator)
    return browser


# --- core protocol helpers (test_flow, test_callback, test_tokens, ...) ------------


@pytest.fixture
def token_endpoint(secret_values: SecretValues) -> Any:
    """A ``responses`` mock for the token endpoint; other URLs raise (no internet).

    What went over it (codes, verifiers, refresh tokens, the client secret, the tokens
    handed out) is added to the secrets the log must not contain.
    """
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        try:
            yield mock
        finally:
            _record_exchanges(secret_values, mock)


def _json_or_none(body: Any) -> Any:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # a hostile body from a test's mock
        return None


def _record_exchanges(secrets: SecretValues, mock: Any) -> None:
    """The secrets a test's token endpoint mock received and handed out."""
    for call in mock.calls:
        body = call.request.body
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        if isinstance(body, str):
            secrets.add_from(dict(parse_qsl(body)), "sent to the token endpoint")
        header = call.request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                decoded = base64.b64decode(header[6:]).decode("utf-8", "replace")
            except ValueError:
                decoded = ""
            secrets.add(unquote_plus(decoded.partition(":")[2]), "Basic auth secret")
        content = getattr(call.response, "content", None)
        secrets.add_from(_json_or_none(content), "token endpoint answer")
    for registered in mock.registered():
        secrets.add_from(
            _json_or_none(getattr(registered, "body", None)), "mocked answer"
        )


@pytest.fixture
def start_login() -> Callable[..., dict[str, str]]:
    """POST the login form like the operator's browser and return the redirect's query.

    The query (``state``, ``code_challenge``, ...) is what the provider would see; the
    callback tests answer with its ``state``.
    """
    from urllib.parse import parse_qsl, urlsplit

    def start(browser: Client, name: str = "acme", **form: str) -> dict[str, str]:
        response = browser.post(f"/oauth2/{name}/login/", form)
        assert response.status_code == 302, response.content
        location = response["Location"]
        query = dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))
        query["_location"] = location
        return query

    return start


def token_fields(token: OAuth2Token) -> dict[str, Any]:
    """All stored fields of a token, read afresh: proof a failure changed nothing."""
    fresh = OAuth2Token.objects.get(pk=token.pk)
    return {
        field.attname: getattr(fresh, field.attname)
        for field in OAuth2Token._meta.concrete_fields
    }


def raw_secret(client: OAuth2Client) -> str:
    """The client secret column as stored, bypassing the field's decryption."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT client_secret FROM {OAuth2Client._meta.db_table} WHERE id = %s",  # noqa: S608
            [client.pk],
        )
        return str(cursor.fetchone()[0])


# --- the suite-wide promise: no known secret in any log record -----------------------

#: Values shorter than this are ignored: "code" or "abc" would match innocent words.
MIN_SECRET_LENGTH = 8

#: The secrets every test may handle: the constants above and ``make_token``'s tokens.
SUITE_SECRETS = {
    "CLIENT_SECRET": CLIENT_SECRET,
    "make_token access_token": STORED_ACCESS_TOKEN,
    "make_token refresh_token": STORED_REFRESH_TOKEN,
}

#: Token request fields, token response fields and stored columns that hold secrets.
SECRET_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "code",
        "code_verifier",
        "state",
    }
)

#: LogRecord attributes every record has; anything else came in through ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "logs_secrets(reason): this test logs a known secret on purpose; the "
        "suite-wide log check is skipped for it (there should be none).",
    )


class SecretValues:
    """The secret values one test handled, each with a label saying where it came from.

    Tests add their own with ``secret_values.add(value, "what it is")``; the hooks in
    ``_no_secret_in_logs`` add every value that passes through the app's encrypted
    fields, the token endpoint and ``flow.new_state``.
    """

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def add(self, value: Any, label: str) -> None:
        if isinstance(value, Undecryptable) or not isinstance(value, str):
            return
        value = value.strip()
        # Short or repetitive values (hypothesis likes "00000000") match by chance.
        if len(value) >= MIN_SECRET_LENGTH and len(set(value)) >= 4:
            self.values.setdefault(value, label)

    def add_from(self, mapping: Any, label: str) -> None:
        """The secret fields of a token request, token response or JSON column."""
        if isinstance(mapping, dict):
            for key, value in mapping.items():
                if str(key) in SECRET_KEYS or str(key).endswith("_token"):
                    self.add(value, f"{key} ({label})")

    def found_in(self, text: str) -> list[str]:
        return [label for value, label in self.values.items() if value in text]

    def hide(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, f"[{mask(value)}]")
        return text


class _RecordCollector(logging.Handler):
    """Keeps every record's text as it was when logged (args can change later)."""

    formatter_ = logging.Formatter("%(levelname)s %(name)s: %(message)s")

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.seen: set[int] = set()
        self.records: list[logging.LogRecord] = []  # alive, so no id is reused
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if id(record) in self.seen:  # the app logger's records arrive twice
            return
        self.seen.add(id(record))
        self.records.append(record)
        parts = []
        try:
            parts.append(self.formatter_.format(record))  # with traceback, stack
        except Exception:  # a broken record is still searched
            parts.append(f"{record.name}: {record.msg!r}")
        parts.append(f"args={record.args!r}")
        for key, value in vars(record).items():
            if key in _RECORD_ATTRIBUTES:
                continue
            if isinstance(value, HttpRequest):
                # django.request attaches the request: its repr has the query string,
                # which a callback's access log line holds anyway (code and state are
                # single use; SECURITY.md says so). Its path is searched.
                value = value.path
            parts.append(f"{key}={value!r}")
        self.texts.append("\n".join(parts))


def _record_model_secrets(secrets: SecretValues, instance: Any) -> None:
    """Every encrypted field's plain value that this instance holds (never loads one)."""
    for field in instance._meta.concrete_fields:
        if not isinstance(field, EncryptedTextField):
            continue
        if field.attname not in instance.__dict__:  # deferred: do not query
            continue
        value = instance.__dict__[field.attname]
        label = f"{type(instance).__name__}.{field.attname}"
        if isinstance(field, EncryptedJSONField):
            secrets.add_from(value, label)
        else:
            secrets.add(value, label)


def _wrap(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, record: Any) -> None:
    """Call ``record(args, kwargs, result)`` after each call of ``owner.name``."""
    original = getattr(owner, name, None)
    if original is None:  # renamed by a refactoring: the other hooks still work
        return

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        record(args, kwargs, result)
        return result

    monkeypatch.setattr(owner, name, wrapper)


@pytest.fixture(autouse=True)
def _no_secret_in_logs(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Fail any test in which a secret it handled reaches a log record.

    Every record of the root logger and of the app's logger is kept (its formatted
    message with traceback, its args and ``extra`` values) and searched at teardown
    for the suite's constants and for every secret the test handled: the plain values
    of the app's encrypted fields as they are saved or loaded, the ``state`` values
    ``flow.new_state`` generates, the code, verifier and refresh token sent to the
    token endpoint and the tokens it handed out. A test adds its own values with the
    ``secret_values`` fixture and opts out with ``@pytest.mark.logs_secrets`` (there
    should be none). Records below a logger's level are never made, so nothing is
    lost here that a production handler would see.
    """
    from django.db.models.signals import post_init, pre_save

    from oauth2_integrator import flow

    secrets = SecretValues()
    for label, value in SUITE_SECRETS.items():
        secrets.add(value, label)

    def on_model(sender: Any, instance: Any, **kwargs: Any) -> None:
        if sender._meta.app_label == "oauth2_integrator":
            _record_model_secrets(secrets, instance)

    pre_save.connect(on_model, dispatch_uid="tests-secret-guard-pre-save")
    post_init.connect(on_model, dispatch_uid="tests-secret-guard-post-init")
    _wrap(
        monkeypatch,
        flow,
        "new_state",
        lambda args, kwargs, state: secrets.add(state, "state from flow.new_state"),
    )
    for name in ("exchange_code", "refresh"):
        _wrap(
            monkeypatch,
            flow,
            name,
            lambda args, kwargs, result, name=name: secrets.add_from(
                kwargs, f"flow.{name} argument"
            ),
        )
    _wrap(
        monkeypatch,
        flow,
        "token_set_from",
        lambda args, kwargs, result: secrets.add_from(
            args[0] if args else kwargs.get("body"), "token response"
        ),
    )

    collector = _RecordCollector()
    loggers = [logging.getLogger(), logging.getLogger("oauth2_integrator")]
    for logger in loggers:
        logger.addHandler(collector)
    try:
        yield secrets
    finally:
        for logger in loggers:
            logger.removeHandler(collector)
        pre_save.disconnect(dispatch_uid="tests-secret-guard-pre-save")
        post_init.disconnect(dispatch_uid="tests-secret-guard-post-init")
    if request.node.get_closest_marker("logs_secrets"):
        return
    leaks = [(secrets.found_in(text), text) for text in collector.texts]
    leaks = [(labels, text) for labels, text in leaks if labels]
    if leaks:
        report = "\n\n".join(
            f"{', '.join(labels)} in:\n{secrets.hide(text)}" for labels, text in leaks
        )
        pytest.fail(
            f"A known secret reached the log ({len(leaks)} record(s)); values are "
            f"masked here:\n{report}",
            pytrace=False,
        )


@pytest.fixture
def secret_values(_no_secret_in_logs: SecretValues) -> SecretValues:
    """Register more values the log must never contain: ``secret_values.add(v, "what")``."""
    return _no_secret_in_logs


# --- say so when the PostgreSQL-only tests did not run ------------------------------


def _database_vendor() -> str:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    return "postgresql" if "postgresql" in engine else engine.rsplit(".", 1)[-1]


def pytest_report_header(config: pytest.Config) -> str:
    vendor = _database_vendor()
    if vendor == "postgresql":
        return "database: PostgreSQL (the concurrency tests run)"
    return (
        f"database: {vendor}: the tests marked `postgres` (concurrent "
        "refreshes and logins, transaction isolation) are SKIPPED; `make test` runs "
        "them on PostgreSQL"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "postgres" in getattr(report, "keywords", {})
    ]
    if skipped and _database_vendor() != "postgresql":
        terminalreporter.write_sep(
            "=",
            f"{len(skipped)} PostgreSQL-only tests (concurrency, its own errors) were "
            "skipped on this database: run `make test` for them",
            yellow=True,
        )


@pytest.fixture
def told() -> Iterator[list[dict[str, Any]]]:
    """What the ``reauthorization_required`` signal sent during the test."""
    got: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        got.append(kwargs)

    signals.reauthorization_required.connect(receiver)
    yield got
    signals.reauthorization_required.disconnect(receiver)
