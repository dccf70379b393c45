"""The whole flow against a real django-oauth-toolkit server over real HTTP.

login -> consent -> callback -> token -> use -> refresh -> rotation, and what a
real server does to replays: a used code, a rotated refresh token, a callback
that comes twice. The provider is the example project's demo provider (DOT 3.x:
PKCE required, refresh tokens rotated with reuse protection, RFC 9207 ``iss``).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import logging
from collections.abc import Callable
from typing import Any

import pytest
import requests
from django.db import connection
from django.test import Client
from django.utils import timezone

from oauth2_integrator import (
    AuthorizationRequired,
    TokenEndpointError,
    flow,
    get_access_token,
    refresh_access_token,
)
from oauth2_integrator.models import (
    AuthorizationRequest,
    OAuth2Client,
    OAuth2Token,
    TokenStatus,
)

from .conftest import CLIENT_NAME, Login, Provider

pytestmark = pytest.mark.e2e

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def stored_token() -> OAuth2Token:
    return OAuth2Token.objects.get(client__name=CLIENT_NAME, account="")


def snapshot(token: OAuth2Token) -> dict[str, Any]:
    """Every stored field, read afresh: proof that a failure changed nothing."""
    fresh = OAuth2Token.objects.get(pk=token.pk)
    return {
        f.attname: getattr(fresh, f.attname) for f in OAuth2Token._meta.concrete_fields
    }


def raw_rows(model: Any) -> str:
    """The table as the database holds it, bypassing the encrypted fields."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {model._meta.db_table}")  # noqa: S608
        return repr(cursor.fetchall())


def api_me(provider: Provider, access_token: str) -> requests.Response:
    """A resource protected by the provider's tokens (scope ``read``)."""
    return requests.get(
        provider.server.url("api/me"),
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )


@pytest.mark.parametrize("auth_method", AUTH_METHODS)
def test_login_consent_callback_stores_a_working_token(
    auth_method: str,
    provider: Provider,
    make_dot_client: Callable[..., OAuth2Client],
    run_login: Callable[..., Login],
    operator_client: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="oauth2_integrator")
    client = make_dot_client(token_auth_method=auth_method)

    login = run_login(operator_client)
    sent = login.authorize_params
    assert sent["response_type"] == "code"
    assert sent["client_id"] == provider.application.client_id
    assert sent["redirect_uri"] == f"http://testserver/oauth2/{CLIENT_NAME}/callback/"
    assert sent["scope"] == "read write"
    back = login.callback_params
    pending = AuthorizationRequest.objects.get(
        state_hash=flow.hash_state(back["state"])
    )
    # The challenge sent is S256 of the verifier kept for the callback (RFC 7636
    # §4.2), computed here without the code under test.
    expected = base64.urlsafe_b64encode(
        hashlib.sha256(pending.code_verifier.encode("ascii")).digest()
    )
    assert sent["code_challenge_method"] == "S256"
    assert sent["code_challenge"] == expected.rstrip(b"=").decode()
    assert back["code"]

    done = operator_client.get(login.callback_path)
    assert done.status_code == 302
    assert (
        done["Location"] == f"/admin/oauth2_integrator/oauth2client/{client.pk}/change/"
    )

    token = stored_token()
    assert token.status == TokenStatus.ACTIVE
    assert token.token_type == "Bearer"
    assert token.scope == "read write"
    assert token.refresh_token
    assert token.expires_at is not None
    remaining = (token.expires_at - timezone.now()).total_seconds()
    assert 3500 < remaining <= 3600  # the server's ACCESS_TOKEN_EXPIRE_SECONDS

    # The token works at the provider, and host code gets it by name.
    assert get_access_token(CLIENT_NAME) == token.access_token
    info = provider.server.introspect(provider.application, token.access_token)
    assert info["active"] is True
    assert info["client_id"] == provider.application.client_id
    assert info["username"] == provider.resource_owner
    assert set(info["scope"].split()) == {"read", "write"}
    me = api_me(provider, token.access_token)
    assert me.status_code == 200
    assert me.json() == {"username": provider.resource_owner}

    # Nothing secret in clear: not in the database, not in the log.
    pending.refresh_from_db()
    assert pending.used_at is not None
    secrets_seen = {
        "access token": token.access_token,
        "refresh token": token.refresh_token,
        "code": back["code"],
        "state": back["state"],
        "client secret": provider.application.client_secret,
        "code verifier": pending.code_verifier,
    }
    raw = (
        raw_rows(OAuth2Token) + raw_rows(OAuth2Client) + raw_rows(AuthorizationRequest)
    )
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "is authorized" in log
    for label, value in secrets_seen.items():
        assert value
        assert value not in raw, f"{label} stored in clear"
        assert value not in log, f"{label} logged"


