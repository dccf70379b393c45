"""Which account was connected, for profiles without an ID token.

``ProviderProfile.account_name`` asks the profile's ``userinfo_endpoint`` with the
new access token (GitHub's ``GET /user``:
https://docs.github.com/en/rest/users/users#get-the-authenticated-user) and takes
the first non-empty of its ``account_fields``; without a userinfo endpoint it reads
them from the token response (Slack's ``team.name``:
https://docs.slack.dev/reference/methods/oauth.v2.access). The name is a label:
whatever goes wrong, the login still succeeds and the token is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from django.test import Client
from django.urls import reverse

from oauth2_integrator import get_access_token, providers
from oauth2_integrator.flow import TokenSet
from oauth2_integrator.models import OAuth2Client, OAuth2Token, TokenStatus
from oauth2_integrator.providers.base import ProviderProfile
from oauth2_integrator.status import describe

CLIENT_SECRET = "account-name-client-secret-0000-aaaa"
CODE = "account-name-authorization-code-1111"
GITHUB_TOKEN_URL = "https://github.com/login/oauth/access_token"
GITHUB_USER_URL = "https://api.github.com/user"
GITHUB_TOKEN = "gho_16C7e42F292c6912E7710c838347Ae178B4a"
SLACK_TOKEN_URL = "https://slack.com/api/oauth.v2.access"

#: GET /user, "Response with public and private profile information" (abridged).
GITHUB_USER = {
    "login": "octocat",
    "id": 1,
    "node_id": "MDQ6VXNlcjE=",
    "avatar_url": "https://github.com/images/error/octocat_happy.gif",
    "html_url": "https://github.com/octocat",
    "type": "User",
    "site_admin": False,
    "name": "monalisa octocat",
    "company": "GitHub",
    "email": "octocat@github.com",
}

#: oauth.v2.access, "Example response".
SLACK_ANSWER: dict[str, Any] = {
    "ok": True,
    "access_token": "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
    "token_type": "bot",
    "scope": "commands,incoming-webhook",
    "bot_user_id": "U0KRQLJ9H",
    "app_id": "A0KRD7HC3",
    "team": {"name": "Slack Softball Team", "id": "T9TK3CUKW"},
    "enterprise": {"name": "slack-sports", "id": "E12345678"},
    "authed_user": {
        "id": "U1234",
        "scope": "chat:write",
        "access_token": "xoxp-1234",
        "token_type": "user",
    },
}


@pytest.fixture
def endpoint(secret_values: Any) -> Iterator[responses.RequestsMock]:
    for value, label in (
        (CLIENT_SECRET, "client secret"),
        (CODE, "code"),
        (GITHUB_TOKEN, "GitHub token"),
        (SLACK_ANSWER["access_token"], "Slack bot token"),
        ("xoxp-1234", "Slack user token"),
    ):
        secret_values.add(value, label)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def make(provider: str, **fields: Any) -> OAuth2Client:
    profile = providers.get(provider)
    values = {
        "name": "acme",
        "provider": provider,
        "client_id": "account-name-client-id",
        "client_secret": CLIENT_SECRET,
        "token_auth_method": profile.token_auth_method,
        "use_pkce": profile.use_pkce,
        **fields,
    }
    return OAuth2Client.objects.create(**values)


def connect(browser: Client, name: str = "acme") -> OAuth2Token:
    """Login, then the provider's redirect back: a real callback through the views."""
    response = browser.post(f"/oauth2/{name}/login/")
    assert response.status_code == 302, response.content
    state = dict(parse_qsl(urlsplit(response["Location"]).query))["state"]
    response = browser.get(f"/oauth2/{name}/callback/", {"state": state, "code": CODE})
    assert response.status_code == 302, response.content
    return OAuth2Token.objects.get()


def github_token_answer(mock: responses.RequestsMock) -> None:
    mock.add(
        "POST",
        GITHUB_TOKEN_URL,
        json={
            "access_token": GITHUB_TOKEN,
            "scope": "read:user",
            "token_type": "bearer",
        },
    )


