"""The protocol in ``flow``: authorization URL, state, PKCE, client authentication,
token response parsing (RFC 6749 §4.1, §2.3.1, §5.1; RFC 7636)."""

from __future__ import annotations

import base64
import datetime
import string
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote_plus, urlsplit

import pytest
import requests
from django.db import connection
from django.utils import timezone

import oauth2_integrator
from oauth2_integrator import flow
from oauth2_integrator.exceptions import TokenEndpointError
from oauth2_integrator.models import OAuth2Token, TokenAuthMethod
from oauth2_integrator.tokens import get_access_token, store_token_set

from .conftest import AUTHORIZE_URL, CLIENT_SECRET, TOKEN_URL

REDIRECT = "https://site.example.test/oauth2/acme/callback/"
UNRESERVED = set(string.ascii_letters + string.digits + "-._~")


def build(client: Any, **kwargs: Any) -> tuple[str, dict[str, list[str]]]:
    kwargs.setdefault("redirect_uri", REDIRECT)
    kwargs.setdefault("state", "the-state")
    url = flow.authorization_url(client, **kwargs)
    return url, parse_qs(urlsplit(url).query, keep_blank_values=True)


# --- authorization URL ----------------------------------------------------------


def test_authorization_url_has_the_rfc_6749_parameters(oauth_client):
    url, query = build(oauth_client, code_verifier="v" * 43)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == AUTHORIZE_URL
    assert query == {
        "response_type": ["code"],
        "client_id": ["acme-client-id"],
        "redirect_uri": [REDIRECT],
        "scope": ["read write"],
        "state": ["the-state"],
        "code_challenge": [flow.code_challenge("v" * 43)],
        "code_challenge_method": ["S256"],
    }


def test_every_value_is_url_encoded(make_client):
    client = make_client(
        client_id="id with space&x=1/é+%",
        scope="openid profile https://api.example.test/read?x=1",
        redirect_uri="https://app.example.test/cb?tenant=a&b=c d",
    )
    url, query = build(client, redirect_uri=client.redirect_uri, state="s&t=u v")
    raw = urlsplit(url).query
    # No value leaks its own separators into the query string.
    assert raw.count("&") == 4  # response_type, client_id, redirect_uri, scope, state
    assert " " not in raw and "é" not in raw
    assert "client_id=id+with+space%26x%3D1%2F%C3%A9%2B%25" in raw
    assert (
        "redirect_uri=https%3A%2F%2Fapp.example.test%2Fcb%3Ftenant%3Da%26b%3Dc+d" in raw
    )
    assert query["client_id"] == ["id with space&x=1/é+%"]
    assert query["redirect_uri"] == ["https://app.example.test/cb?tenant=a&b=c d"]
    assert query["scope"] == ["openid profile https://api.example.test/read?x=1"]
    assert query["state"] == ["s&t=u v"]


def test_existing_query_of_the_authorization_endpoint_is_kept(make_client):
    client = make_client(
        authorization_endpoint=AUTHORIZE_URL + "?tenant=contoso&flag=&state=old"
    )
    url, query = build(client)
    pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    assert pairs[:2] == [("tenant", "contoso"), ("flag", "")]
    # The request's own parameters win over ones baked into the endpoint.
    assert query["state"] == ["the-state"]
    assert [k for k, _ in pairs].count("state") == 1


def test_extra_authorize_params_are_added(make_client):
    client = make_client(
        extra_authorize_params={"access_type": "offline", "prompt": "consent x", "n": 2}
    )
    client.extra_authorize_params["include_granted_scopes"] = True
    _, query = build(client)
    assert query["access_type"] == ["offline"]
    assert query["prompt"] == ["consent x"]
    assert query["n"] == ["2"]
    assert query["include_granted_scopes"] == ["true"]


