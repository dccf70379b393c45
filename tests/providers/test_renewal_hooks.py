"""Hooks for what data cannot say: Facebook's and Instagram's renewal without a
refresh token, Instagram's long-lived exchange, and Zoho's data centre chosen by
the callback (checked against Zoho's accounts servers).

Formats from the providers' documentation:
- https://developers.facebook.com/docs/facebook-login/guides/access-tokens/get-long-lived
- https://developers.facebook.com/docs/instagram-platform/reference/access_token
- https://developers.facebook.com/docs/instagram-platform/reference/refresh_access_token
- https://www.zoho.com/accounts/protocol/oauth/multi-dc/client-authorization.html
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses
from django.test import Client
from django.utils import timezone

from oauth2_integrator import get_access_token, get_token_values
from oauth2_integrator.exceptions import AuthorizationRequired, CallbackError
from oauth2_integrator.models import OAuth2Client, OAuth2Token
from oauth2_integrator.providers import configure, registry
from oauth2_integrator.providers.facebook import FacebookProfile
from oauth2_integrator.providers.instagram import InstagramProfile
from oauth2_integrator.providers.zoho import ZohoProfile, accounts_host

from ..conftest import CLIENT_SECRET, in_seconds

FB_TOKEN_URL = "https://graph.facebook.com/v21.0/oauth/access_token"
IG_TOKEN_URL = "https://api.instagram.com/oauth/access_token"
IG_EXCHANGE_URL = "https://graph.instagram.com/access_token"
IG_REFRESH_URL = "https://graph.instagram.com/refresh_access_token"

SHORT_TOKEN = "EAAshort-lived-USER-token-Qw3rty-0001"
LONG_TOKEN = "EAAlong-lived-USER-token-Asdfgh-0002"
RENEWED_TOKEN = "EAArenewed-USER-token-Zxcvbn-0003"
CODE = "AQD-code-from-the-callback-9911"


@pytest.fixture
def mock(secret_values: Any) -> Iterator[responses.RequestsMock]:
    """The providers' endpoints; any other URL fails (no internet)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps
        for call in rsps.calls:
            secret_values.add_from(
                dict(parse_qsl(urlsplit(call.request.url).query)), "sent in a query"
            )


def query(call: Any) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(call.request.url).query))


def make(make_client: Callable[..., OAuth2Client], provider: str, **fields: Any) -> Any:
    values: dict[str, Any] = {
        "name": provider,
        "provider": provider,
        "authorization_endpoint": "",
        "token_endpoint": "",
        "scope": "",
        "token_auth_method": "client_secret_post",
        "use_pkce": registry.get(provider).use_pkce,
    }
    values.update(fields)
    return make_client(**values)


# --------------------------------------------------------------------- Facebook


def test_facebook_is_the_hook_class_with_the_catalog_data() -> None:
    profile = registry.get("facebook")
    assert type(profile) is FacebookProfile
    assert profile.scope_separator == ","
    assert profile.token_endpoint == FB_TOKEN_URL


def test_facebook_renewal_request(make_client: Any, make_token: Any) -> None:
    client = make(make_client, "facebook")
    token = make_token(
        client, access_token=SHORT_TOKEN, refresh_token="", expires_at=in_seconds(120)
    )
    config = configure(client)
    request = config.profile.renewal_request(config, token)
    assert request is not None
    assert request.method == "GET"
    assert request.url == FB_TOKEN_URL
    assert request.data == {
        "grant_type": "fb_exchange_token",
        "client_id": "acme-client-id",
        "client_secret": CLIENT_SECRET,
        "fb_exchange_token": SHORT_TOKEN,
    }
    assert request.auth is None


def test_facebook_cannot_renew_an_expired_token(
    make_client: Any, make_token: Any
) -> None:
    client = make(make_client, "facebook")
    token = make_token(client, refresh_token="", expires_at=in_seconds(-5))
    config = configure(client)
    assert config.profile.renewal_request(config, token) is None
    with pytest.raises(AuthorizationRequired):
        get_access_token("facebook")


def test_facebook_token_renewed_by_get_access_token_before_expiry(
    make_client: Any, make_token: Any, mock: responses.RequestsMock
) -> None:
    client = make(make_client, "facebook")
    make_token(
        client, access_token=SHORT_TOKEN, refresh_token="", expires_at=in_seconds(120)
    )
    mock.get(
        FB_TOKEN_URL,
        json={
            "access_token": LONG_TOKEN,
            "token_type": "bearer",
            "expires_in": 5183944,
        },
    )
    assert get_access_token("facebook") == LONG_TOKEN
    (call,) = mock.calls
    assert call.request.method == "GET"
    assert query(call) == {
        "grant_type": "fb_exchange_token",
        "client_id": "acme-client-id",
        "client_secret": CLIENT_SECRET,
        "fb_exchange_token": SHORT_TOKEN,
    }
    stored = OAuth2Token.objects.get(client=client)
    assert stored.access_token == LONG_TOKEN
    assert stored.refresh_token in ("", None)
    assert stored.expires_at is not None
    assert stored.expires_at > timezone.now() + datetime.timedelta(days=59)


