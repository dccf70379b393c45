"""The quirk vocabulary: every key changes the request or what is stored, exactly.

Most tests set the key in a client's ``provider_options`` on the generic profile
(the per-client path an operator uses for a provider the app does not ship); a
few set it on a test-only profile, to show profile data and its precedence.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses
from django.core.exceptions import ValidationError
from django.utils import timezone

from oauth2_integrator import get_token_values, refresh_access_token
from oauth2_integrator.exceptions import ConfigurationError, TokenEndpointError
from oauth2_integrator.flow import (
    authorization_url,
    exchange_code,
    refresh,
)
from oauth2_integrator.models import AuthorizationRequest, OAuth2Token, TokenStatus
from oauth2_integrator.providers import ProviderProfile, configure, registry
from oauth2_integrator.providers.options import VOCABULARY
from oauth2_integrator.registration import ImportFailed, import_clients
from oauth2_integrator.tokens import store_token_set

from ..conftest import AUTHORIZE_URL, CLIENT_SECRET, TOKEN_URL, in_seconds

REDIRECT = "https://app.example.test/oauth2/acme/callback/"
CODE = "authz-code-vocab-0123456789"
REFRESH = "stored-refresh-token-CCCC-2222-DDDD"
ACCESS = "new-access-token-vocab-4444"
TOKEN = {"access_token": ACCESS, "token_type": "Bearer", "expires_in": 3600}
OTHER_URL = "https://other.example.test/refresh"


# --- helpers --------------------------------------------------------------------


@pytest.fixture
def mock(secret_values: Any) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as endpoint:
        yield endpoint


@pytest.fixture
def use_profile(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Register a test-only profile class for this test."""

    def use(cls: type[ProviderProfile]) -> type[ProviderProfile]:
        registry.choices()  # the catalog is loaded first, so the test class stays
        monkeypatch.setitem(registry._profiles, cls.key, cls)
        return cls

    return use


def query(client: Any, **kwargs: Any) -> dict[str, str]:
    url = authorization_url(client, redirect_uri=REDIRECT, state="the-state", **kwargs)
    return dict(parse_qsl(urlsplit(url).query))


def form(call: Any) -> dict[str, str]:
    return dict(parse_qsl(call.request.body))


def exchange(client: Any) -> Any:
    return exchange_code(client, code=CODE, redirect_uri=REDIRECT, code_verifier=None)


def basic(call: Any) -> tuple[str, str]:
    header = call.request.headers["Authorization"]
    assert header.startswith("Basic ")
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return user, password


def test_profile_defaults_come_from_the_vocabulary() -> None:
    profile = ProviderProfile()
    assert profile.vocabulary() == {
        name: option.default for name, option in VOCABULARY.items()
    }


# --- requests -------------------------------------------------------------------


def test_authorize_params_profile_then_client_fields_then_options(
    make_client: Any, use_profile: Any
) -> None:
    @use_profile
    class Offline(ProviderProfile):
        key = "test-offline"
        authorize_params = {"access_type": "offline", "prompt": "consent", "x": 1}

    client = make_client(
        provider="test-offline",
        extra_authorize_params={"prompt": "select_account"},
        provider_options={"authorize_params": {"x": "client"}},
    )
    params = query(client)
    assert params == {
        "response_type": "code",
        "client_id": "acme-client-id",
        "redirect_uri": REDIRECT,
        "scope": "read write",
        "state": "the-state",
        "access_type": "offline",
        "prompt": "select_account",
        "x": "client",
    }


def test_token_params_on_exchange_and_refresh_refresh_params_on_refresh_only(
    make_client: Any, mock: Any
) -> None:
    client = make_client(
        provider_options={
            "token_params": {"audience": "api"},
            "refresh_params": {"duration": "permanent"},
        }
    )
    mock.post(TOKEN_URL, json=TOKEN)
    exchange(client)
    refresh(client, refresh_token=REFRESH)
    sent_exchange, sent_refresh = form(mock.calls[0]), form(mock.calls[1])
    assert sent_exchange == {
        "grant_type": "authorization_code",
        "code": CODE,
        "redirect_uri": REDIRECT,
        "audience": "api",
    }
    assert sent_refresh == {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH,
        "audience": "api",
        "duration": "permanent",
    }
    assert basic(mock.calls[1]) == ("acme-client-id", CLIENT_SECRET)


