from __future__ import annotations

from typing import Any

import pytest

from oauth2_integrator import (
    AuthorizationRequired,
    TokenRefreshError,
    refresh_access_token,
    signals,
)
from oauth2_integrator.flow import TokenSet
from oauth2_integrator.tokens import store_token_set

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


def test_obtained_after_a_login(oauth_client, received):
    token = store_token_set(oauth_client, TokenSet(access_token="a" * 20))
    assert received == [("token_obtained", {"client": oauth_client, "token": token})]


def test_refreshed(oauth_client, make_token, token_endpoint, received):
    make_token(oauth_client)
    token_endpoint.post(TOKEN_URL, json={"access_token": "b" * 20})
    refresh_access_token("acme")
    [(name, kwargs)] = received
    assert name == "token_refreshed"
    assert kwargs["client"] == oauth_client
    assert kwargs["token"].access_token == "b" * 20


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
