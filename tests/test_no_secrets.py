"""No secret in clear anywhere: raw database, logs, reprs, exception messages.

A whole login -> callback -> refresh -> failures runs first; then every column of
every table is read with raw SQL and searched for each secret the run handled.
"""

from __future__ import annotations

import datetime
import logging
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
    assert len(full_run["exceptions"]) == 4
    for exc in full_run["exceptions"]:
        for text in (str(exc), repr(exc), exc.description or "", exc.error or ""):
            assert_none_in(text, full_run["secrets"], type(exc).__name__)
    for page in full_run["pages"]:
        assert "Authorization failed" in page
        assert_none_in(page, full_run["secrets"], "an error page")


def test_no_secret_in_model_reprs(full_run):
    objects = [
        OAuth2Client.objects.get(),
        OAuth2Token.objects.get(),
        *AuthorizationRequest.objects.all(),
    ]
    for obj in objects:
        assert_none_in(str(obj), full_run["secrets"], f"str({type(obj).__name__})")
        assert_none_in(repr(obj), full_run["secrets"], f"repr({type(obj).__name__})")


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