def test_extras_never_replace_the_protocol_parameters(make_client, caplog):
    client = make_client(
        extra_authorize_params={
            "state": "fixed",
            "redirect_uri": "https://evil.example/",
            "code_challenge": "chosen",
            "client_id": "other",
            "response_type": "token",
            "prompt": "consent",
        }
    )
    _, query = build(client, code_verifier="v" * 43)
    assert query["state"] == ["the-state"]
    assert query["redirect_uri"] == [REDIRECT]
    assert query["code_challenge"] == [flow.code_challenge("v" * 43)]
    assert query["client_id"] == ["acme-client-id"]
    assert query["response_type"] == ["code"]
    assert query["prompt"] == ["consent"]
    assert (
        "ignoring extra parameter(s) client_id, code_challenge, redirect_uri, "
        "response_type, state" in caplog.text
    )
    assert "evil.example" not in caplog.text


def test_no_scope_parameter_without_scopes(make_client):
    _, query = build(make_client(scope=""))
    assert "scope" not in query


def test_nonce_only_for_openid(make_client):
    _, plain = build(make_client(), nonce="n-1")
    assert "nonce" not in plain
    _, oidc = build(make_client(name="oidc", scope="openid email"), nonce="n-1")
    assert oidc["nonce"] == ["n-1"]


def test_no_pkce_parameters_when_pkce_is_off(make_client, operator_client, start_login):
    make_client(use_pkce=False)
    query = start_login(operator_client)
    assert "code_challenge" not in query
    assert "code_challenge_method" not in query
    from oauth2_integrator.models import AuthorizationRequest

    assert AuthorizationRequest.objects.get().code_verifier == ""


def test_login_sends_the_challenge_of_the_stored_verifier(
    oauth_client, operator_client, start_login
):
    from oauth2_integrator.models import AuthorizationRequest

    query = start_login(operator_client)
    verifier = AuthorizationRequest.objects.get().code_verifier
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == flow.code_challenge(verifier)


# --- state and PKCE -------------------------------------------------------------


def test_state_has_at_least_128_random_bits_and_is_unique():
    states = [flow.new_state() for _ in range(2000)]
    assert len(set(states)) == len(states)
    for state in states[:50]:
        assert set(state) <= UNRESERVED
        decoded = base64.urlsafe_b64decode(state + "=" * (-len(state) % 4))
        assert len(decoded) * 8 >= 128


def test_state_hash_is_stable_and_not_the_state():
    state = flow.new_state()
    assert flow.hash_state(state) == flow.hash_state(state)
    assert state not in flow.hash_state(state)
    assert len(flow.hash_state(state)) == 64


