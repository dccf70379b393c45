"""No secret in clear anywhere: raw database, logs, reprs, exception messages.

A whole login -> callback -> refresh -> failures runs first; then every column of
every table is read with raw SQL and searched for each secret the run handled.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.utils import timezone

from oauth2_integrator import (
    AuthorizationRequired,
    TokenRefreshError,
    flow,
    get_access_token,
    refresh_access_token,
)
from oauth2_integrator.exceptions import TokenEndpointError
from oauth2_integrator.masking import mask
from oauth2_integrator.models import AuthorizationRequest, OAuth2Client, OAuth2Token

from .conftest import CLIENT_SECRET, TOKEN_URL

CODE = "code-SECRET-7f3a9c1e5b"
ACCESS_1 = "access-SECRET-1-a8d7c6b5e4f3"
REFRESH_1 = "refresh-SECRET-1-0f9e8d7c6b5a"
ACCESS_2 = "access-SECRET-2-1a2b3c4d5e6f"
REFRESH_2 = "refresh-SECRET-2-6f5e4d3c2b1a"
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.SECRET-id-token.c2lnbmF0dXJl"


def all_rows() -> str:
    """Every value in every table of the database, as text."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT * FROM {quoted}")  # noqa: S608
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, memoryview | bytes):
                        value = bytes(value).decode("latin-1")
                    chunks.append(f"{table}: {value}")
    # Session data is encoded; look inside it too.
    for session in Session.objects.all():
        chunks.append(repr(SessionStore().decode(session.session_data)))
    return "\n".join(chunks)


@pytest.fixture
def full_run(
    make_client, operator_client, start_login, token_endpoint, caplog
) -> dict[str, Any]:
    caplog.set_level(logging.DEBUG)
    client = make_client(scope="openid read")
    seen: dict[str, Any] = {"exceptions": [], "pages": []}

    # Login and callback.
    query = start_login(operator_client)
    state = query["state"]
    verifier = AuthorizationRequest.objects.get().code_verifier
    token_endpoint.post(
        TOKEN_URL,
        json={
            "access_token": ACCESS_1,
            "refresh_token": REFRESH_1,
            "expires_in": 60,
            "id_token": ID_TOKEN,
            "token_type": "Bearer",
        },
    )
    done = operator_client.get("/oauth2/acme/callback/", {"state": state, "code": CODE})
    assert done.status_code == 302
    assert f"code_verifier={verifier}" in token_endpoint.calls[0].request.body

    # Refresh (inside the margin: as if obtained an hour ago) with rotation.
    OAuth2Token.objects.update(obtained_at=timezone.now() - datetime.timedelta(hours=1))
    token_endpoint.replace(
        "POST",
        TOKEN_URL,
        json={"access_token": ACCESS_2, "refresh_token": REFRESH_2, "expires_in": 60},
    )
    assert get_access_token("acme") == ACCESS_2

    # A replayed callback, a transient refresh failure, then invalid_grant.
    seen["pages"].append(
        operator_client.get(
            "/oauth2/acme/callback/", {"state": state, "code": CODE}
        ).content.decode()
    )
    token_endpoint.replace("POST", TOKEN_URL, body=requests.Timeout("slow"))
    with pytest.raises(TokenRefreshError) as transient:
        refresh_access_token("acme")
    seen["exceptions"].append(transient.value)
    with pytest.raises(TokenRefreshError) as backing_off:
        refresh_access_token("acme")  # held back by the back-off (issue 7)
    seen["exceptions"].append(backing_off.value)
    OAuth2Token.objects.update(next_attempt_at=None)  # the back-off step passes
    token_endpoint.replace(
        "POST",
        TOKEN_URL,
        status=400,
        json={"error": "invalid_grant", "error_description": "revoked"},
    )
    with pytest.raises(AuthorizationRequired) as revoked:
        refresh_access_token("acme")
    seen["exceptions"].append(revoked.value)
    with pytest.raises(AuthorizationRequired) as again:
        get_access_token("acme")
    seen["exceptions"].append(again.value)

    # A second login whose code exchange fails.
    state_2 = start_login(operator_client)["state"]
    verifier_2 = AuthorizationRequest.objects.get(used_at=None).code_verifier
    token_endpoint.replace(
        "POST", TOKEN_URL, status=400, json={"error": "invalid_grant"}
    )
    failed = operator_client.get(
        "/oauth2/acme/callback/", {"state": state_2, "code": CODE + "-2"}
    )
    assert failed.status_code == 400
    seen["pages"].append(failed.content.decode())
    with pytest.raises(TokenEndpointError) as direct:
        flow.exchange_code(
            client, code=CODE, redirect_uri="https://x.test/cb", code_verifier=verifier
        )
    seen["exceptions"].append(direct.value)

    seen["secrets"] = {
        "client secret": CLIENT_SECRET,
        "code": CODE,
        "second code": CODE + "-2",
        "state": state,
        "second state": state_2,
        "code verifier": verifier,
        "second code verifier": verifier_2,
        "access token": ACCESS_1,
        "refresh token": REFRESH_1,
        "rotated access token": ACCESS_2,
        "rotated refresh token": REFRESH_2,
        "id token": ID_TOKEN,
    }
    seen["client"] = client
    seen["log"] = caplog.text  # this fixture's records (formatted, with tracebacks)
    seen["state"] = state
    seen["verifier"] = verifier
    return seen


