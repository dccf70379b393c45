"""OpenID Connect: discovery, the key set, ID token validation and the ``oidc`` profile.

Keys are generated here (cryptography RSA); discovery documents and key sets are
served by ``responses`` (no internet). What each check protects is named in its
test: OpenID Connect Discovery 1.0 §4 and Core 1.0 §3.1.3.7.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache

from oauth2_integrator import oidc, providers
from oauth2_integrator.exceptions import (
    ConfigurationError,
    TokenEndpointError,
    TransientTokenEndpointError,
)
from oauth2_integrator.flow import TokenSet
from oauth2_integrator.models import OAuth2Client

ISSUER = "https://id.example.test"
CLIENT_ID = "acme-client-id"
NONCE = "n-0S6_WzA2Mj"
DISCOVERY = f"{ISSUER}/.well-known/openid-configuration"
RFC8414 = f"{ISSUER}/.well-known/oauth-authorization-server"
JWKS = f"{ISSUER}/jwks"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY = _key()
OTHER_KEY = _key()


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    public: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(
        key.public_key(), as_dict=True
    )
    return {**public, "kid": kid, "use": "sig", "alg": "RS256"}


def document(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "userinfo_endpoint": f"{ISSUER}/userinfo",
        "jwks_uri": JWKS,
        "revocation_endpoint": f"{ISSUER}/revoke",
        "id_token_signing_alg_values_supported": ["RS256", "HS256"],
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def id_token(
    *,
    key: Any = KEY,
    kid: str | None = "k1",
    algorithm: str = "RS256",
    **claims: Any,
) -> str:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "sub": "24400320",
        "aud": CLIENT_ID,
        "exp": now + 300,
        "iat": now,
        "nonce": NONCE,
        "email": "alice@example.com",
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def idp() -> Iterator[responses.RequestsMock]:
    """An OpenID provider: discovery, RFC 8414 metadata (absent) and one key."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(DISCOVERY, json=document())
        mock.get(RFC8414, status=404)
        mock.get(JWKS, json={"keys": [jwk(KEY, "k1")]})
        yield mock


def calls(mock: responses.RequestsMock, url: str) -> int:
    return sum(1 for call in mock.calls if call.request.url == url)


def validate(token: Any, *, nonce: str | None = NONCE) -> dict[str, Any]:
    return oidc.validate_id_token(
        token, issuer=ISSUER, client_id=CLIENT_ID, nonce=nonce, client="acme"
    )


def rejected(token: Any, *, nonce: str | None = NONCE) -> str:
    with pytest.raises(TokenEndpointError) as caught:
        validate(token, nonce=nonce)
    assert caught.value.error == "invalid_id_token"
    message = str(caught.value)
    assert message.startswith("The ID token from id.example.test was rejected: ")
    assert "Nothing was stored" in message
    if isinstance(token, str) and token:
        assert token not in message
    return message


# --- discovery ---------------------------------------------------------------------


@pytest.fixture
def oidc_client(make_client: Callable[..., OAuth2Client]) -> OAuth2Client:
    """A client of the oidc profile configured with only its issuer."""
    return make_client(
        provider="oidc",
        issuer=ISSUER,
        authorization_endpoint="",
        token_endpoint="",
        scope="",
    )


def test_an_issuer_alone_fills_the_endpoints_from_discovery(
    idp: responses.RequestsMock, oidc_client: OAuth2Client
) -> None:
    config = providers.configure(oidc_client)
    assert config.authorization_endpoint == f"{ISSUER}/authorize"
    assert config.token_endpoint == f"{ISSUER}/token"
    assert config.refresh_endpoint == f"{ISSUER}/token"
    assert config.revocation_endpoint == f"{ISSUER}/revoke"
    assert config.userinfo_endpoint == f"{ISSUER}/userinfo"
    # OpenID Connect Core §3.1.2.1: openid always; PKCE always.
    assert config.scopes == ["openid", "email", "profile"]
    assert config.use_pkce is True


def test_endpoints_the_operator_set_win_over_discovery(
    idp: responses.RequestsMock, oidc_client: OAuth2Client
) -> None:
    oidc_client.token_endpoint = "https://proxy.example.test/token"
    oidc_client.revocation_endpoint = "https://proxy.example.test/revoke"
    oidc_client.scope = "email"
    oidc_client.use_pkce = False
    config = providers.configure(oidc_client)
    assert config.token_endpoint == "https://proxy.example.test/token"
    assert config.refresh_endpoint == "https://proxy.example.test/token"
    assert config.revocation_endpoint == "https://proxy.example.test/revoke"
    assert config.authorization_endpoint == f"{ISSUER}/authorize"
    assert config.scopes == ["email", "openid"]
    assert config.use_pkce is True