def test_pkce_s256_matches_rfc_7636_appendix_b():
    # The verifier is BASE64URL of the 32 octets printed in Appendix B.
    octets = [116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187]
    octets += [186, 22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141]
    octets += [121]
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert base64.urlsafe_b64encode(bytes(octets)).rstrip(b"=").decode() == verifier
    assert (
        flow.code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_code_verifier_follows_rfc_7636_section_4_1():
    verifiers = {flow.new_code_verifier() for _ in range(200)}
    assert len(verifiers) == 200
    for verifier in verifiers:
        assert 43 <= len(verifier) <= 128
        assert set(verifier) <= UNRESERVED


# --- client authentication at the token endpoint --------------------------------

TOKEN_JSON = {
    "access_token": "fresh-access-token-0123456789",
    "token_type": "Bearer",
    "expires_in": 3600,
    "refresh_token": "fresh-refresh-token-0123456789",
}


def exchange(client: Any, **kwargs: Any) -> flow.TokenSet:
    kwargs.setdefault("code", "the-code")
    kwargs.setdefault("redirect_uri", REDIRECT)
    kwargs.setdefault("code_verifier", "the-verifier-" + "x" * 40)
    return flow.exchange_code(client, **kwargs)


def sent_form(call: Any) -> dict[str, str]:
    return dict(parse_qsl(call.request.body, keep_blank_values=True))


def test_basic_auth_form_encodes_id_and_secret_first(make_client, token_endpoint):
    """RFC 6749 §2.3.1: form-urlencode id and secret, then Basic-encode them."""
    secret = "p:a%s+s wörd€"
    client_id = "client:id é"
    client = make_client(client_id=client_id, client_secret=secret)
    token_endpoint.post(TOKEN_URL, json=TOKEN_JSON)
    exchange(client)

    request = token_endpoint.calls[0].request
    scheme, _, encoded = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    decoded = base64.b64decode(encoded).decode("ascii")
    raw_id, _, raw_secret = decoded.partition(":")
    assert raw_id == "client%3Aid+%C3%A9"
    assert raw_secret == "p%3Aa%25s%2Bs+w%C3%B6rd%E2%82%AC"
    assert unquote_plus(raw_id) == client_id
    assert unquote_plus(raw_secret) == secret
    form = sent_form(token_endpoint.calls[0])
    assert "client_secret" not in form
    assert "client_id" not in form


def test_post_auth_puts_id_and_secret_in_the_body(make_client, token_endpoint):
    client = make_client(token_auth_method=TokenAuthMethod.CLIENT_SECRET_POST)
    token_endpoint.post(TOKEN_URL, json=TOKEN_JSON)
    exchange(client)
    request = token_endpoint.calls[0].request
    assert "Authorization" not in request.headers
    form = sent_form(token_endpoint.calls[0])
    assert form["client_id"] == "acme-client-id"
    assert form["client_secret"] == CLIENT_SECRET


def test_none_auth_sends_only_the_client_id(make_client, token_endpoint):
    client = make_client(token_auth_method=TokenAuthMethod.NONE)
    token_endpoint.post(TOKEN_URL, json=TOKEN_JSON)
    exchange(client)
    request = token_endpoint.calls[0].request
    assert "Authorization" not in request.headers
    form = sent_form(token_endpoint.calls[0])
    assert form["client_id"] == "acme-client-id"
    assert "client_secret" not in form
    assert CLIENT_SECRET not in request.body


def test_code_exchange_sends_code_verifier_redirect_uri_and_extras(
    make_client, token_endpoint
):
    client = make_client(extra_token_params={"audience": "https://api.example.test/"})
    token_endpoint.post(TOKEN_URL, json=TOKEN_JSON)
    exchange(client, code="c/o+d e", code_verifier="v" * 50)
    assert sent_form(token_endpoint.calls[0]) == {
        "grant_type": "authorization_code",
        "code": "c/o+d e",
        "redirect_uri": REDIRECT,
        "code_verifier": "v" * 50,
        "audience": "https://api.example.test/",
    }
    headers = token_endpoint.calls[0].request.headers
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Accept"] == "application/json"


def test_extra_token_params_never_replace_the_protocol_parameters(
    make_client, token_endpoint
):
    client = make_client(
        token_auth_method=TokenAuthMethod.CLIENT_SECRET_POST,
        extra_token_params={
            "grant_type": "password",
            "code": "other",
            "code_verifier": "other",
            "redirect_uri": "https://evil.example/",
            "client_secret": "other",
            "refresh_token": "other",
            "resource": "r1",
        },
    )
    token_endpoint.post(TOKEN_URL, json=TOKEN_JSON)
    exchange(client, code="the-code", code_verifier="v" * 50)
    flow.refresh(client, refresh_token="the-refresh-token")
    exchanged = sent_form(token_endpoint.calls[0])
    assert exchanged["grant_type"] == "authorization_code"
    assert exchanged["code"] == "the-code"
    assert exchanged["code_verifier"] == "v" * 50
    assert exchanged["redirect_uri"] == REDIRECT
    assert exchanged["client_secret"] == CLIENT_SECRET
    assert exchanged["resource"] == "r1"
    refreshed = sent_form(token_endpoint.calls[1])
    assert refreshed["grant_type"] == "refresh_token"
    assert refreshed["refresh_token"] == "the-refresh-token"
    assert refreshed["client_secret"] == CLIENT_SECRET
    assert refreshed["resource"] == "r1"


def test_no_code_verifier_without_pkce(make_client, token_endpoint):
    token_endpoint.post(TOKEN_URL, json=TOKEN_JSON)
    exchange(make_client(use_pkce=False), code_verifier=None)
    assert "code_verifier" not in sent_form(token_endpoint.calls[0])


def test_refresh_request_uses_the_same_client_authentication(
    make_client, token_endpoint
):
    client = make_client(
        token_auth_method=TokenAuthMethod.CLIENT_SECRET_POST,
        extra_token_params={"resource": "r1"},
    )
    token_endpoint.post(TOKEN_URL, json=TOKEN_JSON)
    flow.refresh(client, refresh_token="the-refresh-token")
    assert sent_form(token_endpoint.calls[0]) == {
        "grant_type": "refresh_token",
        "refresh_token": "the-refresh-token",
        "client_id": "acme-client-id",
        "client_secret": CLIENT_SECRET,
        "resource": "r1",
    }


def test_user_agent_names_the_package_and_version(oauth_client, token_endpoint):
    token_endpoint.post(TOKEN_URL, json=TOKEN_JSON)
    exchange(oauth_client)
    agent = token_endpoint.calls[0].request.headers["User-Agent"]
    assert agent == f"django-oauth2-integrator/{oauth2_integrator.__version__}"


def test_timeouts_and_tls_verification_come_from_settings(
    oauth_client, token_endpoint, settings
):
    token_endpoint.post(TOKEN_URL, json=TOKEN_JSON)
    exchange(oauth_client)
    kwargs = token_endpoint.calls[0].request.req_kwargs
    assert kwargs["timeout"] == (2.0, 5.0)  # tests/settings.py
    # True, or the CA bundle requests substitutes from the environment.
    assert kwargs["verify"]

    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "CONNECT_TIMEOUT": 1.5,
        "READ_TIMEOUT": 7,
        "VERIFY_TLS": False,
    }
    exchange(oauth_client)
    assert token_endpoint.calls[1].request.req_kwargs["timeout"] == (1.5, 7.0)
    assert token_endpoint.calls[1].request.req_kwargs["verify"] is False