def assert_none_in(text: str, secrets: dict[str, str], where: str) -> None:
    leaked = [name for name, value in secrets.items() if value in text]
    assert not leaked, f"{', '.join(leaked)} in clear in {where}"


def test_the_run_stored_what_it_should(full_run):
    token = OAuth2Token.objects.get()
    assert token.access_token == ACCESS_2
    assert token.refresh_token == REFRESH_2
    assert token.extra == {"id_token": ID_TOKEN}
    assert token.status == "reauthorization_required"
    assert AuthorizationRequest.objects.count() == 2


def test_no_secret_in_any_database_column(full_run):
    dump = all_rows()
    # The dump really contains the app's rows (hashes, ciphertexts, ...).
    assert flow.hash_state(full_run["state"]) in dump
    assert "oauth2_integrator_oauth2token" in dump
    assert_none_in(dump, full_run["secrets"], "the database")


def test_no_secret_in_the_log(full_run):
    log = full_run["log"]
    assert "Refreshed the access token" in log
    assert "Authorization callback for 'acme' failed" in log
    assert "Token endpoint auth.example.test answered HTTP 200" in log  # DEBUG too
    assert_none_in(log, full_run["secrets"], "the log")


def test_no_secret_in_pages_or_exceptions(full_run):
    assert len(full_run["exceptions"]) == 5  # the back-off's own since issue 7
    for exc in full_run["exceptions"]:
        for text in (str(exc), repr(exc), exc.description or "", exc.error or ""):
            assert_none_in(text, full_run["secrets"], type(exc).__name__)
    for page in full_run["pages"]:
        assert "Authorization failed" in page
        assert_none_in(page, full_run["secrets"], "an error page")


def test_no_secret_in_model_reprs(full_run):
    """Objects that hold the secrets in clear (loaded, and built in memory) show none."""
    client = OAuth2Client.objects.get()
    token = OAuth2Token.objects.get()
    pending = list(AuthorizationRequest.objects.order_by("created_at"))
    in_memory = OAuth2Token(
        client=client,
        access_token=ACCESS_1,
        refresh_token=REFRESH_1,
        extra={"id_token": ID_TOKEN},
    )
    # Each object really holds what must not be shown.
    assert client.client_secret == CLIENT_SECRET
    assert (token.access_token, token.refresh_token) == (ACCESS_2, REFRESH_2)
    assert token.extra == {"id_token": ID_TOKEN}
    assert [p.code_verifier for p in pending] == [
        full_run["verifier"],
        full_run["secrets"]["second code verifier"],
    ]
    objects = [client, token, in_memory, token.client, *pending]
    for obj in objects:
        name = type(obj).__name__
        for text in (str(obj), repr(obj), f"{obj}", f"{obj!r}"):
            assert_none_in(text, full_run["secrets"], f"str/repr of {name}")
    for queryset in (
        OAuth2Client.objects.all(),
        OAuth2Token.objects.all(),
        AuthorizationRequest.objects.all(),
    ):
        assert_none_in(repr(queryset), full_run["secrets"], repr(queryset.model))


