"""The profile hooks, each through the real login, callback and refresh paths.

Every profile here is test-only, registered for one test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses
from django.test import Client

from oauth2_integrator import (
    AuthorizationRequired,
    get_access_token,
    get_token_values,
    refresh_access_token,
    signals,
)
from oauth2_integrator.exceptions import TokenEndpointError, TokenRefreshError
from oauth2_integrator.flow import TokenRequest, apply_client_auth
from oauth2_integrator.models import AuthorizationRequest, OAuth2Token
from oauth2_integrator.providers import ProviderProfile, registry

from ..conftest import AUTHORIZE_URL, CLIENT_SECRET, TOKEN_URL, in_seconds

CALLBACK = "/oauth2/acme/callback/"
CODE = "authz-code-hooks-0123456789"
NEW_ACCESS = "renewed-access-token-5555-EEEE"
TOKEN = {"access_token": NEW_ACCESS, "token_type": "Bearer", "expires_in": 3600}
RENEW_URL = "https://graph.example.test/refresh_access_token"
EU_TOKEN_URL = "https://accounts.example.eu/oauth/v2/token"


@pytest.fixture
def mock(secret_values: Any) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as endpoint:
        yield endpoint


@pytest.fixture
def use_profile(monkeypatch: pytest.MonkeyPatch) -> Any:
    def use(cls: type[ProviderProfile]) -> type[ProviderProfile]:
        registry.choices()  # the catalog is loaded first, so the test class stays
        monkeypatch.setitem(registry._profiles, cls.key, cls)
        return cls

    return use


def login(browser: Client, mock: Any, **params: str) -> Any:
    """Authorize in the browser and answer the callback with ``params``."""
    response = browser.post("/oauth2/acme/login/")
    assert response.status_code == 302, response.content
    query = dict(parse_qsl(urlsplit(response["Location"]).query))
    return browser.get(CALLBACK, {"state": query["state"], **params}), query


def form(call: Any) -> dict[str, str]:
    return dict(parse_qsl(call.request.body or ""))


# --- renewal_request ------------------------------------------------------------


class Renewing(ProviderProfile):
    """Instagram-like: GET to a separate URL with the access token itself."""

    key = "test-renewing"

    def renewal_request(self, config: Any, token: OAuth2Token) -> TokenRequest | None:
        return TokenRequest(
            url=RENEW_URL,
            data={"grant_type": "ig_refresh_token", "access_token": token.access_token},
            method="GET",
        )


@pytest.fixture
def renewing(make_client: Any, use_profile: Any) -> Any:
    use_profile(Renewing)
    return make_client(provider=Renewing.key)


def test_a_due_token_without_refresh_token_is_renewed(
    renewing: Any, make_token: Any, mock: Any
) -> None:
    token = make_token(renewing, refresh_token="", expires_at=in_seconds(120))
    old = token.access_token
    mock.get(RENEW_URL, json=TOKEN)
    refreshed: list[Any] = []
    signals.token_refreshed.connect(
        lambda **kw: refreshed.append(kw), weak=False, dispatch_uid="t-renew"
    )
    try:
        assert get_access_token("acme") == NEW_ACCESS
    finally:
        signals.token_refreshed.disconnect(dispatch_uid="t-renew")
    request = mock.calls[0].request
    assert request.method == "GET"
    assert dict(parse_qsl(urlsplit(request.url).query)) == {
        "grant_type": "ig_refresh_token",
        "access_token": old,
    }
    assert request.body is None
    assert "Authorization" not in request.headers
    token.refresh_from_db()
    assert token.access_token == NEW_ACCESS
    assert token.refresh_token == ""
    assert token.refreshed_at is not None
    assert len(refreshed) == 1


def test_a_token_not_yet_due_is_not_renewed(
    renewing: Any, make_token: Any, mock: Any
) -> None:
    token = make_token(renewing, refresh_token="")
    assert get_access_token("acme") == token.access_token
    assert not mock.calls


def test_refresh_access_token_renews_too(
    renewing: Any, make_token: Any, mock: Any
) -> None:
    make_token(renewing, refresh_token="")
    mock.get(RENEW_URL, json=TOKEN)
    assert refresh_access_token("acme") == NEW_ACCESS


def test_a_failed_renewal_follows_the_failure_policy(
    renewing: Any, make_token: Any, mock: Any
) -> None:
    token = make_token(renewing, refresh_token="", expires_at=in_seconds(120))
    mock.get(RENEW_URL, status=400, json={"error": "invalid_client"})
    assert get_access_token("acme") == token.access_token  # still valid: served
    token.refresh_from_db()
    assert token.last_error_code == "invalid_client"
    assert token.next_attempt_at is not None
    assert get_access_token("acme") == token.access_token
    assert len(mock.calls) == 1  # held back: the provider is not asked again
    token.expires_at = in_seconds(-5)
    token.save()
    with pytest.raises(TokenRefreshError):
        get_access_token("acme")


def test_an_expired_token_without_renewal_still_needs_reauthorization(
    oauth_client: Any, make_token: Any, mock: Any
) -> None:
    make_token(oauth_client, refresh_token="", expires_at=in_seconds(-60))
    with pytest.raises(AuthorizationRequired):
        get_access_token("acme")
    with pytest.raises(AuthorizationRequired):
        refresh_access_token("acme")
    assert not mock.calls


class PostRenewing(ProviderProfile):
    """Facebook-like: fb_exchange_token with the client's credentials."""

    key = "test-post-renewing"

    def renewal_request(self, config: Any, token: OAuth2Token) -> TokenRequest | None:
        request = TokenRequest(
            url=config.token_endpoint,
            data={
                "grant_type": "fb_exchange_token",
                "fb_exchange_token": token.access_token,
            },
        )
        return apply_client_auth(config, request)