@pytest.mark.parametrize("auth_method", AUTH_METHODS)
def test_refresh_rotates_and_the_old_refresh_token_is_dead(
    auth_method: str,
    provider: Provider,
    make_dot_client: Callable[..., OAuth2Client],
    connect: Callable[[], Login],
) -> None:
    client = make_dot_client(token_auth_method=auth_method)
    connect()
    before = stored_token()

    new_access = refresh_access_token(CLIENT_NAME)

    after = stored_token()
    assert new_access == after.access_token != before.access_token
    assert (
        after.refresh_token and after.refresh_token != before.refresh_token
    )  # rotated
    assert after.refreshed_at is not None
    assert after.status == TokenStatus.ACTIVE
    assert (
        provider.server.introspect(provider.application, new_access)["active"] is True
    )
    assert api_me(provider, new_access).status_code == 200
    # Rotation retired the old pair at the provider.
    assert provider.server.introspect(provider.application, before.access_token) == {
        "active": False
    }

    # The old refresh token is refused by the real server (RFC 6749 §10.4) ...
    with pytest.raises(TokenEndpointError) as refused:
        flow.refresh(client, refresh_token=before.refresh_token)
    assert refused.value.error == "invalid_grant"
    assert refused.value.status == 400
    assert before.refresh_token not in str(refused.value)

    # ... and, with DOT's reuse protection, that replay revoked the whole family:
    # the stored (rotated) refresh token now fails with invalid_grant too, which
    # marks the token for re-authorization instead of deleting it.
    with pytest.raises(AuthorizationRequired) as needs_login:
        refresh_access_token(CLIENT_NAME)
    assert needs_login.value.client == CLIENT_NAME
    kept = stored_token()
    assert kept.pk == after.pk
    assert kept.status == TokenStatus.REAUTHORIZATION_REQUIRED
    assert kept.access_token == after.access_token
    assert kept.refresh_token == after.refresh_token
    assert "invalid_grant" in kept.last_error
    assert after.refresh_token not in kept.last_error


def test_refresh_with_a_revoked_refresh_token_needs_reauthorization(
    provider: Provider,
    make_dot_client: Callable[..., OAuth2Client],
    connect: Callable[[], Login],
) -> None:
    make_dot_client()
    connect()
    token = stored_token()
    # The provider side revokes the grant (RFC 7009), e.g. the user disconnected us.
    provider.server.revoke(provider.application, token.refresh_token, "refresh_token")

    with pytest.raises(AuthorizationRequired) as needs_login:
        refresh_access_token(CLIENT_NAME)

    assert needs_login.value.error == "invalid_grant"
    assert "re-authorize" in str(needs_login.value)
    kept = stored_token()
    assert kept.pk == token.pk  # kept for inspection, not deleted
    assert kept.status == TokenStatus.REAUTHORIZATION_REQUIRED
    assert kept.refresh_token == token.refresh_token
    assert kept.access_token == token.access_token
    assert kept.last_error_at is not None
    with pytest.raises(AuthorizationRequired):
        get_access_token(CLIENT_NAME)

    # Re-authorizing brings the client back.
    connect()
    again = stored_token()
    assert again.pk == token.pk
    assert again.status == TokenStatus.ACTIVE
    assert again.refresh_token != token.refresh_token
    assert get_access_token(CLIENT_NAME) == again.access_token