# --- token response parsing -----------------------------------------------------


def test_json_token_response(oauth_client, token_endpoint):
    token_endpoint.post(
        TOKEN_URL,
        json={**TOKEN_JSON, "scope": "read", "id_token": "eyJ.id.token", "x": 1},
    )
    token_set = exchange(oauth_client)
    assert token_set.access_token == TOKEN_JSON["access_token"]
    assert token_set.refresh_token == TOKEN_JSON["refresh_token"]
    assert token_set.token_type == "Bearer"
    assert token_set.expires_in == 3600
    assert token_set.scope == "read"
    assert token_set.extra == {"id_token": "eyJ.id.token", "x": 1}


def test_form_encoded_token_response(oauth_client, token_endpoint):
    token_endpoint.post(
        TOKEN_URL,
        body="access_token=form-token-123&token_type=bearer&scope=repo%2Cgist"
        "&expires_in=28800&refresh_token=ghr_form",
        content_type="application/x-www-form-urlencoded; charset=utf-8",
    )
    token_set = exchange(oauth_client)
    assert token_set.access_token == "form-token-123"
    assert token_set.token_type == "bearer"
    assert token_set.scope == "repo,gist"
    assert token_set.expires_in == 28800
    assert token_set.refresh_token == "ghr_form"


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [
        (3600, 3600),
        ("3600", 3600),
        ("86400.0", 86400),
        (None, None),
        (0, None),
        (-5, None),
        ("soon", None),
        (True, None),
        (10**12, None),  # "never": past what a datetime can hold
        (1e309, None),  # JSON's huge number becomes float infinity
    ],
)
def test_expires_in_forms(oauth_client, token_endpoint, expires_in, expected):
    body = {"access_token": "a-token-value-000000"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    token_endpoint.post(TOKEN_URL, json=body)
    token_set = exchange(oauth_client)
    assert token_set.expires_in == expected
    assert token_set.refresh_token is None
    assert token_set.token_type == "Bearer"


def test_scope_as_a_list_is_joined(oauth_client, token_endpoint):
    token_endpoint.post(TOKEN_URL, json={**TOKEN_JSON, "scope": ["read", "write"]})
    assert exchange(oauth_client).scope == "read write"


def test_missing_expires_in_stores_null_and_does_not_refresh_every_call(
    oauth_client, token_endpoint
):
    token_endpoint.post(
        TOKEN_URL,
        json={"access_token": "no-expiry-token-1234", "refresh_token": "r-token-1234"},
    )
    token = store_token_set(oauth_client, exchange(oauth_client))
    token.refresh_from_db()
    assert token.expires_at is None
    for _ in range(3):
        assert get_access_token("acme") == "no-expiry-token-1234"
    assert len(token_endpoint.calls) == 1  # only the exchange


def test_expires_in_zero_is_treated_as_unknown(oauth_client, token_endpoint):
    token_endpoint.post(
        TOKEN_URL, json={"access_token": "zero-expiry-1234", "expires_in": 0}
    )
    token = store_token_set(oauth_client, exchange(oauth_client))
    token.refresh_from_db()
    assert token.expires_at is None
    assert get_access_token("acme") == "zero-expiry-1234"


def test_stored_expiry_and_extras_encrypted(oauth_client, token_endpoint):
    token_endpoint.post(
        TOKEN_URL,
        json={**TOKEN_JSON, "id_token": "eyJhbGciOi.id-token-body.sig", "team": "t-1"},
    )
    before = timezone.now()
    token = store_token_set(oauth_client, exchange(oauth_client))
    token = OAuth2Token.objects.get(pk=token.pk)
    assert token.extra == {"id_token": "eyJhbGciOi.id-token-body.sig", "team": "t-1"}
    assert (
        before + datetime.timedelta(seconds=3600)
        <= token.expires_at
        <= timezone.now() + datetime.timedelta(seconds=3600)
    )
    with connection.cursor() as cursor:
        table = OAuth2Token._meta.db_table
        cursor.execute(f"SELECT extra, access_token, refresh_token FROM {table}")  # noqa: S608
        row = cursor.fetchone()
    assert "id-token-body" not in row[0]
    assert "t-1" not in row[0]
    assert TOKEN_JSON["access_token"] not in row[1]
    assert TOKEN_JSON["refresh_token"] not in row[2]


# --- what the token endpoint may answer instead of a token ----------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "transient", "words"),
    [
        (
            {"status": 400, "json": {"error": "invalid_grant"}},
            "invalid_grant",
            False,
            "invalid_grant",
        ),
        (
            {"status": 401, "json": {"error": "invalid_client"}},
            "invalid_client",
            False,
            "invalid_client",
        ),
        ({"status": 500, "body": "oops"}, "server_error", True, "HTTP 500"),
        (
            {"status": 503, "json": {"error": "temporarily_unavailable"}},
            "temporarily_unavailable",
            True,
            "HTTP 503",
        ),
        ({"status": 429, "body": ""}, "rate_limited", True, "HTTP 429"),
        (
            {"status": 200, "body": "<html>login</html>", "content_type": "text/html"},
            "invalid_response",
            False,
            "HTML page",
        ),
        (
            {"status": 200, "body": "Service ok", "content_type": "text/plain"},
            "invalid_response",
            False,
            "text/plain",
        ),
        (
            {"status": 200, "json": {"token_type": "Bearer"}},
            "invalid_response",
            False,
            "without an access_token",
        ),
        (
            {"status": 200, "json": {"error": "bad_verification_code"}},
            "bad_verification_code",
            False,
            "bad_verification_code",
        ),
        (
            {"status": 200, "body": requests.Timeout("read timed out")},
            "timeout",
            True,
            "did not answer in time",
        ),
        (
            {"status": 200, "body": requests.ConnectionError("refused")},
            "connection_error",
            True,
            "Could not reach",
        ),
    ],
)
def test_token_endpoint_failures_are_classified(
    oauth_client, token_endpoint, kwargs, error, transient, words
):
    token_endpoint.post(TOKEN_URL, **kwargs)
    with pytest.raises(TokenEndpointError) as info:
        exchange(oauth_client, code="code-not-in-message-123")
    exc = info.value
    assert exc.error == error
    assert exc.transient is transient
    assert words in str(exc)
    assert "auth.example.test" in str(exc)
    assert exc.client == "acme"
    assert "code-not-in-message-123" not in str(exc)
    assert CLIENT_SECRET not in str(exc)