def test_no_secret_in_token_set_or_token_request_reprs(full_run):
    client = full_run["client"]
    token_set = flow.TokenSet(
        access_token=ACCESS_1,
        refresh_token=REFRESH_1,
        expires_in=60,
        extra={"id_token": ID_TOKEN},
    )
    exchange = flow.code_exchange_request(
        client,
        code=CODE,
        redirect_uri="https://site.test/cb",
        code_verifier=full_run["verifier"],
    )
    refresh = flow.refresh_request(client, refresh_token=REFRESH_1)
    client.token_auth_method = "client_secret_post"
    posted = flow.refresh_request(client, refresh_token=REFRESH_2)
    assert posted.data["client_secret"] == CLIENT_SECRET  # it is there, but hidden
    for obj in (token_set, exchange, refresh, posted):
        for text in (str(obj), repr(obj), f"{obj}", f"{obj!r}"):
            assert_none_in(text, full_run["secrets"], type(obj).__name__)
    assert "https://site.test/cb" in repr(exchange)  # not a secret, kept readable


# --- the suite-wide log guard (tests/conftest.py) fails a test that logs a secret ----

INNER_TESTS = """
import logging

import pytest

from oauth2_integrator import flow
from oauth2_integrator.masking import mask
from tests.conftest import CLIENT_SECRET, TOKEN_URL

log = logging.getLogger("oauth2_integrator")


def test_logs_the_client_secret():
    log.warning("secret is %s", CLIENT_SECRET)


def test_logs_a_value_it_registered(secret_values):
    secret_values.add("my-own-secret-value-123", "mine")
    log.info("value: my-own-secret-value-123")


def test_logs_a_token_it_saved(make_client, make_token):
    token = make_token(make_client(), access_token="access-of-this-test-only-42")
    logging.getLogger("some.library").error("got %r", {"t": token.access_token})


def test_logs_a_generated_state_in_a_traceback():
    state = flow.new_state()
    try:
        raise ValueError(f"bad {state}")
    except ValueError:
        log.exception("failed")


def test_logs_a_code_sent_to_the_token_endpoint(oauth_client, token_endpoint):
    token_endpoint.post(TOKEN_URL, json={"access_token": "handed-out-token-77"})
    flow.exchange_code(
        oauth_client, code="the-code-of-this-test", redirect_uri="https://x.test/cb",
        code_verifier=None,
    )
    log.debug("exchanged %s", "the-code-of-this-test")


def test_logs_a_token_the_endpoint_handed_out(oauth_client, token_endpoint):
    token_endpoint.post(TOKEN_URL, json={"access_token": "handed-out-token-77"})
    flow.exchange_code(
        oauth_client, code="another-code-0000", redirect_uri="https://x.test/cb",
        code_verifier=None,
    )
    log.debug("got", extra={"body": {"access_token": "handed-out-token-77"}})


def test_logs_only_masked_short_or_repetitive_values(
    oauth_client, make_token, secret_values
):
    token = make_token(oauth_client)
    secret_values.add("abc1234", "too short to tell from a word")
    secret_values.add("0" * 12, "too repetitive to tell from a number")
    log.warning("masked %s, short %s", mask(CLIENT_SECRET), "abc1234")
    log.warning("masked %s, then %s", mask(token.access_token), "0" * 20)


@pytest.mark.logs_secrets
def test_opted_out():
    log.warning("%s", CLIENT_SECRET)
"""

LEAKING = [
    "test_logs_the_client_secret",
    "test_logs_a_value_it_registered",
    "test_logs_a_token_it_saved",
    "test_logs_a_generated_state_in_a_traceback",
    "test_logs_a_code_sent_to_the_token_endpoint",
    "test_logs_a_token_the_endpoint_handed_out",
]


def test_the_log_guard_fails_a_test_that_logs_a_secret(pytester, monkeypatch):
    """The autouse guard in tests/conftest.py, run on tests that leak and tests that do not."""
    repo = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", repo)
    monkeypatch.setenv("TEST_DATABASE_URL", "sqlite:///:memory:")
    pytester.makeini("[pytest]\nDJANGO_SETTINGS_MODULE = tests.settings\n")
    pytester.makeconftest('pytest_plugins = ["tests.conftest"]\n')
    pytester.makepyfile(test_inner=INNER_TESTS)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rE", timeout=120)

    result.assert_outcomes(passed=len(LEAKING) + 2, errors=len(LEAKING))
    output = result.stdout.str()
    errors = {
        line.split("::")[1].split()[0]
        for line in output.splitlines()
        if line.startswith("ERROR test_inner.py::")
    }
    assert errors == set(LEAKING)
    assert "A known secret reached the log" in output
    assert f"[{mask(CLIENT_SECRET)}]" in output  # the report masks what it found