def test_get_access_token_refreshes_a_token_about_to_expire(
    provider: Provider,
    make_dot_client: Callable[..., OAuth2Client],
    connect: Callable[[], Login],
) -> None:
    make_dot_client()
    connect()
    old = stored_token()
    # As if it had been obtained an hour ago and had 30 seconds left.
    now = timezone.now()
    OAuth2Token.objects.filter(pk=old.pk).update(
        obtained_at=now - datetime.timedelta(seconds=3570),
        expires_at=now + datetime.timedelta(seconds=30),
    )

    fresh = get_access_token(CLIENT_NAME)

    token = stored_token()
    assert fresh == token.access_token != old.access_token
    assert token.refresh_token != old.refresh_token
    assert token.expires_at is not None
    assert token.expires_at > timezone.now() + datetime.timedelta(seconds=3500)
    assert provider.server.introspect(provider.application, fresh)["active"] is True
    # Fresh enough now: no second refresh.
    assert get_access_token(CLIENT_NAME) == fresh


def test_a_replayed_callback_and_a_replayed_code_are_rejected(
    make_dot_client: Callable[..., OAuth2Client],
    connect: Callable[[], Login],
    operator_client: Client,
) -> None:
    client = make_dot_client()
    login = connect()
    token = stored_token()
    before = snapshot(token)

    # Our side: the same callback (code + state) a second time is refused.
    replay = operator_client.get(login.callback_path)
    assert replay.status_code == 400
    assert "already used" in replay.content.decode()
    assert snapshot(token) == before

    # The provider's side: the code itself cannot be spent twice (RFC 6749 §4.1.2),
    # even with the right verifier and redirect URI.
    params = login.callback_params
    pending = AuthorizationRequest.objects.get(
        state_hash=flow.hash_state(params["state"])
    )
    with pytest.raises(TokenEndpointError) as refused:
        flow.exchange_code(
            client,
            code=params["code"],
            redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier,
        )
    assert refused.value.error == "invalid_grant"
    assert params["code"] not in str(refused.value)
    assert snapshot(token) == before
    assert get_access_token(CLIENT_NAME) == token.access_token


def test_pkce_is_required_by_the_server(
    make_dot_client: Callable[..., OAuth2Client],
    run_login: Callable[..., Login],
    operator_client: Client,
) -> None:
    make_dot_client(use_pkce=False)
    login = run_login(operator_client)
    assert "code_challenge" not in login.authorize_params
    assert login.callback_params["error"] == "invalid_request"

    answer = operator_client.get(login.callback_path)

    assert answer.status_code == 400
    page = answer.content.decode()
    assert "invalid_request" in page
    assert "challenge" in page.lower()  # the provider's own words
    assert not OAuth2Token.objects.exists()


def test_a_wrong_code_verifier_is_refused(
    make_dot_client: Callable[..., OAuth2Client],
    run_login: Callable[..., Login],
    operator_client: Client,
) -> None:
    make_dot_client()
    login = run_login(operator_client)
    pending = AuthorizationRequest.objects.get(
        state_hash=flow.hash_state(login.callback_params["state"])
    )
    pending.code_verifier = flow.new_code_verifier()  # not the one challenged
    pending.save()

    answer = operator_client.get(login.callback_path)

    assert answer.status_code == 400
    assert "invalid_grant" in answer.content.decode()
    assert not OAuth2Token.objects.exists()


def test_denied_consent_keeps_the_working_token(
    make_dot_client: Callable[..., OAuth2Client],
    connect: Callable[[], Login],
    run_login: Callable[..., Login],
    operator_client: Client,
) -> None:
    make_dot_client()
    connect()
    token = stored_token()
    before = snapshot(token)

    login = run_login(operator_client, allow=False)
    assert login.callback_params["error"] == "access_denied"
    answer = operator_client.get(login.callback_path)

    assert answer.status_code == 400
    assert "denied" in answer.content.decode()
    assert snapshot(token) == before
    assert get_access_token(CLIENT_NAME) == token.access_token


