"""The protocol in ``flow``: authorization URL, state, PKCE, client authentication,
token response parsing (RFC 6749 §4.1, §2.3.1, §5.1; RFC 7636)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import logging
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

# RFC 7636 Appendix B: a verifier and its S256 challenge, as printed there. Expected
# challenges are never computed with the function under test.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def s256_written_out(verifier: str) -> str:
    """RFC 7636 §4.2 spelled out here: BASE64URL(SHA256(ASCII(verifier))), no "="."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").replace("=", "")


def build(client: Any, **kwargs: Any) -> tuple[str, dict[str, list[str]]]:
    kwargs.setdefault("redirect_uri", REDIRECT)
    kwargs.setdefault("state", "the-state")
    url = flow.authorization_url(client, **kwargs)
    return url, parse_qs(urlsplit(url).query, keep_blank_values=True)


# --- authorization URL ----------------------------------------------------------


def test_authorization_url_has_the_rfc_6749_parameters(oauth_client):
    url, query = build(oauth_client, code_verifier=RFC_VERIFIER)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == AUTHORIZE_URL
    assert query == {
        "response_type": ["code"],
        "client_id": ["acme-client-id"],
        "redirect_uri": [REDIRECT],
        "scope": ["read write"],
        "state": ["the-state"],
        "code_challenge": [RFC_CHALLENGE],
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
    _, query = build(client, code_verifier=RFC_VERIFIER)
    assert query["state"] == ["the-state"]
    assert query["redirect_uri"] == [REDIRECT]
    assert query["code_challenge"] == [RFC_CHALLENGE]
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
    assert query["code_challenge"] == s256_written_out(verifier)
    assert len(query["code_challenge"]) == 43  # 32 octets, unpadded base64url


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
    assert base64.urlsafe_b64encode(bytes(octets)).rstrip(b"=").decode() == RFC_VERIFIER
    assert flow.code_challenge(RFC_VERIFIER) == RFC_CHALLENGE


def test_pkce_s256_matches_an_independently_computed_value():
    verifier = "x" * 20 + "-._~" + "0123456789" * 10  # 124 characters
    assert flow.code_challenge(verifier) == s256_written_out(verifier)
    # Fixed once with `printf vvv... | openssl dgst -sha256 -binary | basenc --base64url`.
    assert (
        flow.code_challenge("v" * 43) == "7w_YNF9DSfIdPf_pRjSq646_kPr-2-o9NAl16JGghdM"
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
    assert token_set.token_type == "Bearer"  # RFC 6749 §7.1: case-insensitive
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
        # Rate limiting says "later", whatever error code comes with it.
        (
            {"status": 429, "json": {"error": "slow_down"}},
            "slow_down",
            True,
            "HTTP 429",
        ),
        # RFC 6749 §5.2: error is a string; anything else is a malformed answer.
        (
            {"status": 400, "json": {"error": ["invalid_grant"]}},
            "invalid_response",
            False,
            "HTTP 400",
        ),
        (
            {"status": 429, "json": {"error": "invalid_request"}},
            "invalid_request",
            True,
            "HTTP 429",
        ),
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


# --- redirects -----------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed(oauth_client, token_endpoint, status):
    """The token POST carries the code, the verifier and the client secret."""
    elsewhere = "https://user:hunter2-pw@other.example.test/steal"
    token_endpoint.post(TOKEN_URL, status=status, headers={"Location": elsewhere})
    token_endpoint.post(elsewhere, json=TOKEN_JSON)
    token_endpoint.get(elsewhere, json=TOKEN_JSON)
    with pytest.raises(TokenEndpointError) as info:
        exchange(oauth_client)
    assert len(token_endpoint.calls) == 1
    assert info.value.error == "invalid_response"
    assert info.value.transient is False
    message = str(info.value)
    assert f"redirect (HTTP {status}) to other.example.test" in message
    assert "never redirected" in message
    assert "hunter2" not in message
    assert "/steal" not in message


# --- token_type (RFC 6749 §7.1) -------------------------------------------------


@pytest.mark.parametrize(
    "token_type", ["Bearer", "bearer", "BEARER", "bEaReR", None, ""]
)
def test_bearer_in_any_case_or_no_type_is_stored_as_bearer(
    oauth_client, token_endpoint, token_type
):
    body = {**TOKEN_JSON, "token_type": token_type}
    if token_type is None:
        del body["token_type"]
    token_endpoint.post(TOKEN_URL, json=body)
    assert exchange(oauth_client).token_type == "Bearer"


@pytest.mark.parametrize(
    "token_type",
    [
        "DPoP",
        "dpop",
        "MAC",
        "N_A",
        "Bearer2",
        "x" * 500,
        "Bear\x00er",
        1,
        True,
        ["Bearer"],
    ],
)
def test_other_token_types_are_refused(oauth_client, token_endpoint, token_type):
    token_endpoint.post(TOKEN_URL, json={**TOKEN_JSON, "token_type": token_type})
    with pytest.raises(TokenEndpointError) as info:
        exchange(oauth_client)
    assert info.value.error == "unsupported_token_type"
    assert info.value.transient is False
    message = str(info.value)
    assert "can only use Bearer tokens" in message
    assert "\x00" not in message
    assert len(message) < 400
    assert TOKEN_JSON["access_token"] not in message


def test_refused_token_type_at_refresh_changes_nothing(
    oauth_client, make_token, token_endpoint
):
    token = make_token(oauth_client, expires_at=timezone.now())
    token_endpoint.post(TOKEN_URL, json={**TOKEN_JSON, "token_type": "DPoP"})
    with pytest.raises(oauth2_integrator.OAuth2IntegratorError):
        get_access_token("acme")
    token.refresh_from_db()
    assert token.access_token == "stored-access-token-AAAA-1111-BBBB"
    assert token.token_type == "Bearer"


# --- every value from the provider is checked before it leaves flow -------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"access_token": 12345678901234567890}, "access_token that is not a string"),
        ({"access_token": {"a": 1}}, "access_token that is not a string"),
        ({"access_token": ["a-token-value-1234"]}, "access_token that is not a string"),
        ({"access_token": True}, "access_token that is not a string"),
        ({"access_token": ""}, "without an access_token"),
        ({"access_token": None}, "without an access_token"),
        ({"access_token": "tok\x00en-value-123"}, "contains control characters"),
        ({"access_token": "token\r\nX-Injected: 1"}, "contains control characters"),
        ({"refresh_token": 1234567890123}, "refresh_token that is not a string"),
        ({"refresh_token": {"nested": "r"}}, "refresh_token that is not a string"),
        ({"refresh_token": "refresh\x00token-12"}, "contains control characters"),
    ],
)
def test_unusable_token_values_are_refused(oauth_client, token_endpoint, change, words):
    token_endpoint.post(TOKEN_URL, json={**TOKEN_JSON, **change})
    with pytest.raises(TokenEndpointError) as info:
        exchange(oauth_client)
    assert info.value.error == "invalid_response"
    assert words in str(info.value)
    assert "\x00" not in str(info.value)


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("read write", "read write"),
        (["read", "write"], "read write"),
        ("read\x00write", "read write"),
        ("read\x00", "read"),
        ("  read\t\nwrite\x7f\x1b  ", "read write"),
        ("repo,gist", "repo,gist"),
        ("\x00", None),
        ([], None),
        ("", None),
        # Not a string or a list of strings: ignored (the token is still good).
        (42, None),
        ({"read": True}, None),
        (["read", 1], None),
        (["read", ["nested"]], None),
        (True, None),
        ("s" * (flow.MAX_SCOPE_LENGTH + 1), None),
    ],
)
def test_scope_is_fitted_or_ignored(oauth_client, token_endpoint, scope, expected):
    token_endpoint.post(TOKEN_URL, json={**TOKEN_JSON, "scope": scope})
    token_set = exchange(oauth_client)
    assert token_set.scope == expected
    assert token_set.access_token == TOKEN_JSON["access_token"]