def test_param_names_rename_client_id_in_the_url_and_the_token_body(
    make_client: Any, mock: Any
) -> None:
    client = make_client(
        token_auth_method="client_secret_post",
        provider_options={"param_names": {"client_id": "client_key"}},
    )
    params = query(client)
    assert params["client_key"] == "acme-client-id"
    assert "client_id" not in params
    mock.post(TOKEN_URL, json=TOKEN)
    exchange(client)
    call = mock.calls[0]
    assert form(call) == {
        "grant_type": "authorization_code",
        "code": CODE,
        "redirect_uri": REDIRECT,
        "client_key": "acme-client-id",
        "client_secret": CLIENT_SECRET,
    }
    assert "Authorization" not in call.request.headers


def test_scope_separator_joins_scopes(make_client: Any) -> None:
    client = make_client(provider_options={"scope_separator": ","})
    assert query(client)["scope"] == "read,write"


def test_required_scopes_are_added_once(make_client: Any) -> None:
    client = make_client(
        scope="read offline_access",
        provider_options={"required_scopes": ["offline_access", "extra"]},
    )
    assert query(client)["scope"] == "read offline_access extra"


def test_default_scopes_of_the_profile_when_the_client_sets_none(
    make_client: Any, use_profile: Any
) -> None:
    @use_profile
    class Scoped(ProviderProfile):
        key = "test-scoped"
        default_scopes = ["openid", "email"]
        required_scopes = ["offline_access"]

    assert query(make_client(provider="test-scoped", scope=""))["scope"] == (
        "openid email offline_access"
    )
    other = make_client(name="other", provider="test-scoped", scope="mine")
    assert query(other)["scope"] == "mine offline_access"


def test_scope_on_refresh_sends_the_granted_scope_with_the_separator(
    make_client: Any, make_token: Any, mock: Any
) -> None:
    client = make_client(
        provider_options={"scope_on_refresh": True, "scope_separator": ","}
    )
    make_token(client, scope="read write offline_access")
    mock.post(TOKEN_URL, json=TOKEN)
    refresh_access_token("acme")
    assert form(mock.calls[0])["scope"] == "read,write,offline_access"


def test_no_scope_on_refresh_by_default(
    oauth_client: Any, make_token: Any, mock: Any
) -> None:
    make_token(oauth_client)
    mock.post(TOKEN_URL, json=TOKEN)
    refresh_access_token("acme")
    assert "scope" not in form(mock.calls[0])


def test_token_request_format_json_and_token_headers(
    make_client: Any, mock: Any
) -> None:
    client = make_client(
        provider_options={
            "token_request_format": "json",
            "token_headers": {"Notion-Version": "2022-06-28"},
        }
    )
    mock.post(TOKEN_URL, json=TOKEN)
    exchange(client)
    request = mock.calls[0].request
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Notion-Version"] == "2022-06-28"
    assert request.headers["Accept"] == "application/json"
    assert json.loads(request.body) == {
        "grant_type": "authorization_code",
        "code": CODE,
        "redirect_uri": REDIRECT,
    }
    assert basic(mock.calls[0]) == ("acme-client-id", CLIENT_SECRET)


def test_refresh_endpoint_receives_refreshes_only(make_client: Any, mock: Any) -> None:
    client = make_client(provider_options={"refresh_endpoint": OTHER_URL})
    mock.post(TOKEN_URL, json=TOKEN)
    mock.post(OTHER_URL, json=TOKEN)
    exchange(client)
    refresh(client, refresh_token=REFRESH)
    assert [call.request.url for call in mock.calls] == [TOKEN_URL, OTHER_URL]


def test_a_profiles_refresh_endpoint_follows_a_client_token_endpoint(
    make_client: Any, use_profile: Any
) -> None:
    @use_profile
    class Separate(ProviderProfile):
        key = "test-separate"
        authorization_endpoint = AUTHORIZE_URL
        token_endpoint = "https://prod.example.test/token"
        refresh_endpoint = "https://prod.example.test/refresh"

    own = make_client(provider="test-separate", token_endpoint="")
    assert configure(own).refresh_endpoint == "https://prod.example.test/refresh"
    sandbox = make_client(name="sandbox", provider="test-separate")
    assert configure(sandbox).refresh_endpoint == TOKEN_URL  # its own server