def test_an_answer_from_another_issuer_is_refused(
    make_dot_client: Callable[..., OAuth2Client],
    run_login: Callable[..., Login],
    operator_client: Client,
) -> None:
    make_dot_client(issuer="https://other-issuer.example.test")
    login = run_login(operator_client)

    answer = operator_client.get(login.callback_path)

    assert answer.status_code == 400
    assert "RFC 9207" in answer.content.decode()
    assert not OAuth2Token.objects.exists()


@pytest.mark.parametrize(
    ("param", "changed_to", "says"),
    [
        ("iss", "https://attacker.example.test", "RFC 9207"),
        ("state", "a-state-this-site-never-made-0123456789", "unknown state"),
    ],
)
def test_the_callback_refuses_a_real_answer_with_a_changed_iss_or_state(
    param: str,
    changed_to: str,
    says: str,
    make_dot_client: Callable[..., OAuth2Client],
    run_login: Callable[..., Login],
    operator_client: Client,
) -> None:
    """The real provider's answer, one parameter changed: the callback's own checks.

    DOT sends ``iss`` and echoes ``state``; what counts is that the callback compares
    them with what it registered and stored, and spends nothing when they differ.
    """
    client = make_dot_client()
    login = run_login(operator_client)
    params = login.callback_params
    assert params[param] != changed_to
    pending = AuthorizationRequest.objects.get(
        state_hash=flow.hash_state(params["state"])
    )
    tampered = {**params, param: changed_to}

    answer = operator_client.get(f"/oauth2/{CLIENT_NAME}/callback/", tampered)

    assert answer.status_code == 400
    assert says in answer.content.decode()
    assert not OAuth2Token.objects.exists()
    # The code never reached the token endpoint: it is still unspent at the provider.
    token_set = flow.exchange_code(
        client,
        code=params["code"],
        redirect_uri=pending.redirect_uri,
        code_verifier=pending.code_verifier,
    )
    assert token_set.access_token


def test_a_wrong_client_secret_is_a_clear_400(
    provider: Provider,
    make_dot_client: Callable[..., OAuth2Client],
    run_login: Callable[..., Login],
    operator_client: Client,
) -> None:
    wrong = "not-the-secret-" + provider.application.client_secret[:8]
    make_dot_client(client_secret=wrong)
    login = run_login(operator_client)

    answer = operator_client.get(login.callback_path)

    assert answer.status_code == 400
    page = answer.content.decode()
    assert "invalid_client" in page
    assert wrong not in page
    assert not OAuth2Token.objects.exists()


def test_the_middleware_brings_the_operator_back_in_one_click(
    make_dot_client: Callable[..., OAuth2Client],
    provider: Provider,
    operator_client: Client,
) -> None:
    """A host view needs the token: authorize, consent, and land back on that view."""
    make_dot_client()
    page = operator_client.get(f"/needs-token/{CLIENT_NAME}/")
    assert page.status_code == 302
    login_page = page["Location"]
    assert login_page.startswith(f"/oauth2/{CLIENT_NAME}/login/?next=")

    confirm = operator_client.get(login_page)
    assert confirm.status_code == 200
    start = operator_client.post(login_page, {"next": f"/needs-token/{CLIENT_NAME}/"})
    assert start.status_code == 302
    callback_url = provider.server.consent(provider.session, start["Location"])
    login = Login(authorize_url=start["Location"], callback_url=callback_url)
    done = operator_client.get(login.callback_path)
    assert done.status_code == 302
    assert done["Location"] == f"/needs-token/{CLIENT_NAME}/"

    again = operator_client.get(done["Location"])
    assert again.status_code == 200
    assert again.content.decode() == f"token length {len(stored_token().access_token)}"