def test_an_ignored_scope_is_logged(oauth_client, token_endpoint, caplog):
    token_endpoint.post(TOKEN_URL, json={**TOKEN_JSON, "scope": {"x": 1}})
    with caplog.at_level(logging.WARNING, logger="oauth2_integrator"):
        assert exchange(oauth_client).scope is None
    assert "scope was ignored: it is a dict" in caplog.text


@pytest.mark.postgres
def test_a_scope_with_nul_is_stored_on_postgresql(oauth_client, token_endpoint):
    token_endpoint.post(TOKEN_URL, json={**TOKEN_JSON, "scope": "read\x00write"})
    token = store_token_set(oauth_client, exchange(oauth_client))
    token.refresh_from_db()
    assert token.scope == "read write"


def test_extra_that_a_hook_cannot_store_is_refused(
    oauth_client, token_endpoint, monkeypatch
):
    from oauth2_integrator.providers.base import ProviderProfile

    def parse(self, client, response):
        return {**TOKEN_JSON, "when": datetime.datetime(2020, 1, 1)}

    monkeypatch.setattr(ProviderProfile, "parse_token_response", parse)
    token_endpoint.post(TOKEN_URL, json=TOKEN_JSON)
    with pytest.raises(TokenEndpointError) as info:
        exchange(oauth_client)
    assert "cannot be stored as JSON" in str(info.value)