# --- GitHub: the userinfo endpoint ---------------------------------------------------


def test_github_names_the_account_from_get_user(
    db: Any, operator_client: Client, endpoint: responses.RequestsMock
) -> None:
    client = make("github")
    github_token_answer(endpoint)
    endpoint.add("GET", GITHUB_USER_URL, json=GITHUB_USER)

    token = connect(operator_client)

    assert token.account_name == "octocat"
    assert describe(client).startswith("Connected as octocat, no expiry")
    page = operator_client.get(
        reverse("admin:oauth2_integrator_oauth2client_change", args=[client.pk])
    )
    assert "Connected as octocat" in page.content.decode()
    [_, user_call] = endpoint.calls
    sent = user_call.request
    assert sent.method == "GET"
    assert sent.url == GITHUB_USER_URL
    assert sent.headers["Authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["User-Agent"].startswith("django-oauth2-integrator/")


def test_the_first_non_empty_field_wins_and_numbers_count(
    db: Any, operator_client: Client, endpoint: responses.RequestsMock, monkeypatch: Any
) -> None:
    profile = providers.get("github")
    monkeypatch.setattr(
        type(profile), "account_fields", ["missing", "blank", "flag", "profile.id"]
    )
    make("github")
    github_token_answer(endpoint)
    answer = {"blank": "  ", "flag": True, "profile": {"id": 583231}}
    endpoint.add("GET", GITHUB_USER_URL, json=answer)

    assert connect(operator_client).account_name == "583231"


def test_a_name_is_cleaned_and_capped(
    db: Any, operator_client: Client, endpoint: responses.RequestsMock
) -> None:
    make("github")
    github_token_answer(endpoint)
    endpoint.add("GET", GITHUB_USER_URL, json={"login": "evil\x1b[31m" + "x" * 1000})

    name = connect(operator_client).account_name
    assert "\x1b" not in name
    assert name.startswith("evil")
    assert len(name) == 300


# --- a failing userinfo endpoint never costs the login -----------------------------


class Failure:
    """One way the userinfo endpoint can fail, as a ``responses`` answer."""

    #: name -> (the answer, what the log line says went wrong)
    cases: ClassVar[dict[str, tuple[dict[str, Any], str]]] = {
        # An error answer is never read as a name, even one with the field.
        "http 500": ({"status": 500, "json": {"login": "octocat"}}, "HTTP 500"),
        "http 401": (
            {"status": 401, "json": {"message": "Bad credentials"}},
            "HTTP 401",
        ),
        "timeout": (
            {"body": requests.ConnectTimeout("connect timed out")},
            "ConnectTimeout",
        ),
        "connection refused": (
            {"body": requests.ConnectionError("refused")},
            "ConnectionError",
        ),
        "huge body": (
            {"body": '{"login": "' + "a" * 200_000 + '"}'},
            "ResponseTooLarge",
        ),
        "deep body": ({"body": "[" * 5000 + "]" * 5000}, "JSONTooDeep"),
        "deep object": (
            {"body": '{"login": ' + '{"a": ' * 100 + "1" + "}" * 101},
            "JSONTooDeep",
        ),
        "not json": (
            {"body": "<html>Unicorn!</html>", "content_type": "text/html"},
            "JSONDecodeError",
        ),
        "a list": ({"json": [{"login": "octocat"}]}, "not a JSON object"),
        "no such field": ({"json": {"id": 1, "name": "mona"}}, "no value for login"),
        "an object": ({"json": {"login": {"name": "octocat"}}}, "no value for login"),
        "the token itself": ({"json": {"login": GITHUB_TOKEN}}, "no value for login"),
    }


@pytest.mark.parametrize("case", sorted(Failure.cases))
def test_a_userinfo_failure_still_connects_without_a_name(
    case: str,
    db: Any,
    operator_client: Client,
    endpoint: responses.RequestsMock,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "MAX_RESPONSE_BYTES": 100_000,
    }
    client = make("github")
    github_token_answer(endpoint)
    answer, problem = Failure.cases[case]
    endpoint.add("GET", GITHUB_USER_URL, **answer)

    with caplog.at_level(logging.WARNING, logger="oauth2_integrator"):
        token = connect(operator_client)

    assert token.status == TokenStatus.ACTIVE
    assert token.account_name == ""
    assert get_access_token("acme") == GITHUB_TOKEN
    assert describe(client).startswith("Connected, no expiry")
    [line] = [
        r.getMessage() for r in caplog.records if "which account" in r.getMessage()
    ]
    assert "'acme'" in line
    assert "userinfo endpoint at api.github.com" in line
    assert problem in line


# --- Slack: the token response names the workspace ----------------------------------


@pytest.mark.parametrize(
    ("provider", "stored"),
    [("slack", "xoxp-1234"), ("slack-bot", SLACK_ANSWER["access_token"])],
)
def test_slack_names_the_workspace_from_the_token_response(
    provider: str,
    stored: str,
    db: Any,
    operator_client: Client,
    endpoint: responses.RequestsMock,
) -> None:
    client = make(provider, scope="chat:write")
    endpoint.add("POST", SLACK_TOKEN_URL, json=SLACK_ANSWER)

    token = connect(operator_client)

    assert token.access_token == stored
    assert token.account_name == "Slack Softball Team"
    assert describe(client).startswith("Connected as Slack Softball Team")
    assert len(endpoint.calls) == 1  # nothing but the code exchange


def test_slack_without_a_team_connects_without_a_name(
    db: Any,
    operator_client: Client,
    endpoint: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make("slack-bot", scope="commands")
    answer = {k: v for k, v in SLACK_ANSWER.items() if k != "team"}
    endpoint.add("POST", SLACK_TOKEN_URL, json=answer)

    with caplog.at_level(logging.WARNING, logger="oauth2_integrator"):
        token = connect(operator_client)

    assert token.status == TokenStatus.ACTIVE
    assert token.account_name == ""
    assert any("token endpoint" in r.getMessage() for r in caplog.records)


# --- no fields: nothing is asked ----------------------------------------------------


def test_nothing_is_called_without_userinfo_endpoint_and_fields(
    db: Any, operator_client: Client, endpoint: responses.RequestsMock
) -> None:
    make(
        "generic",
        authorization_endpoint="https://auth.example.test/authorize",
        token_endpoint="https://auth.example.test/token",
    )
    endpoint.add(
        "POST",
        "https://auth.example.test/token",
        json={"access_token": GITHUB_TOKEN, "token_type": "Bearer"},
    )

    token = connect(operator_client)

    assert token.account_name == ""
    assert len(endpoint.calls) == 1


def test_a_userinfo_endpoint_without_fields_is_not_asked(
    db: Any, endpoint: responses.RequestsMock
) -> None:
    class NoFields(ProviderProfile):
        key = "no-fields"
        userinfo_endpoint = "https://auth.example.test/userinfo"

    config = providers.configure(make("github")).replace(
        profile=NoFields(), userinfo_endpoint="https://auth.example.test/userinfo"
    )
    endpoint.add("GET", "https://auth.example.test/userinfo", json={"login": "x"})

    assert NoFields().account_name(config, TokenSet(access_token=GITHUB_TOKEN)) == ""
    assert len(endpoint.calls) == 0


def test_the_hook_itself_cleans_and_caps_the_name(
    db: Any, endpoint: responses.RequestsMock
) -> None:
    """Not only the caller: a profile's own ``account_name`` is safe to show."""
    config = providers.configure(make("github"))
    endpoint.add("GET", GITHUB_USER_URL, json={"login": "a\x00b\nc" + "d" * 400})

    name = config.profile.account_name(config, TokenSet(access_token=GITHUB_TOKEN))

    assert name.startswith("a b c")
    assert len(name) == 300