def test_a_renewal_hook_may_use_the_clients_authentication(
    make_client: Any, make_token: Any, use_profile: Any, mock: Any
) -> None:
    use_profile(PostRenewing)
    client = make_client(
        provider=PostRenewing.key, token_auth_method="client_secret_post"
    )
    token = make_token(client, refresh_token="", expires_at=in_seconds(60))
    mock.post(TOKEN_URL, json=TOKEN)
    assert get_access_token("acme") == NEW_ACCESS
    assert form(mock.calls[0]) == {
        "grant_type": "fb_exchange_token",
        "fb_exchange_token": token.access_token,
        "client_id": "acme-client-id",
        "client_secret": CLIENT_SECRET,
    }


# --- token_endpoint_from_callback -----------------------------------------------


class DataCenters(ProviderProfile):
    """Zoho-like: the callback's accounts-server picks the token URL."""

    key = "test-data-centers"
    callback_values = ["accounts-server"]
    allowed = {"https://accounts.example.eu", "https://accounts.example.test"}

    def token_endpoint_from_callback(self, config: Any, params: Any) -> str | None:
        server = params.get("accounts-server")
        if not server:
            return None
        if server not in self.allowed:
            return ""  # refused: not a known data center
        return f"{server}/oauth/v2/token"


@pytest.fixture
def data_centers(make_client: Any, use_profile: Any) -> Any:
    use_profile(DataCenters)
    return make_client(provider=DataCenters.key)


def test_the_callback_picks_the_token_endpoint_for_exchange_and_refresh(
    data_centers: Any, operator_client: Client, mock: Any
) -> None:
    mock.post(EU_TOKEN_URL, json={**TOKEN, "refresh_token": "rt-eu-1234567"})
    response, _ = login(
        operator_client,
        mock,
        code=CODE,
        **{"accounts-server": "https://accounts.example.eu"},
    )
    assert response.status_code == 302, response.content
    assert [call.request.url for call in mock.calls] == [EU_TOKEN_URL]
    assert form(mock.calls[0])["code"] == CODE
    assert get_token_values("acme") == {
        "accounts-server": "https://accounts.example.eu",
        "token_endpoint": EU_TOKEN_URL,
    }
    refresh_access_token("acme")
    assert mock.calls[1].request.url == EU_TOKEN_URL
    assert form(mock.calls[1])["refresh_token"] == "rt-eu-1234567"