def test_a_revocation_endpoint_missing_from_discovery_comes_from_rfc8414(
    oidc_client: OAuth2Client,
) -> None:
    with responses.RequestsMock() as mock:
        mock.get(DISCOVERY, json=document(revocation_endpoint=None))
        mock.get(
            RFC8414, json={"issuer": ISSUER, "revocation_endpoint": f"{ISSUER}/rv"}
        )
        assert providers.configure(oidc_client).revocation_endpoint == f"{ISSUER}/rv"


def test_rfc8414_metadata_of_another_issuer_is_not_used(
    oidc_client: OAuth2Client,
) -> None:
    with responses.RequestsMock() as mock:
        mock.get(DISCOVERY, json=document(revocation_endpoint=None))
        mock.get(
            RFC8414,
            json={"issuer": "https://evil.test", "revocation_endpoint": f"{ISSUER}/rv"},
        )
        assert providers.configure(oidc_client).revocation_endpoint == ""


def test_rfc8414_url_puts_the_well_known_path_before_the_issuer_path() -> None:
    assert (
        oidc.authorization_server_metadata_url("https://h.test/realms/x")
        == "https://h.test/.well-known/oauth-authorization-server/realms/x"
    )
    assert (
        oidc.discovery_url("https://h.test/realms/x/")
        == "https://h.test/realms/x/.well-known/openid-configuration"
    )


@pytest.mark.parametrize("found", [f"{ISSUER}/", "https://evil.example.test", None, 42])
def test_a_discovery_document_of_another_issuer_is_refused(
    oidc_client: OAuth2Client, found: Any
) -> None:
    with responses.RequestsMock() as mock:
        mock.get(DISCOVERY, json=document(issuer=found))
        with pytest.raises(ConfigurationError) as caught:
            providers.configure(oidc_client)
    message = str(caught.value)
    assert "must be identical" in message
    assert f"not {ISSUER!r}" in message


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"token_endpoint": None}, "it has no token_endpoint"),
        ({"jwks_uri": None}, "it has no jwks_uri"),
        (
            {"token_endpoint": "http://id.example.test/token"},
            "its token_endpoint uses plain http:// outside loopback",
        ),
        (
            {"authorization_endpoint": "https://u:p@id.example.test/a"},
            "its authorization_endpoint has a user name or password in it",
        ),
        ({"token_endpoint": ["x"]}, "its token_endpoint is not a URL"),
    ],
)
def test_a_discovery_document_with_unusable_endpoints_is_refused(
    oidc_client: OAuth2Client, changes: dict[str, Any], why: str
) -> None:
    with responses.RequestsMock() as mock:
        mock.get(DISCOVERY, json=document(**changes))
        with pytest.raises(ConfigurationError, match="cannot be used") as caught:
            providers.configure(oidc_client)
    assert why in str(caught.value)
    assert "u:p" not in str(caught.value)


def test_an_oidc_client_without_issuer_is_told_to_enter_one(
    oidc_client: OAuth2Client,
) -> None:
    oidc_client.issuer = ""
    with pytest.raises(ConfigurationError, match="needs its issuer URL"):
        providers.configure(oidc_client)


def test_discovery_is_cached(
    idp: responses.RequestsMock, oidc_client: OAuth2Client, monkeypatch: Any
) -> None:
    providers.configure(oidc_client)
    providers.configure(oidc_client)
    assert calls(idp, DISCOVERY) == 1
    later = time.time() + oidc.DISCOVERY_CACHE_SECONDS + 1
    monkeypatch.setattr(oidc.time, "time", lambda: later)
    providers.configure(oidc_client)
    assert calls(idp, DISCOVERY) == 2


def test_an_aged_copy_is_used_while_discovery_fails(
    oidc_client: OAuth2Client, monkeypatch: Any
) -> None:
    with responses.RequestsMock() as mock:
        mock.get(DISCOVERY, json=document())
        providers.configure(oidc_client)
    later = time.time() + oidc.DISCOVERY_CACHE_SECONDS + 1
    monkeypatch.setattr(oidc.time, "time", lambda: later)
    with responses.RequestsMock() as mock:
        mock.get(DISCOVERY, status=503)
        assert providers.configure(oidc_client).token_endpoint == f"{ISSUER}/token"
        assert calls(mock, DISCOVERY) == 1


