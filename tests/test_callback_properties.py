"""Property-based tests: whatever query string reaches the callback, no HTTP 500.

Random parameters and values (unicode, NUL, huge, repeated keys, missing or garbage
state, error/error_description/iss in any combination), with and without a real
pending login, from an operator or an anonymous visitor. Only a well-formed answer
to a real login by its own operator may store tokens; anything else leaves the
working token as it was, and no state, code, verifier or secret shows in the page
or the log. The token endpoint is mocked (``responses``): no internet.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oauth2_integrator.authorization import SINGLE_PARAMS
from oauth2_integrator.models import AuthorizationRequest, OAuth2Token

from .conftest import CLIENT_SECRET, TOKEN_URL, token_fields

CALLBACK = "/oauth2/acme/callback/"
CODE = "property-code-0123456789abcdef"
ISSUER = "https://auth.example.test"
NEW_TOKENS = {
    "access_token": "property-access-token-0123456789",
    "refresh_token": "property-refresh-token-0123456789",
    "token_type": "Bearer",
    "expires_in": 3600,
}

#: Text a browser can carry: anything but lone surrogates (NUL and controls stay).
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
huge_text = st.integers(min_value=1_000, max_value=60_000).map(lambda n: "é\x00x" * n)
values = st.one_of(
    any_text,
    huge_text,
    st.sampled_from(["", "access_denied", "invalid_scope", ISSUER, "<b>x</b>"]),
)
keys = st.one_of(st.sampled_from([*SINGLE_PARAMS, "session_state", "scope"]), any_text)
#: Often a well-formed answer to start from, so successes get tested too.
well_formed = st.sampled_from(
    [
        [],
        [("state", "REAL_STATE")],
        [("state", "REAL_STATE"), ("code", CODE)],
        [("code", CODE), ("state", "REAL_STATE")],
    ]
)
#: The real state (replaced when there is one) and code appear only under their own
#: names: the provider's other words (a description, an iss) are shown to operators.
pair = st.one_of(
    st.tuples(keys, values),
    st.just(("state", "REAL_STATE")),
    st.just(("code", CODE)),
)
pairs = st.tuples(well_formed, st.lists(pair, max_size=8)).map(
    lambda parts: [*parts[0], *parts[1]]
)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def should_succeed(
    query: list[tuple[str, str]], *, state: str | None, issuer: str, operator: bool
) -> bool:
    """Only a well-formed answer to the real login, in its operator's browser."""
    seen: dict[str, list[str]] = {}
    for key, value in query:
        seen.setdefault(key, []).append(value)
    if any(len(seen.get(key, [])) > 1 for key in SINGLE_PARAMS):
        return False
    iss = seen.get("iss", [None])[0]
    return bool(
        state
        and operator
        and seen.get("state") == [state]
        and seen.get("code", [""])[0]
        and not seen.get("error", [""])[0]
        and (not issuer or iss is None or iss == issuer)
    )


@pytest.fixture
def world(oauth_client, operator_client, start_login, make_token, token_endpoint):
    token_endpoint.post(TOKEN_URL, json=NEW_TOKENS)
    return {
        "client": oauth_client,
        "operator": operator_client,
        "start_login": start_login,
        "make_token": make_token,
        "mock": token_endpoint,
    }


@SETTINGS
@given(
    query=pairs,
    with_login=st.booleans(),
    as_operator=st.booleans(),
    issuer=st.sampled_from(["", ISSUER]),
)
def test_any_callback_query(world, caplog, query, with_login, as_operator, issuer):
    client = world["client"]
    client.issuer = issuer
    client.save(update_fields=["issuer"])
    AuthorizationRequest.objects.all().delete()
    OAuth2Token.objects.all().delete()
    working = world["make_token"](client)
    before = token_fields(working)

    state = None
    verifier = ""
    if with_login:
        state = world["start_login"](world["operator"])["state"]
        verifier = AuthorizationRequest.objects.get().code_verifier
    query = [(k, state if v == "REAL_STATE" and state else v) for k, v in query]
    browser = world["operator"] if as_operator else Client()
    calls_before = len(world["mock"].calls)

    response = browser.get(CALLBACK + "?" + urlencode(query))

    assert response.status_code in {302, 400, 502, 503}, response.status_code
    page = response.content.decode()
    if should_succeed(query, state=state, issuer=issuer, operator=as_operator):
        assert response.status_code == 302
        assert OAuth2Token.objects.get().access_token == NEW_TOKENS["access_token"]
    else:
        assert response.status_code != 302, query
        assert len(world["mock"].calls) == calls_before
        assert token_fields(working) == before
    for secret in (state, verifier, CODE, CLIENT_SECRET, *NEW_TOKENS.values()):
        if isinstance(secret, str) and len(secret) >= 8:
            assert secret not in page
            assert secret not in caplog.text


@SETTINGS
@given(state=st.one_of(any_text, huge_text), code=st.one_of(any_text, huge_text))
def test_garbage_state_never_reaches_the_token_endpoint(world, state, code):
    """Without a matching pending login nothing is exchanged, whoever asks."""
    AuthorizationRequest.objects.all().delete()
    calls_before = len(world["mock"].calls)
    for browser in (world["operator"], Client()):
        response = browser.get(CALLBACK, {"state": state, "code": code})
        assert response.status_code == 400
    assert len(world["mock"].calls) == calls_before
    assert not OAuth2Token.objects.exists()