def test_a_hostile_token_endpoint_in_the_callback_is_refused(
    data_centers: Any, operator_client: Client, mock: Any
) -> None:
    response, _ = login(
        operator_client, mock, code=CODE, **{"accounts-server": "https://evil.test"}
    )
    assert response.status_code == 400
    assert "does not send credentials to" in response.content.decode()
    assert not mock.calls
    assert not OAuth2Token.objects.exists()


# --- configure, validate_token_set, account_name --------------------------------


class Hooked(ProviderProfile):
    key = "test-hooked"
    seen: dict[str, Any] = {}

    def configure(self, config: Any) -> Any:
        return config.replace(token_endpoint=EU_TOKEN_URL)

    def validate_token_set(self, config: Any, token_set: Any, *, nonce: str) -> None:
        Hooked.seen["nonce"] = nonce
        if token_set.extra.get("id_token") == "forged":
            raise TokenEndpointError(
                "The ID token was rejected: bad signature.", client=config.client.name
            )

    def account_name(self, config: Any, token_set: Any) -> str:
        if token_set.extra.get("email") == "boom":
            raise ValueError("cannot tell")
        return token_set.extra.get("email", "")


@pytest.fixture
def hooked(make_client: Any, use_profile: Any) -> Any:
    use_profile(Hooked)
    Hooked.seen = {}
    return make_client(provider=Hooked.key, token_endpoint="")


def test_configure_validate_and_account_name_at_the_callback(
    hooked: Any, operator_client: Client, mock: Any
) -> None:
    mock.post(EU_TOKEN_URL, json={**TOKEN, "email": "alice@example.test"})
    response, _ = login(operator_client, mock, code=CODE)
    assert response.status_code == 302, response.content
    assert mock.calls[0].request.url == EU_TOKEN_URL  # from the configure hook
    assert Hooked.seen["nonce"] == AuthorizationRequest.objects.get().nonce
    assert Hooked.seen["nonce"]
    assert OAuth2Token.objects.get().account_name == "alice@example.test"


def test_a_refused_token_set_stores_nothing(
    hooked: Any, operator_client: Client, mock: Any
) -> None:
    mock.post(EU_TOKEN_URL, json={**TOKEN, "id_token": "forged"})
    response, _ = login(operator_client, mock, code=CODE)
    assert response.status_code == 400
    assert "The ID token was rejected: bad signature." in response.content.decode()
    assert not OAuth2Token.objects.exists()


def test_a_failing_account_name_does_not_cost_the_login(
    hooked: Any, operator_client: Client, mock: Any
) -> None:
    mock.post(EU_TOKEN_URL, json={**TOKEN, "email": "boom"})
    response, _ = login(operator_client, mock, code=CODE)
    assert response.status_code == 302
    assert OAuth2Token.objects.get().account_name == ""


# --- the callback vocabulary ----------------------------------------------------


def test_code_param_and_callback_values(
    make_client: Any, operator_client: Client, mock: Any
) -> None:
    make_client(
        provider_options={
            "code_param": "spapi_oauth_code",
            "callback_values": ["realmId", "selling_partner_id"],
            "token_values": ["instance_url"],
        }
    )
    mock.post(TOKEN_URL, json={**TOKEN, "instance_url": "https://na1.example.test"})
    response, _ = login(
        operator_client,
        mock,
        spapi_oauth_code=CODE,
        realmId="4620816365",
        other="not kept",
    )
    assert response.status_code == 302, response.content
    assert form(mock.calls[0])["code"] == CODE
    assert get_token_values("acme") == {
        "realmId": "4620816365",
        "instance_url": "https://na1.example.test",
    }