def test_discovery_that_fails_without_a_copy_says_so(
    oidc_client: OAuth2Client,
) -> None:
    with responses.RequestsMock() as mock:
        mock.get(DISCOVERY, status=503)
        with pytest.raises(TransientTokenEndpointError, match="HTTP 503"):
            providers.configure(oidc_client)
        mock.replace(responses.GET, DISCOVERY, body="<html>", status=200)
        with pytest.raises(ConfigurationError, match="not JSON"):
            providers.configure(oidc_client)


# --- the ID token ------------------------------------------------------------------


def test_a_good_id_token_gives_its_claims(idp: responses.RequestsMock) -> None:
    claims = validate(id_token())
    assert claims["sub"] == "24400320"
    assert claims["email"] == "alice@example.com"


def test_the_key_set_is_cached(idp: responses.RequestsMock) -> None:
    validate(id_token())
    validate(id_token())
    assert calls(idp, JWKS) == 1
    assert calls(idp, DISCOVERY) == 1


def test_a_signature_by_another_key_is_rejected(idp: responses.RequestsMock) -> None:
    message = rejected(id_token(key=OTHER_KEY))
    assert "signature does not match" in message


def test_a_tampered_payload_is_rejected(idp: responses.RequestsMock) -> None:
    header, payload, signature = id_token().split(".")
    forged = id_token(key=OTHER_KEY, email="mallory@example.com").split(".")[1]
    assert "signature does not match" in rejected(f"{header}.{forged}.{signature}")
    assert payload != forged


def test_an_unknown_kid_fetches_the_key_set_once_more(
    idp: responses.RequestsMock,
) -> None:
    validate(id_token())  # caches the set with k1 only
    idp.replace(
        responses.GET, JWKS, json={"keys": [jwk(KEY, "k1"), jwk(OTHER_KEY, "k2")]}
    )
    assert validate(id_token(key=OTHER_KEY, kid="k2"))["sub"] == "24400320"
    assert calls(idp, JWKS) == 2


def test_a_kid_still_unknown_after_one_refetch_is_rejected(
    idp: responses.RequestsMock,
) -> None:
    validate(id_token())
    message = rejected(id_token(key=OTHER_KEY, kid="k9"))
    assert "key 'k9'" in message
    assert "does not hold" in message
    assert calls(idp, JWKS) == 2


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"iss": "https://evil.example.test"}, "issued by another issuer"),
        ({"aud": "someone-else"}, "aud does not name this client's ID"),
        ({"aud": [CLIENT_ID, "x"], "azp": "x"}, "azp does not name"),
        ({"azp": "someone-else"}, "azp does not name"),
        ({"aud": [CLIENT_ID, "x"]}, "no authorized party (azp)"),
        ({"exp": int(time.time()) - 3600}, "it has expired (exp)"),
        ({"iat": int(time.time()) + 3600}, "dated in the future"),
        ({"nonce": "another-nonce"}, "nonce does not match"),
        ({"nonce": None}, "nonce does not match"),
        ({"sub": None}, "lacks the sub claim"),
        ({"exp": None}, "lacks the exp claim"),
    ],
)
def test_claims_that_do_not_fit_are_rejected(
    idp: responses.RequestsMock, claims: dict[str, Any], why: str
) -> None:
    assert why in rejected(id_token(**claims))


def test_several_audiences_with_our_azp_are_accepted(
    idp: responses.RequestsMock,
) -> None:
    assert validate(id_token(aud=[CLIENT_ID, "x"], azp=CLIENT_ID))["azp"] == CLIENT_ID


def test_clock_skew_within_the_leeway_is_accepted(
    idp: responses.RequestsMock,
) -> None:
    now = int(time.time())
    validate(id_token(exp=now - 60, iat=now + 60))


def test_an_unsigned_id_token_is_rejected(idp: responses.RequestsMock) -> None:
    unsigned = jwt.encode(
        {"iss": ISSUER, "sub": "1", "aud": CLIENT_ID, "nonce": NONCE},
        None,
        algorithm="none",
    )
    assert "not signed (alg none)" in rejected(unsigned)


def test_hs256_keyed_with_the_public_key_is_rejected(
    idp: responses.RequestsMock,
) -> None:
    # The classic forgery: the provider's public key used as an HMAC secret.
    public_pem = KEY.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    forged = _hs256({"alg": "HS256", "kid": "k1", "typ": "JWT"}, public_pem)
    assert "shared-secret algorithm" in rejected(forged)