# --- url_values -----------------------------------------------------------------


@pytest.fixture
def tenant_profile(use_profile: Any) -> Any:
    @use_profile
    class Tenant(ProviderProfile):
        key = "test-tenant"
        authorization_endpoint = "https://login.example.test/{tenant}/authorize"
        token_endpoint = "https://{region}.example.test/{tenant}/token"
        url_values = {"tenant": "common"}

    return Tenant


def test_url_values_fill_endpoint_templates(
    make_client: Any, tenant_profile: Any, mock: Any
) -> None:
    client = make_client(
        provider="test-tenant",
        authorization_endpoint="",
        token_endpoint="",
        provider_options={"url_values": {"region": "eu"}},
    )
    url = authorization_url(client, redirect_uri=REDIRECT, state="s")
    assert url.startswith("https://login.example.test/common/authorize?")
    mock.post("https://eu.example.test/common/token", json=TOKEN)
    exchange(client)
    client.provider_options = {"url_values": {"region": "us", "tenant": "contoso"}}
    assert configure(client).token_endpoint == "https://us.example.test/contoso/token"


def test_a_missing_url_value_names_it(make_client: Any, tenant_profile: Any) -> None:
    client = make_client(provider="test-tenant", authorization_endpoint="")
    client.token_endpoint = ""
    with pytest.raises(ConfigurationError) as info:
        configure(client)
    assert "{region}" in str(info.value)
    assert '"url_values": {"region": "..."}' in str(info.value)
    with pytest.raises(ValidationError) as invalid:
        client.full_clean()
    assert "{region}" in str(invalid.value.message_dict["provider_options"])


@pytest.mark.parametrize("value", ["evil.test/x", "a@evil.test", "x?y", ""])
def test_a_url_value_cannot_move_the_host_or_path(
    make_client: Any, tenant_profile: Any, value: str
) -> None:
    client = make_client(provider="test-tenant", authorization_endpoint="")
    client.token_endpoint = ""
    client.provider_options = {"url_values": {"region": value}}
    with pytest.raises(ConfigurationError):
        configure(client)


# --- responses ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type", "body"),
    [
        ("json", "text/plain", json.dumps(TOKEN)),
        ("form", "application/json", f"access_token={ACCESS}&expires_in=3600"),
        ("auto", "application/x-www-form-urlencoded", f"access_token={ACCESS}"),
        ("auto", "application/json", json.dumps(TOKEN)),
    ],
)
def test_token_response_format(
    make_client: Any, mock: Any, fmt: str, content_type: str, body: str
) -> None:
    client = make_client(provider_options={"token_response_format": fmt})
    mock.post(TOKEN_URL, body=body, content_type=content_type)
    assert exchange(client).access_token == ACCESS


def test_token_response_format_json_refuses_a_form_body(
    make_client: Any, mock: Any
) -> None:
    client = make_client(provider_options={"token_response_format": "json"})
    mock.post(
        TOKEN_URL,
        body=f"access_token={ACCESS}",
        content_type="application/x-www-form-urlencoded",
    )
    with pytest.raises(TokenEndpointError) as info:
        exchange(client)
    assert info.value.error == "invalid_response"


def test_token_path_reads_the_nested_token_and_keeps_no_other_token(
    make_client: Any, mock: Any
) -> None:
    client = make_client(provider_options={"token_path": "authed_user"})
    mock.post(
        TOKEN_URL,
        json={
            "ok": True,
            "access_token": "xoxb-bot-token-not-wanted",
            "token_type": "bot",
            "team": {"id": "T1"},
            "authed_user": {
                "id": "U1",
                "access_token": ACCESS,
                "token_type": "user",
                "scope": "chat:write",
            },
        },
    )
    with pytest.raises(TokenEndpointError) as info:
        exchange(client)
    assert info.value.error == "unsupported_token_type"  # "user": not Bearer
    mock.replace(
        responses.POST,
        TOKEN_URL,
        json={
            "ok": True,
            "access_token": "xoxb-bot-token-not-wanted",
            "team": {"id": "T1"},
            "authed_user": {"id": "U1", "access_token": ACCESS, "scope": "chat:write"},
        },
    )
    token_set = exchange(client)
    assert token_set.access_token == ACCESS
    assert token_set.scope == "chat:write"
    assert token_set.extra == {"ok": True, "team": {"id": "T1"}, "id": "U1"}
    assert "xoxb-bot-token-not-wanted" not in json.dumps(token_set.extra)
    # The bot's refresh token and lifetime are not the user token's.
    mock.replace(
        responses.POST,
        TOKEN_URL,
        json={
            "ok": True,
            "access_token": "xoxb-bot-token-not-wanted",
            "refresh_token": "xoxe-bot-refresh-not-wanted",
            "expires_in": 43200,
            "authed_user": {"access_token": ACCESS},
        },
    )
    token_set = exchange(client)
    assert token_set.refresh_token is None
    assert token_set.expires_in is None