def test_code_param_ignores_a_plain_code(
    make_client: Any, operator_client: Client, mock: Any
) -> None:
    make_client(provider_options={"code_param": "spapi_oauth_code"})
    response, _ = login(operator_client, mock, code=CODE)
    assert response.status_code == 400
    assert not mock.calls


def test_a_repeated_code_param_is_refused(
    make_client: Any, operator_client: Client, mock: Any
) -> None:
    make_client(provider_options={"code_param": "spapi_oauth_code"})
    response = operator_client.post("/oauth2/acme/login/")
    state = dict(parse_qsl(urlsplit(response["Location"]).query))["state"]
    response = operator_client.get(
        f"{CALLBACK}?state={state}&spapi_oauth_code={CODE}&spapi_oauth_code=other-1"
    )
    assert response.status_code == 400
    assert "repeats the parameter spapi_oauth_code" in response.content.decode()
    assert not mock.calls


def test_sends_iss_from_provider_options(
    make_client: Any, operator_client: Client, mock: Any
) -> None:
    make_client(
        issuer="https://auth.example.test", provider_options={"sends_iss": True}
    )
    response, _ = login(operator_client, mock, code=CODE)
    assert response.status_code == 400
    assert "carries no issuer (iss)" in response.content.decode()
    assert not mock.calls


# --- a provider the app does not ship, by provider options alone ------------------


def test_an_unshipped_provider_with_two_quirks_logs_in_and_refreshes(
    make_client: Any, operator_client: Client, mock: Any
) -> None:
    """TikTok-like: client_key instead of client_id, the token under "data",
    scopes joined with commas, all from the client's provider options."""
    make_client(
        scope="user.info.basic video.list",
        token_auth_method="client_secret_post",
        provider_options={
            "param_names": {"client_id": "client_key"},
            "token_path": "data",
            "scope_separator": ",",
        },
    )
    first = {
        "data": {
            "access_token": "act.first-access-1234",
            "refresh_token": "rft.first-refresh-1234",
            "expires_in": 86400,
            "scope": "user.info.basic,video.list",
        },
        "message": "success",
    }
    mock.post(TOKEN_URL, json=first)
    response, query = login(operator_client, mock, code=CODE)
    assert query["client_key"] == "acme-client-id"
    assert "client_id" not in query
    assert query["scope"] == "user.info.basic,video.list"
    assert response.status_code == 302, response.content
    sent = form(mock.calls[0])
    assert sent["client_key"] == "acme-client-id"
    assert "client_id" not in sent
    assert sent["client_secret"] == CLIENT_SECRET
    assert get_access_token("acme") == "act.first-access-1234"
    token = OAuth2Token.objects.get()
    assert token.refresh_token == "rft.first-refresh-1234"
    assert token.extra == {"message": "success"}

    mock.replace(
        responses.POST,
        TOKEN_URL,
        json={"data": {"access_token": "act.second-access-5678", "expires_in": 86400}},
    )
    assert refresh_access_token("acme") == "act.second-access-5678"
    sent = form(mock.calls[-1])
    assert sent == {
        "grant_type": "refresh_token",
        "refresh_token": "rft.first-refresh-1234",
        "client_key": "acme-client-id",
        "client_secret": CLIENT_SECRET,
    }
    token.refresh_from_db()
    assert token.refresh_token == "rft.first-refresh-1234"  # kept when omitted

    mock.replace(responses.POST, TOKEN_URL, json={"message": "error", "data": {}})
    with pytest.raises(TokenRefreshError):
        refresh_access_token("acme")
    token.refresh_from_db()
    assert token.access_token == "act.second-access-5678"  # nothing lost


def test_the_authorize_url_keeps_the_endpoints_query(make_client: Any) -> None:
    from oauth2_integrator.flow import authorization_url

    client = make_client(authorization_endpoint=AUTHORIZE_URL + "?tenant=x")
    url = authorization_url(client, redirect_uri="https://a.test/cb", state="s")
    assert dict(parse_qsl(urlsplit(url).query))["tenant"] == "x"
