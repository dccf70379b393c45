"""Property-based tests: whatever the token endpoint answers, no crash and no HTTP 500.

Random JSON (every field with wrong types, unicode, NUL, huge strings, deep nesting),
form-encoded and text bodies, random status codes and content types. Through
``flow`` only a ``TokenEndpointError`` or a clean ``TokenSet`` may come out; through
the real callback view a bad answer gives a page (never 500) and stores nothing, and
no code, verifier, state, client secret or token shows in the page or the log
(issue #5, items 2, 8, 9, 11). The token endpoint is mocked with ``responses``.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import responses
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from oauth2_integrator import flow
from oauth2_integrator.exceptions import TokenEndpointError
from oauth2_integrator.models import AuthorizationRequest, OAuth2Token

from .conftest import CLIENT_SECRET, TOKEN_URL

CALLBACK = "/oauth2/acme/callback/"
CODE = "property-code-for-token-bodies-0123456789"
VERIFIER = "property-verifier-" + "v" * 40
REFRESH_TOKEN = "property-refresh-token-sent-0123456789"

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Text with anything but lone surrogates: NUL, controls, right-to-left marks.
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),  # NaN and infinities included: json.dumps writes them
    any_text,
)
any_json = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3)
    ),
    max_leaves=12,
)
#: Distinctive token values, so a leak into a page or the log is recognisable.
token_like = st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=12).map(
    lambda text: "TOK-" + text
)
field_values = {
    "access_token": st.one_of(
        token_like, any_json, token_like.map(lambda t: t + "\x00")
    ),
    "refresh_token": st.one_of(token_like, any_json),
    "token_type": st.one_of(
        st.sampled_from(["Bearer", "bearer", "BEARER", "DPoP", "MAC", "N_A", ""]),
        any_json,
    ),
    "expires_in": st.one_of(
        st.integers(), st.floats(), st.sampled_from(["3600", "1e999", "-1"]), any_json
    ),
    "scope": st.one_of(
        any_text,
        st.lists(any_text, max_size=4),
        st.just("read\x00write" * 2000),
        any_json,
    ),
    "error": st.one_of(st.sampled_from(["invalid_grant", "slow_down"]), any_json),
    "error_description": st.one_of(any_text, any_json),
    "id_token": any_json,
}
token_bodies = st.builds(
    lambda fixed, more: {**more, **fixed},
    st.fixed_dictionaries({}, optional=field_values),
    st.dictionaries(any_text, any_json, max_size=3),
)
#: A well-formed answer with some fields replaced, so successes get tested too.
mostly_good_bodies = st.builds(
    lambda access, refresh, changes: {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": refresh,
        "scope": "read write",
        **changes,
    },
    token_like,
    token_like,
    st.fixed_dictionaries(
        {},
        optional={k: v for k, v in field_values.items() if k not in {"error"}},
    ),
)


def nested(depth: int, kind: str) -> str:
    if kind == "array":
        return (
            '{"access_token": "TOK-nested-000000", "x": '
            + "[" * depth
            + "]" * depth
            + "}"
        )
    if kind == "object":
        return (
            '{"access_token": "TOK-nested-000000", "x": '
            + '{"a":' * depth
            + "1"
            + "}" * depth
            + "}"
        )
    return "[" * depth


raw_bodies = st.one_of(
    mostly_good_bodies.map(json.dumps),
    token_bodies.map(json.dumps),
    token_bodies.map(lambda body: urlencode({k: str(v) for k, v in body.items()})),
    st.builds(
        nested, st.integers(1, 50_000), st.sampled_from(["array", "object", "open"])
    ),
    any_text,
    st.binary(max_size=300).map(lambda data: data.decode("latin-1")),
    st.just('{"access_token": "TOK-huge-0000000", "x": "' + "y" * 1_100_000 + '"}'),
)
statuses = st.one_of(
    st.just(200),
    st.sampled_from([200, 200, 200, 201, 204, 302, 400, 401, 403, 404, 429, 500, 503]),
    st.integers(min_value=100, max_value=599),
)
content_types = st.one_of(
    st.just("application/json"),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=rot13",
            "application/x-www-form-urlencoded",
            "text/plain",
            "text/html",
            "application/octet-stream",
            "",
        ]
    ),
)


def answer(
    mock: responses.RequestsMock, status: int, content_type: str, body: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if 300 <= status < 400:
        headers["Location"] = "https://elsewhere.example.test/token"
    mock.post(TOKEN_URL, status=status, body=body.encode("utf-8"), headers=headers)


def check_clean(token_set: flow.TokenSet) -> None:
    """What flow hands out fits the columns and the JSON field."""
    assert isinstance(token_set.access_token, str) and token_set.access_token
    assert "\x00" not in token_set.access_token
    assert token_set.token_type == "Bearer"
    assert token_set.refresh_token is None or (
        isinstance(token_set.refresh_token, str)
        and "\x00" not in token_set.refresh_token
    )
    assert token_set.scope is None or (
        isinstance(token_set.scope, str)
        and token_set.scope.isprintable()
        and len(token_set.scope) <= flow.MAX_SCOPE_LENGTH
    )
    assert (
        token_set.expires_in is None or 0 < token_set.expires_in <= flow.MAX_EXPIRES_IN
    )
    json.dumps(token_set.extra, sort_keys=True)


def tokens_in(body: str) -> list[str]:
    """The distinctive token values of an answer (never to be shown)."""
    found = []
    for part in body.replace('"', " ").replace("&", " ").replace("=", " ").split():
        if part.startswith("TOK-") and len(part) >= 16:
            found.append(part.rstrip(",}"))
    return found


# --- (a) through flow ----------------------------------------------------------------


@SETTINGS
@given(
    status=statuses, content_type=content_types, body=raw_bodies, grant=st.booleans()
)
def test_flow_gives_a_clean_token_set_or_a_token_endpoint_error(
    oauth_client, status, content_type, body, grant
):
    with responses.RequestsMock() as mock:
        answer(mock, status, content_type, body)
        try:
            if grant:
                token_set = flow.exchange_code(
                    oauth_client,
                    code=CODE,
                    redirect_uri="https://x.test/cb",
                    code_verifier=VERIFIER,
                )
            else:
                token_set = flow.refresh(oauth_client, refresh_token=REFRESH_TOKEN)
        except TokenEndpointError as exc:
            event(f"refused: {exc.error}"[:40])
            message = str(exc)
            assert message.isprintable()
            for secret in (CODE, VERIFIER, REFRESH_TOKEN, CLIENT_SECRET):
                assert secret not in message
            return
    event("token set")
    assert 200 <= status < 300
    check_clean(token_set)


# --- (b) through the real callback view ---------------------------------------------


@SETTINGS
@given(status=statuses, content_type=content_types, body=raw_bodies)
@example(status=200, content_type="application/json", body="[" * 100_000)
@example(status=200, content_type="application/json", body=nested(5000, "object"))
@example(
    status=200,
    content_type="application/json",
    body='{"access_token": "TOK-0123456789abc", "token_type": "x' + "y" * 60 + '"}',
)
@example(
    status=200,
    content_type="application/json",
    body='{"access_token": "TOK-0123456789abc", "scope": "a\\u0000b"}',
)
def test_the_callback_never_fails_with_500_and_stores_only_good_answers(
    oauth_client, operator_client, start_login, caplog, status, content_type, body
):
    state = start_login(operator_client)["state"]
    pending = AuthorizationRequest.objects.get(state_hash=flow.hash_state(state))
    before = list(OAuth2Token.objects.values())
    caplog.clear()
    with caplog.at_level(logging.DEBUG), responses.RequestsMock() as mock:
        answer(mock, status, content_type, body)
        response = operator_client.get(CALLBACK, {"state": state, "code": CODE})

    assert response.status_code in {302, 400, 502, 503}, response.status_code
    page = response.content.decode()
    secrets = [state, CODE, pending.code_verifier, CLIENT_SECRET, *tokens_in(body)]
    for secret in secrets:
        assert secret not in page
        assert secret not in caplog.text
    event(f"HTTP {response.status_code}")
    if response.status_code == 302:
        assert 200 <= status < 300
        token = OAuth2Token.objects.get(client=oauth_client)
        check_clean(
            flow.TokenSet(
                access_token=token.access_token,
                token_type=token.token_type,
                refresh_token=token.refresh_token or None,
                scope=token.scope or None,
                extra=token.extra,
            )
        )
    else:
        assert list(OAuth2Token.objects.values()) == before