def test_token_path_missing_is_an_invalid_response(make_client: Any, mock: Any) -> None:
    client = make_client(provider_options={"token_path": "data"})
    mock.post(TOKEN_URL, json=TOKEN)
    with pytest.raises(TokenEndpointError) as info:
        exchange(client)
    assert "'data'" in str(info.value)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"ok": False, "error": "invalid_code"}, "invalid_code"),
        ({"ok": False, "access_token": ACCESS}, "invalid_response"),
    ],
)
def test_ok_field_false_with_http_200_is_an_error(
    make_client: Any, mock: Any, body: dict[str, Any], error: str
) -> None:
    client = make_client(provider_options={"ok_field": "ok"})
    mock.post(TOKEN_URL, json=body)
    with pytest.raises(TokenEndpointError) as info:
        exchange(client)
    assert info.value.error == error
    assert info.value.status == 200


def test_errors_field_reports_the_first_error_and_invalid_grant_counts(
    make_client: Any, make_token: Any, mock: Any
) -> None:
    client = make_client(provider_options={"errors_field": "errors"})
    token = make_token(client)
    mock.post(
        TOKEN_URL,
        status=400,
        json={
            "errors": [
                {"errorType": "invalid_grant", "message": "Refresh token invalid"}
            ],
            "success": False,
        },
    )
    with pytest.raises(Exception) as info:
        refresh_access_token("acme")
    assert "invalid_grant" in str(info.value)
    token.refresh_from_db()
    assert token.status == TokenStatus.REAUTHORIZATION_REQUIRED
    assert "Refresh token invalid" in token.last_error


@pytest.mark.parametrize(
    ("options", "body", "expected"),
    [
        ({"expires_in_field": "expires"}, {"expires": 5183999}, 5183999),
        ({}, {"expires_in": "3600"}, 3600),
        ({"expires_unit": "milliseconds"}, {"expires_in": 3600000}, 3600),
        ({"expires_unit": "milliseconds"}, {"expires_in": "7200000"}, 7200),
        ({"default_expires_in": 7200}, {}, 7200),
        ({"default_expires_in": 7200}, {"expires_in": 1800}, 1800),
        (
            {"zero_expires_means_never": True, "default_expires_in": 60},
            {"expires_in": 0},
            None,
        ),
        (
            {"zero_expires_means_never": False, "default_expires_in": 60},
            {"expires_in": 0},
            60,
        ),
        ({}, {}, None),
    ],
)
def test_expiry_fields(
    make_client: Any,
    mock: Any,
    options: dict[str, Any],
    body: dict[str, Any],
    expected: int | None,
) -> None:
    client = make_client(provider_options=options)
    mock.post(TOKEN_URL, json={"access_token": ACCESS, **body})
    assert exchange(client).expires_in == expected


@pytest.mark.parametrize("unit", ["seconds", "milliseconds"])
def test_expires_at_field_is_an_epoch_used_without_a_lifetime(
    make_client: Any, mock: Any, unit: str
) -> None:
    client = make_client(
        provider_options={"expires_at_field": "expires_at", "expires_unit": unit}
    )
    at = timezone.now().timestamp() + 21600
    scale = 1000 if unit == "milliseconds" else 1
    mock.post(TOKEN_URL, json={"access_token": ACCESS, "expires_at": int(at * scale)})
    token_set = exchange(client)
    assert 21590 <= token_set.expires_in <= 21600
    stored = store_token_set(client, token_set)
    assert abs((stored.expires_at.timestamp()) - at) < 10


