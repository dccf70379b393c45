"""Saving the tokens of a completed login (``tokens.store_token_set``).

A login is how an operator repairs a client, so it must work whatever state the old
token row is in (its columns encrypted with a key that is gone), and two logins that
finish at the same moment must both end in one token row, never in HTTP 500.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from django.db import connection, connections
from django.test import override_settings

from oauth2_integrator import flow, get_access_token
from oauth2_integrator.models import AuthorizationRequest, OAuth2Token
from oauth2_integrator.tokens import store_token_set

from .conftest import TOKEN_URL

GONE_KEY = "q0Vn1cS3oQw9Yw2bQp8r0m7dJ0h5f7bT3k6t2Zl8x1E="

NEW_LOGIN = flow.TokenSet(
    access_token="new-login-access-token-IIII-7777",
    refresh_token="new-login-refresh-token-JJJJ-8888",
    expires_in=3600,
    scope="read write",
)


def test_a_login_repairs_a_token_that_no_key_can_decrypt(oauth_client, make_token):
    with override_settings(OAUTH2_INTEGRATOR={"ENCRYPTION_KEYS": [GONE_KEY]}):
        make_token(oauth_client, extra={"id_token": "old-id-token-KKKK-9999"})
    with pytest.raises(Exception, match="cannot be decrypted"):
        OAuth2Token.objects.get()

    token = store_token_set(oauth_client, NEW_LOGIN)

    fresh = OAuth2Token.objects.get(pk=token.pk)
    assert fresh.access_token == NEW_LOGIN.access_token
    assert fresh.refresh_token == NEW_LOGIN.refresh_token
    assert fresh.extra == {}
    assert get_access_token("acme") == NEW_LOGIN.access_token


def test_a_login_without_refresh_token_keeps_the_stored_one_unread(
    oauth_client, make_token
):
    """Google sends a refresh token on the first consent only: the stored one stays,
    and it is kept as stored (not decrypted and re-encrypted) by the login."""
    make_token(oauth_client, refresh_token="kept-refresh-token-LLLL-0000")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT refresh_token FROM {OAuth2Token._meta.db_table}")  # noqa: S608
        before = cursor.fetchone()[0]
    store_token_set(
        oauth_client, flow.TokenSet(access_token="second-login-access-MMMM-1111")
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT refresh_token FROM {OAuth2Token._meta.db_table}")  # noqa: S608
        assert cursor.fetchone()[0] == before
    assert OAuth2Token.objects.get().refresh_token == "kept-refresh-token-LLLL-0000"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_first_logins_at_once_end_in_one_token(oauth_client, monkeypatch):
    """Both logins find no token; without the client row lock both insert one and
    the second fails on the one-token-per-account constraint (HTTP 500)."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are only real on PostgreSQL")
    both_saving = threading.Barrier(2, timeout=1.5)
    original_save = OAuth2Token.save

    def save(self: OAuth2Token, *args: Any, **kwargs: Any) -> None:
        if self.pk is None:
            # With the lock the other login cannot get here: stop waiting for it.
            with contextlib.suppress(threading.BrokenBarrierError):
                both_saving.wait()
        original_save(self, *args, **kwargs)

    monkeypatch.setattr(OAuth2Token, "save", save)
    errors: list[BaseException] = []

    def login(number: int) -> None:
        try:
            store_token_set(
                oauth_client,
                flow.TokenSet(access_token=f"concurrent-login-{number}-NNNN-2222"),
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=login, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert OAuth2Token.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_callback_commits_its_steps_under_atomic_requests(
    operator_client, oauth_client, token_endpoint, start_login, settings
):
    """With ATOMIC_REQUESTS the whole callback would be one transaction: the pending
    login's "used" mark would stay invisible (and its row locked) during the code
    exchange. The callback opts out, so each step commits on its own."""
    if connection.vendor != "postgresql":
        pytest.skip("needs a second connection that sees only committed rows")
    settings.DATABASES["default"]["ATOMIC_REQUESTS"] = True
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    seen_from_elsewhere: list[object] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        def look() -> None:
            seen_from_elsewhere.extend(
                AuthorizationRequest.objects.values_list("used_at", flat=True)
            )
            connections.close_all()

        reader = threading.Thread(target=look)
        reader.start()
        reader.join(5)
        body = '{"access_token": "callback-access-token-OOOO-3333", "token_type": "Bearer"}'
        return 200, {"Content-Type": "application/json"}, body

    token_endpoint.add_callback("POST", TOKEN_URL, callback=answer)
    try:
        query = start_login(operator_client)
        response = operator_client.get(
            "/oauth2/acme/callback/", {"state": query["state"], "code": "the-code-PPPP"}
        )
    finally:
        connection.settings_dict["ATOMIC_REQUESTS"] = False
    assert response.status_code == 302
    assert len(seen_from_elsewhere) == 1
    assert seen_from_elsewhere[0] is not None