def test_facebook_failed_renewal_keeps_the_working_token(
    make_client: Any, make_token: Any, mock: responses.RequestsMock
) -> None:
    client = make(make_client, "facebook")
    make_token(
        client, access_token=SHORT_TOKEN, refresh_token="", expires_at=in_seconds(120)
    )
    mock.get(
        FB_TOKEN_URL,
        status=400,
        json={"error": {"message": "Invalid OAuth access token.", "code": 190}},
    )
    # still valid: the caller gets the stored token, the failure is recorded
    assert get_access_token("facebook") == SHORT_TOKEN
    stored = OAuth2Token.objects.get(client=client)
    assert stored.access_token == SHORT_TOKEN
    assert stored.last_error


def test_facebook_old_graph_expires_is_read(
    make_client: Any, make_token: Any, mock: responses.RequestsMock
) -> None:
    """Old Graph versions answered form-encoded with ``expires``."""
    client = make(make_client, "facebook")
    make_token(
        client, access_token=SHORT_TOKEN, refresh_token="", expires_at=in_seconds(120)
    )
    mock.get(
        FB_TOKEN_URL,
        body=f"access_token={LONG_TOKEN}&expires=5183944",
        content_type="text/plain",
    )
    assert get_access_token("facebook") == LONG_TOKEN
    stored = OAuth2Token.objects.get(client=client)
    assert stored.expires_at is not None
    assert stored.expires_at > timezone.now() + datetime.timedelta(days=59)


def test_facebook_scopes_are_comma_separated(make_client: Any) -> None:
    from oauth2_integrator import flow

    client = make(make_client, "facebook", scope="email public_profile")
    url = flow.authorization_url(
        configure(client), redirect_uri="https://app.example/cb", state="s"
    )
    assert dict(parse_qsl(urlsplit(url).query))["scope"] == "email,public_profile"


# -------------------------------------------------------------------- Instagram


def test_instagram_code_exchange_then_long_lived_exchange(
    make_client: Any, mock: responses.RequestsMock
) -> None:
    from oauth2_integrator import flow

    client = make(make_client, "instagram")
    mock.post(
        IG_TOKEN_URL,
        json={
            "data": [
                {
                    "access_token": SHORT_TOKEN,
                    "user_id": "1020",
                    "permissions": "instagram_business_basic",
                }
            ]
        },
    )
    mock.get(
        IG_EXCHANGE_URL,
        json={
            "access_token": LONG_TOKEN,
            "token_type": "bearer",
            "expires_in": 5183944,
        },
    )
    token_set = flow.exchange_code(
        configure(client),
        code=CODE,
        redirect_uri="https://app.example/cb",
        code_verifier=None,
    )
    assert token_set.access_token == LONG_TOKEN
    assert token_set.expires_in == 5183944
    exchange, long_lived = mock.calls
    body = dict(parse_qsl(exchange.request.body))
    assert body["grant_type"] == "authorization_code"
    assert body["client_secret"] == CLIENT_SECRET
    assert long_lived.request.method == "GET"
    assert query(long_lived) == {
        "grant_type": "ig_exchange_token",
        "client_secret": CLIENT_SECRET,
        "access_token": SHORT_TOKEN,
    }


def test_instagram_keeps_the_short_token_when_the_exchange_fails(
    make_client: Any, mock: responses.RequestsMock, caplog: Any
) -> None:
    from oauth2_integrator import flow

    client = make(make_client, "instagram")
    mock.post(IG_TOKEN_URL, json={"access_token": SHORT_TOKEN, "user_id": 1020})
    mock.get(IG_EXCHANGE_URL, status=400, json={"error": {"message": "bad"}})
    token_set = flow.exchange_code(
        configure(client),
        code=CODE,
        redirect_uri="https://app.example/cb",
        code_verifier=None,
    )
    assert token_set.access_token == SHORT_TOKEN
    assert "Re-authorize" in caplog.text


def test_instagram_renewal_by_get(
    make_client: Any, make_token: Any, mock: responses.RequestsMock
) -> None:
    client = make(make_client, "instagram")
    make_token(
        client, access_token=LONG_TOKEN, refresh_token="", expires_at=in_seconds(120)
    )
    mock.get(
        IG_REFRESH_URL,
        json={
            "access_token": RENEWED_TOKEN,
            "token_type": "bearer",
            "expires_in": 5183944,
        },
    )
    assert get_access_token("instagram") == RENEWED_TOKEN
    (call,) = mock.calls
    assert call.request.method == "GET"
    assert query(call) == {"grant_type": "ig_refresh_token", "access_token": LONG_TOKEN}
    assert "Authorization" not in call.request.headers  # no client credentials
    assert OAuth2Token.objects.get(client=client).access_token == RENEWED_TOKEN