def _hs256(header: dict[str, str], secret: bytes) -> str:
    """HS256 signed by hand: PyJWT itself refuses a PEM key as an HMAC secret."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "sub": "1",
        "aud": CLIENT_ID,
        "exp": now + 300,
        "iat": now,
        "nonce": NONCE,
    }
    signing_input = (
        f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_an_algorithm_the_provider_does_not_announce_is_rejected() -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(
            DISCOVERY, json=document(id_token_signing_alg_values_supported=["ES256"])
        )
        mock.get(RFC8414, status=404)
        mock.get(JWKS, json={"keys": [jwk(KEY, "k1")]})
        assert "does not announce" in rejected(id_token())
        assert calls(mock, JWKS) == 0


@pytest.mark.parametrize("token", ["", None, 7, "not-a-jwt", "a.b.c"])
def test_a_missing_or_malformed_id_token_is_rejected(
    idp: responses.RequestsMock, token: Any
) -> None:
    message = rejected(token)
    assert "no ID token" in message or "not a well-formed" in message


def test_a_rejection_makes_the_next_login_fetch_discovery_and_keys_anew(
    idp: responses.RequestsMock,
) -> None:
    validate(id_token())
    rejected(id_token(nonce="other"))
    validate(id_token())
    assert calls(idp, DISCOVERY) == 2
    assert calls(idp, JWKS) == 2


def test_a_key_set_that_cannot_be_fetched_is_a_transient_rejection() -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(DISCOVERY, json=document())
        mock.get(RFC8414, status=404)
        mock.get(JWKS, status=502)
        with pytest.raises(TransientTokenEndpointError, match="could not be fetched"):
            validate(id_token())


# --- the profile's hooks -----------------------------------------------------------


def token_set(token: Any) -> TokenSet:
    return TokenSet(access_token="at-" + "x" * 20, extra={"id_token": token})


def test_validate_token_set_checks_the_id_token_and_the_nonce(
    idp: responses.RequestsMock, oidc_client: OAuth2Client
) -> None:
    config = providers.configure(oidc_client)
    config.profile.validate_token_set(config, token_set(id_token()), nonce=NONCE)
    with pytest.raises(TokenEndpointError, match=r"ID token from .* was rejected"):
        config.profile.validate_token_set(
            config, token_set(id_token()), nonce="another"
        )
    with pytest.raises(TokenEndpointError, match="has no ID token"):
        config.profile.validate_token_set(config, token_set(None), nonce=NONCE)


@pytest.mark.parametrize(
    ("claims", "name"),
    [
        ({}, "alice@example.com"),
        ({"email": None, "preferred_username": "alice"}, "alice"),
        ({"email": None}, "24400320"),
        ({"email": "  "}, "24400320"),
    ],
)
def test_the_account_is_named_by_email_else_username_else_subject(
    idp: responses.RequestsMock,
    oidc_client: OAuth2Client,
    claims: dict[str, Any],
    name: str,
) -> None:
    config = providers.configure(oidc_client)
    assert config.profile.account_name(config, token_set(id_token(**claims))) == name


def test_an_id_token_that_does_not_validate_names_nobody(
    idp: responses.RequestsMock, oidc_client: OAuth2Client
) -> None:
    config = providers.configure(oidc_client)
    forged = token_set(id_token(key=OTHER_KEY, email="mallory@example.com"))
    assert config.profile.account_name(config, forged) == ""
    assert config.profile.account_name(config, token_set(None)) == ""


def test_a_provider_that_announces_rfc9207_iss_must_send_it(
    oidc_client: OAuth2Client,
) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(DISCOVERY, json=document())
        assert providers.configure(oidc_client).options.sends_iss is False
        cache.clear()
        mock.replace(
            responses.GET,
            DISCOVERY,
            json=document(authorization_response_iss_parameter_supported=True),
        )
        assert providers.configure(oidc_client).options.sends_iss is True


# --- the connected account in the admin and oauth2_status --------------------------


def test_status_names_the_connected_account(
    oauth_client: OAuth2Client,
    make_token: Callable[..., Any],
    operator_client: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from django.core.management import call_command

    from oauth2_integrator import status

    token = make_token(oauth_client, account_name="alice@example.com")
    assert status.describe(oauth_client).startswith(
        "Connected as alice@example.com, expires in "
    )
    page = operator_client.get(
        f"/admin/oauth2_integrator/oauth2client/{oauth_client.pk}/change/"
    )
    assert "Connected as alice@example.com" in page.content.decode()
    call_command("oauth2_status")
    assert "Connected as alice@example.com" in capsys.readouterr().out
    call_command("oauth2_status", "--json")
    (row,) = json.loads(capsys.readouterr().out)
    assert row["account_name"] == "alice@example.com"
    assert row["status"].startswith("Connected as alice@example.com")

    token.account_name = ""
    token.save(update_fields=["account_name"])
    assert status.describe(oauth_client).startswith("Connected, expires in ")
    call_command("oauth2_status", "--json")
    assert json.loads(capsys.readouterr().out)[0]["account_name"] == ""


def test_oauth2_import_clients_accepts_an_issuer_alone(
    db: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from django.core.management import CommandError, call_command

    entry = {
        "name": "idp",
        "provider": "oidc",
        "issuer": ISSUER,
        "client_id": CLIENT_ID,
        "client_secret": "import-secret-0123456789abcdef",
    }
    path = tmp_path / "clients.json"
    path.write_text(json.dumps([entry]))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(DISCOVERY, json=document())
        call_command("oauth2_import_clients", str(path))
        client = OAuth2Client.objects.get(name="idp")
        assert client.token_endpoint == ""  # resolved at use, from discovery
        assert providers.configure(client).token_endpoint == f"{ISSUER}/token"

    # An issuer whose discovery names another issuer is refused at import.
    cache.clear()
    path.write_text(json.dumps([{**entry, "name": "evil"}]))
    with responses.RequestsMock() as mock:
        mock.get(DISCOVERY, json=document(issuer="https://evil.example.test"))
        with pytest.raises(CommandError, match="must be identical"):
            call_command("oauth2_import_clients", str(path))
    assert not OAuth2Client.objects.filter(name="evil").exists()


@pytest.mark.parametrize(
    "issuer", ["http://id.example.test", "https://user:pw@id.example.test"]
)
def test_an_issuer_discovery_would_fetch_insecurely_is_refused(
    oidc_client: OAuth2Client, issuer: str
) -> None:
    oidc_client.issuer = issuer
    with responses.RequestsMock() as mock:  # nothing may be fetched
        with pytest.raises(ConfigurationError, match="must use https://") as caught:
            providers.configure(oidc_client)
        assert not mock.calls
    assert "pw" not in str(caught.value)


def test_saving_a_client_while_discovery_is_unreachable_is_allowed(
    operator_client: Any,
) -> None:
    """An outage at the identity provider must not lock operators out of editing a
    client (or adding one): the issuer is checked when it can be reached."""
    import requests

    from .test_admin import form_data

    client = OAuth2Client(
        name="idp",
        provider="oidc",
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret="admin-secret-0123456789abcdef",
        scope="openid",
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(DISCOVERY, body=requests.ConnectionError("down"))
        response = operator_client.post(
            "/admin/oauth2_integrator/oauth2client/add/",
            form_data(client, client_secret="admin-secret-0123456789abcdef"),
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert OAuth2Client.objects.get(name="idp").issuer == ISSUER

    # A reachable discovery document of another issuer is still refused.
    cache.clear()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(DISCOVERY, json=document(issuer="https://evil.example.test"))
        response = operator_client.post(
            "/admin/oauth2_integrator/oauth2client/add/",
            form_data(
                client,
                name="idp2",
                client_secret="admin-secret-0123456789abcdef",
            ),
        )
    assert response.status_code == 200
    assert "must be identical" in response.content.decode()
    assert not OAuth2Client.objects.filter(name="idp2").exists()


def test_the_admin_adds_a_client_with_only_an_issuer(operator_client: Any) -> None:
    from .test_admin import form_data

    client = OAuth2Client(
        name="idp",
        provider="oidc",
        issuer=ISSUER,
        client_id=CLIENT_ID,
        scope="openid",
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(DISCOVERY, json=document())
        response = operator_client.post(
            "/admin/oauth2_integrator/oauth2client/add/",
            form_data(client, client_secret="admin-secret-0123456789abcdef"),
        )
        assert response.status_code == 302, response.content.decode()[:2000]
        saved = OAuth2Client.objects.get(name="idp")
        assert (saved.authorization_endpoint, saved.token_endpoint) == ("", "")
        config = providers.configure(saved)
    assert config.authorization_endpoint == document()["authorization_endpoint"]
    assert config.token_endpoint == document()["token_endpoint"]