def test_a_hook_that_crashes_on_a_body_is_an_invalid_response(
    oauth_client, token_endpoint, monkeypatch, caplog
):
    from oauth2_integrator.providers.base import ProviderProfile

    def parse(self, client, response):
        raise KeyError("surprise")

    monkeypatch.setattr(ProviderProfile, "parse_token_response", parse)
    token_endpoint.post(TOKEN_URL, json=TOKEN_JSON)
    with pytest.raises(TokenEndpointError) as info:
        exchange(oauth_client)
    assert info.value.error == "invalid_response"
    assert "could not be read" in str(info.value)
    assert "KeyError" in caplog.text


# --- deeply nested JSON (RecursionError) ----------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000,
        '{"access_token": "a-token-value-1234", "x": '
        + "[" * 50_000
        + "]" * 50_000
        + "}",
        '{"access_token": "a-token-value-1234", "x": '
        + '{"a":' * 5000
        + "1"
        + "}" * 5000
        + "}",
        '{"access_token": "a-token-value-1234", "x": ' + "[" * 33 + "]" * 33 + "}",
    ],
    ids=["open-brackets", "deep-array", "deep-object", "just-too-deep"],
)
def test_deeply_nested_json_is_an_invalid_response(oauth_client, body):
    # A mock of its own: the shared fixture reads mocked bodies back after the test.
    import responses

    with responses.RequestsMock() as endpoint:
        endpoint.post(TOKEN_URL, body=body, content_type="application/json")
        with pytest.raises(TokenEndpointError) as info:
            exchange(oauth_client)
    assert info.value.error == "invalid_response"
    assert "nested deeper than 32 levels" in str(info.value)


def test_nesting_up_to_the_limit_is_accepted_and_storable(oauth_client, token_endpoint):
    nested = "[" * 31 + '"]]]{{"' + "]" * 31  # brackets in strings do not count
    body = '{"access_token": "a-token-value-1234", "x": ' + nested + "}"
    token_endpoint.post(TOKEN_URL, body=body, content_type="application/json")
    token_set = exchange(oauth_client)
    token = store_token_set(oauth_client, token_set)
    assert OAuth2Token.objects.get(pk=token.pk).extra["x"] == token_set.extra["x"]


def test_a_hook_returning_deep_values_is_refused(
    oauth_client, token_endpoint, monkeypatch
):
    from oauth2_integrator.providers.base import ProviderProfile

    deep: Any = "bottom"
    for _ in range(5000):
        deep = [deep]

    def parse(self, client, response):
        return {**TOKEN_JSON, "x": deep}

    monkeypatch.setattr(ProviderProfile, "parse_token_response", parse)
    token_endpoint.post(TOKEN_URL, json=TOKEN_JSON)
    with pytest.raises(TokenEndpointError) as info:
        exchange(oauth_client)
    assert "nested deeper than 32 levels" in str(info.value)