def test_zero_means_never_is_stored_without_expiry(make_client: Any, mock: Any) -> None:
    client = make_client()
    mock.post(TOKEN_URL, json={"access_token": ACCESS, "expires_in": 0})
    stored = store_token_set(client, exchange(client))
    assert stored.expires_at is None


def test_refresh_token_expires_in_field_is_stored(
    make_client: Any, make_token: Any, mock: Any
) -> None:
    client = make_client(
        provider_options={
            "refresh_token_expires_in_field": "x_refresh_token_expires_in"
        }
    )
    mock.post(
        TOKEN_URL,
        json={
            **TOKEN,
            "refresh_token": "rt-1-aaaaaaaa",
            "x_refresh_token_expires_in": 8640000,
        },
    )
    before = timezone.now()
    stored = store_token_set(client, exchange(client))
    stored.refresh_from_db()
    expected = before + datetime.timedelta(seconds=8640000)
    assert abs((stored.refresh_token_expires_at - expected).total_seconds()) < 10
    # A refresh that rotates the refresh token without a lifetime forgets the date;
    # one that keeps it keeps the date.
    mock.replace(responses.POST, TOKEN_URL, json=TOKEN)
    refresh_access_token("acme")
    stored.refresh_from_db()
    assert stored.refresh_token_expires_at is not None
    mock.replace(
        responses.POST, TOKEN_URL, json={**TOKEN, "refresh_token": "rt-2-bbbbbbbb"}
    )
    refresh_access_token("acme")
    stored.refresh_from_db()
    assert stored.refresh_token_expires_at is None


def test_default_refresh_token_lifetime_field(make_client: Any, mock: Any) -> None:
    client = make_client()
    mock.post(TOKEN_URL, json={**TOKEN, "refresh_token_expires_in": 600})
    assert exchange(client).refresh_token_expires_in == 600


def test_token_values_are_kept_and_returned(make_client: Any, mock: Any) -> None:
    client = make_client(
        provider_options={"token_values": ["instance_url", "team.id", "missing"]}
    )
    mock.post(
        TOKEN_URL,
        json={
            **TOKEN,
            "instance_url": "https://na1.example.test",
            "team": {"id": "T1"},
        },
    )
    store_token_set(client, exchange(client))
    assert get_token_values("acme") == {
        "instance_url": "https://na1.example.test",
        "team.id": "T1",
    }


# --- the client model and the import --------------------------------------------


def test_unknown_provider_option_is_refused_naming_the_known_ones(
    oauth_client: Any,
) -> None:
    oauth_client.provider_options = {"token_pth": "data"}
    with pytest.raises(ValidationError) as info:
        oauth_client.full_clean()
    message = " ".join(info.value.message_dict["provider_options"])
    assert "token_pth" in message
    assert "token_path" in message  # the known keys are listed


def test_wrongly_typed_provider_option_names_the_key(oauth_client: Any) -> None:
    oauth_client.provider_options = {"scope_on_refresh": "yes"}
    with pytest.raises(ValidationError) as info:
        oauth_client.full_clean()
    assert "scope_on_refresh must be true or false" in str(info.value)


def test_blank_endpoints_resolve_from_the_profile_or_are_refused(
    make_client: Any, use_profile: Any
) -> None:
    @use_profile
    class Known(ProviderProfile):
        key = "test-known"
        authorization_endpoint = "https://known.example.test/authorize"
        token_endpoint = "https://known.example.test/token"

    client = make_client(
        provider="test-known", authorization_endpoint="", token_endpoint=""
    )
    client.full_clean()
    assert configure(client).token_endpoint == "https://known.example.test/token"
    client.provider = "generic"
    with pytest.raises(ValidationError) as info:
        client.full_clean()
    assert "has no token endpoint" in str(info.value.message_dict["token_endpoint"])
    with pytest.raises(ConfigurationError):
        configure(client)