def test_instagram_cannot_renew_an_expired_token(
    make_client: Any, make_token: Any
) -> None:
    client = make(make_client, "instagram")
    token = make_token(client, refresh_token="", expires_at=in_seconds(-5))
    config = configure(client)
    assert config.profile.renewal_request(config, token) is None


def test_instagram_is_the_hook_class() -> None:
    assert type(registry.get("instagram")) is InstagramProfile


# ------------------------------------------------------------------------- Zoho


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("https://accounts.zoho.eu", "accounts.zoho.eu"),
        ("https://accounts.zoho.com.au/", "accounts.zoho.com.au"),
        ("https://ACCOUNTS.ZOHO.IN", "accounts.zoho.in"),
        ("https://accounts.zohocloud.ca", "accounts.zohocloud.ca"),
        ("https://evil.example", None),
        ("https://accounts.zoho.eu.evil.example", None),
        ("https://evil.example/accounts.zoho.eu", None),
        ("http://accounts.zoho.eu", None),
        ("https://accounts.zoho.eu:8443", None),
        ("https://user@accounts.zoho.eu", None),
        ("https://accounts.zoho.eu/oauth/v2/token", None),
        ("https://accounts.zoho.eu?x=1", None),
        ("https://accounts.zoho.eu#x", None),
        ("https://[::1", None),
        ("accounts.zoho.eu", None),
    ],
)
def test_zoho_accounts_server_allow_list(value: str, host: str | None) -> None:
    assert accounts_host(value) == host


def test_zoho_token_endpoint_from_callback(make_client: Any) -> None:
    client = make(make_client, "zoho")
    config = configure(client)
    assert type(config.profile) is ZohoProfile
    choose = config.profile.token_endpoint_from_callback
    assert (
        choose(config, {"accounts-server": "https://accounts.zoho.eu"})
        == "https://accounts.zoho.eu/oauth/v2/token"
    )
    assert choose(config, {}) is None
    with pytest.raises(CallbackError, match="not one of Zoho's data centres"):
        choose(config, {"accounts-server": "https://attacker.example"})


def test_zoho_operator_endpoint_wins(make_client: Any) -> None:
    client = make(
        make_client, "zoho", token_endpoint="https://proxy.example/oauth/v2/token"
    )
    config = configure(client)
    chosen = config.profile.token_endpoint_from_callback(
        config, {"accounts-server": "https://accounts.zoho.eu"}
    )
    assert chosen is None


def zoho_login(
    make_client: Any, operator_client: Client, start_login: Any
) -> tuple[OAuth2Client, str]:
    client = make(make_client, "zoho")
    state = start_login(operator_client, "zoho")["state"]
    return client, state


def test_zoho_login_uses_the_callbacks_data_centre_and_refreshes_there(
    make_client: Any,
    operator_client: Client,
    start_login: Any,
    mock: responses.RequestsMock,
    secret_values: Any,
) -> None:
    client, state = zoho_login(make_client, operator_client, start_login)
    eu = "https://accounts.zoho.eu/oauth/v2/token"
    mock.post(
        eu,
        json={
            "access_token": "1000.zoho-access-EU-aaaa",
            "refresh_token": "1000.zoho-refresh-EU-bbbb",
            "api_domain": "https://www.zohoapis.eu",
            "token_type": "Bearer",
            "expires_in": 3600,
        },
    )
    response = operator_client.get(
        "/oauth2/zoho/callback/",
        {
            "state": state,
            "code": CODE,
            "location": "eu",
            "accounts-server": "https://accounts.zoho.eu",
        },
    )
    assert response.status_code == 302, response.content
    (call,) = mock.calls
    assert call.request.url == eu
    values = get_token_values("zoho")
    assert values["api_domain"] == "https://www.zohoapis.eu"
    assert values["accounts-server"] == "https://accounts.zoho.eu"
    # the refresh goes to the same data centre
    OAuth2Token.objects.filter(client=client).update(
        obtained_at=in_seconds(-86400), expires_at=in_seconds(60)
    )
    mock.post(
        eu,
        json={"access_token": "1000.zoho-access-EU-cccc", "expires_in": 3600},
    )
    secret_values.add("1000.zoho-access-EU-cccc", "refreshed token")
    assert get_access_token("zoho") == "1000.zoho-access-EU-cccc"
    assert mock.calls[-1].request.url == eu


def test_zoho_login_with_a_foreign_accounts_server_sends_nothing(
    make_client: Any,
    operator_client: Client,
    start_login: Any,
    mock: responses.RequestsMock,
) -> None:
    client, state = zoho_login(make_client, operator_client, start_login)
    response = operator_client.get(
        "/oauth2/zoho/callback/",
        {
            "state": state,
            "code": CODE,
            "accounts-server": "https://accounts.zoho.eu.attacker.example",
        },
    )
    assert response.status_code == 400
    assert "data centres" in response.content.decode()
    assert len(mock.calls) == 0  # neither the code nor the secret went anywhere
    assert not OAuth2Token.objects.filter(client=client).exists()
