from __future__ import annotations

from typing import Any

import pytest

from oauth2_integrator import (
    AuthorizationRequired,
    TokenRefreshError,
    refresh_access_token,
    signals,
)
from oauth2_integrator.models import OAuth2Token

from .conftest import TOKEN_URL


@pytest.fixture
def received() -> Any:
    events: list[tuple[str, dict[str, Any]]] = []
    handlers = {}
    for name in ("token_obtained", "token_refreshed", "token_refresh_failed"):

        def handler(sender: Any, _name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal")
            events.append((_name, kwargs))

        handlers[name] = handler
        getattr(signals, name).connect(handler)
    yield events
    for name, handler in handlers.items():
        getattr(signals, name).disconnect(handler)


def test_obtained_after_a_login(
    oauth_client, operator_client, start_login, token_endpoint, received
):
    """A whole login (start, provider's redirect back, code exchange) sends it once."""
    state = start_login(operator_client)["state"]
    token_endpoint.post(
        TOKEN_URL,
        json={
            "access_token": "obtained-access-token-5e6f7a8b",
            "refresh_token": "obtained-refresh-token-9c0d1e2f",
            "expires_in": 3600,
        },
    )
    assert received == []  # starting a login obtains nothing yet

    done = operator_client.get(
        "/oauth2/acme/callback/", {"state": state, "code": "login-code-3a4b5c6d"}
    )

    assert done.status_code == 302
    [(name, kwargs)] = received
    assert name == "token_obtained"
    assert kwargs["client"] == oauth_client
    stored = OAuth2Token.objects.get(client=oauth_client)
    assert kwargs["token"] == stored
    assert kwargs["token"].access_token == "obtained-access-token-5e6f7a8b"
    assert kwargs["token"].refresh_token == "obtained-refresh-token-9c0d1e2f"


def test_not_obtained_when_the_login_fails(
    oauth_client, operator_client, start_login, token_endpoint, received
):
    state = start_login(operator_client)["state"]
    token_endpoint.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    operator_client.get(
        "/oauth2/acme/callback/", {"state": state, "code": "login-code-3a4b5c6d"}
    )
    assert received == []


def test_refreshed(oauth_client, make_token, token_endpoint, received):
    make_token(oauth_client)
    token_endpoint.post(TOKEN_URL, json={"access_token": "refreshed-access-7d8e9f"})
    refresh_access_token("acme")
    [(name, kwargs)] = received
    assert name == "token_refreshed"
    assert kwargs["client"] == oauth_client
    assert kwargs["token"].access_token == "refreshed-access-7d8e9f"


@pytest.mark.parametrize(
    ("answer", "raised", "must_act"),
    [
        (
            {"status": 400, "json": {"error": "invalid_grant"}},
            AuthorizationRequired,
            True,
        ),
        ({"status": 503, "body": "down"}, TokenRefreshError, False),
    ],
)
def test_refresh_failed(
    oauth_client, make_token, token_endpoint, received, answer, raised, must_act
):
    make_token(oauth_client)
    token_endpoint.post(TOKEN_URL, **answer)
    with pytest.raises(raised) as caught:
        refresh_access_token("acme")
    [(name, kwargs)] = received
    assert name == "token_refresh_failed"
    assert kwargs == {
        "client": oauth_client,
        "error": caught.value,
        "reauthorization_required": must_act,
    }