def test_import_with_a_provider_and_no_endpoints_and_provider_options(
    db: Any, use_profile: Any
) -> None:
    @use_profile
    class Known(ProviderProfile):
        key = "test-import"
        authorization_endpoint = "https://known.example.test/authorize"
        token_endpoint = "https://known.example.test/token"
        token_auth_method = "client_secret_post"
        use_pkce = False

    entry = {
        "name": "imported",
        "provider": "test-import",
        "client_id": "id",
        "client_secret": CLIENT_SECRET,
        "provider_options": {"scope_separator": ","},
    }
    outcome = import_clients([entry])
    assert outcome.created == ["imported"]
    config = configure(registry_client("imported"))
    assert config.token_endpoint == "https://known.example.test/token"
    assert config.token_auth_method == "client_secret_post"
    assert config.use_pkce is False
    assert config.options.scope_separator == ","

    with pytest.raises(ImportFailed) as info:
        import_clients([{**entry, "provider_options": {"nope": 1}}])
    assert "provider_options" in str(info.value)
    assert "nope" in str(info.value)
    with pytest.raises(ImportFailed) as info:
        import_clients([{**entry, "name": "bare", "provider": "generic"}])
    assert "has no token endpoint" in str(info.value)


def registry_client(name: str) -> Any:
    from oauth2_integrator.models import OAuth2Client

    return OAuth2Client.objects.get(name=name)


def test_use_pkce_false_sends_no_challenge(
    operator_client: Any, start_login: Any, make_client: Any
) -> None:
    make_client(use_pkce=False)
    params = start_login(operator_client)
    assert "code_challenge" not in params
    assert AuthorizationRequest.objects.get().code_verifier == ""


def test_hot_path_never_configures(
    oauth_client: Any,
    make_token: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_assert_num_queries: Any,
) -> None:
    from oauth2_integrator import get_access_token, providers
    from oauth2_integrator.providers import config

    make_token(oauth_client)
    calls: list[str] = []

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        calls.append("resolved")
        raise ConfigurationError("the hot path resolved the client")

    monkeypatch.setattr(config, "configure", forbidden)
    monkeypatch.setattr(providers, "configure", forbidden)
    monkeypatch.setattr(registry, "get", forbidden)
    with django_assert_num_queries(1):
        assert get_access_token("acme")
    assert calls == []
    token = OAuth2Token.objects.get()
    token.expires_at = in_seconds(30)
    token.save()
    with pytest.raises(ConfigurationError):
        get_access_token("acme")  # a due refresh does resolve it
    assert calls


def test_url_values_that_move_the_token_server_retire_its_tokens(
    make_client: Any, make_token: Any, tenant_profile: Any
) -> None:
    client = make_client(
        provider="test-tenant",
        authorization_endpoint="",
        token_endpoint="",
        provider_options={"url_values": {"region": "eu"}},
    )
    token = make_token(client)
    client.provider_options = {"url_values": {"region": "eu", "tenant": "contoso"}}
    client.save()  # same server, another path: the token stays
    token.refresh_from_db()
    assert token.status == TokenStatus.ACTIVE
    client.provider_options = {"url_values": {"region": "us"}}
    client.save()
    token.refresh_from_db()
    assert token.status == TokenStatus.REAUTHORIZATION_REQUIRED
    assert "https://eu.example.test" in token.last_error
    assert "https://us.example.test" in token.last_error


def test_bearer_token_types_names_what_the_provider_calls_bearer(
    make_client: Any, mock: Any
) -> None:
    """Slack calls its Bearer tokens "user" and "bot": only a profile or client that
    says so accepts those names; other types stay refused (RFC 6749 §7.1)."""
    mock.post(TOKEN_URL, json={**TOKEN, "token_type": "User"})
    plain = make_client()
    with pytest.raises(TokenEndpointError) as info:
        exchange(plain)
    assert info.value.error == "unsupported_token_type"

    named = make_client(
        name="named", provider_options={"bearer_token_types": ["user", "bot"]}
    )
    assert exchange(named).token_type == "Bearer"

    mock.replace(responses.POST, TOKEN_URL, json={**TOKEN, "token_type": "DPoP"})
    with pytest.raises(TokenEndpointError) as info:
        exchange(named)
    assert info.value.error == "unsupported_token_type"


def test_a_granted_scope_in_the_providers_separator_is_stored_with_spaces(
    make_client: Any, mock: Any
) -> None:
    client = make_client(provider_options={"scope_separator": ","})
    mock.post(TOKEN_URL, json={**TOKEN, "scope": "read,activity:write , profile"})
    assert exchange(client).scope == "read activity:write profile"