@pytest.mark.parametrize(
    "charset", ["utf-7", "rot13", "idna", "no-such-codec", "hex", "utf-8"]
)
def test_a_strange_charset_falls_back_to_utf_8(oauth_client, token_endpoint, charset):
    token_endpoint.post(
        TOKEN_URL,
        body='{"access_token": "a-token-value-1234"}',
        content_type=f"application/json; charset={charset}",
    )
    assert exchange(oauth_client).access_token == "a-token-value-1234"


@pytest.mark.parametrize(
    ("text", "deep"),
    [
        ("[" * 32 + "]" * 32, False),
        ("[" * 33 + "]" * 33, True),
        ('{"a": "' + "[" * 40 + '"}', False),  # brackets in a string
        ('{"a\\"[": "' + "{" * 40 + '"}', False),  # an escaped quote
        ('{"a\\\\": ' + "[" * 33 + "]" * 33 + "}", True),  # an escaped backslash
        ("[" * 1_000_000, True),
    ],
)
def test_json_depth_is_measured_without_parsing(text, deep):
    from oauth2_integrator.providers import base

    assert base.json_too_deep(text) is deep
    if deep:
        with pytest.raises(base.JSONTooDeep):
            base.load_json(text)


# --- URLs with credentials are never printed ------------------------------------

USERINFO_URL = "https://api-user:p4ssw0rd-in-url@auth.example.test:8443/oauth/token?k=v"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"status": 400, "json": {"error": "invalid_grant"}},
        {"status": 503, "body": ""},
        {"status": 200, "body": "<html></html>", "content_type": "text/html"},
        {"status": 200, "json": {"token_type": "DPoP", "access_token": "x" * 20}},
        {"body": requests.ConnectionError("refused")},
        {"body": requests.Timeout("slow")},
    ],
)
def test_an_endpoint_url_with_credentials_is_shown_as_host_and_port(
    make_client, token_endpoint, caplog, kwargs
):
    client = make_client(token_endpoint=USERINFO_URL)
    token_endpoint.post(USERINFO_URL, **kwargs)
    with (
        caplog.at_level(logging.DEBUG, logger="oauth2_integrator"),
        pytest.raises(TokenEndpointError) as info,
    ):
        exchange(client)
    message = str(info.value)
    assert "auth.example.test:8443" in message
    for text in (message, caplog.text):
        assert "p4ssw0rd" not in text
        assert "api-user" not in text
        assert "k=v" not in text


def test_token_request_repr_shows_no_credentials_of_the_url(make_client):
    client = make_client(
        token_endpoint=USERINFO_URL,
        token_auth_method=TokenAuthMethod.CLIENT_SECRET_POST,
    )
    request = flow.refresh_request(client, refresh_token="refresh-token-value-123456")
    shown = repr(request)
    assert "auth.example.test:8443" in shown
    assert "p4ssw0rd" not in shown
    assert "api-user" not in shown
    assert CLIENT_SECRET not in shown
    assert "refresh-token-value-123456" not in shown


@pytest.mark.parametrize(
    ("url", "host", "safe"),
    [
        (
            "https://u:p@Host.Example:8443/t?x=1#f",
            "host.example:8443",
            "https://host.example:8443/t",
        ),
        ("https://u:p@[::1]:99/x", "[::1]:99", "https://[::1]:99/x"),
        ("http://h.test", "h.test", "http://h.test"),
        ("https://:pw@h.test/", "h.test", "https://h.test/"),
        ("not a url", "(a URL without a host)", "(a URL without a host)"),
        ("https://u:p@h.test:99999/", "(an unreadable URL)", "(an unreadable URL)"),
    ],
)
def test_masking_shows_urls_without_userinfo(url, host, safe):
    from oauth2_integrator.masking import safe_url, url_host

    assert url_host(url) == host
    assert safe_url(url) == safe
