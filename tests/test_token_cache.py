"""The valid-token path of ``get_access_token`` and the opt-in in-process cache
(issue #7, item 7): one query, one decryption, and a cache whose entries never
outlive ``TOKEN_CACHE_TTL``, the refresh margin, or what this process does to the
token."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
from django.utils import timezone

from oauth2_integrator import cache, crypto, get_access_token
from oauth2_integrator.flow import TokenSet
from oauth2_integrator.models import OAuth2Token, TokenStatus
from oauth2_integrator.tokens import refresh_access_token, store_token_set

from .conftest import STORED_ACCESS_TOKEN, TOKEN_URL, in_seconds


@pytest.fixture(autouse=True)
def _empty_cache() -> Any:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def cache_on(settings: Any) -> None:
    settings.OAUTH2_INTEGRATOR = {**settings.OAUTH2_INTEGRATOR, "TOKEN_CACHE_TTL": 60}


@pytest.fixture
def decrypted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The plain values crypto.decrypt handed out."""
    seen: list[str] = []
    real = crypto.decrypt

    def spy(ciphertext: str) -> str:
        plain = real(ciphertext)
        seen.append(plain)
        return plain

    monkeypatch.setattr(crypto, "decrypt", spy)
    return seen


# --- the warm path -------------------------------------------------------------------


def test_a_valid_token_costs_one_query_and_one_decryption(
    oauth_client, make_token, django_assert_num_queries, decrypted
):
    make_token(oauth_client, extra={"id_token": "an-id-token-value-0123456789"})
    with django_assert_num_queries(1):
        assert get_access_token("acme") == STORED_ACCESS_TOKEN
    # Neither the refresh token, the extras nor the client secret was opened.
    assert decrypted == [STORED_ACCESS_TOKEN]


def test_the_warm_path_query_is_narrow(
    oauth_client, make_token, django_assert_num_queries
):
    make_token(oauth_client)
    with django_assert_num_queries(1) as queries:
        get_access_token("acme")
    sql = queries.captured_queries[0]["sql"].lower()
    for column in ("refresh_token", "extra", "client_secret", "provider_values"):
        assert column not in sql


def test_the_warm_path_serves_each_account_its_own_token(oauth_client, make_token):
    make_token(oauth_client)
    make_token(oauth_client, account="second", access_token="second-access-token-99")
    assert get_access_token("acme") == STORED_ACCESS_TOKEN
    assert get_access_token("acme", account="second") == "second-access-token-99"


def test_a_token_due_for_refresh_takes_the_full_path(
    oauth_client, make_token, token_endpoint
):
    make_token(oauth_client, expires_at=in_seconds(120))
    token_endpoint.post(
        TOKEN_URL,
        json={"access_token": "refreshed-access-token-42", "expires_in": 3600},
    )
    assert get_access_token("acme") == "refreshed-access-token-42"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": TokenStatus.REAUTHORIZATION_REQUIRED}, "needs re-authorization"),
        ({"client_enabled": False}, "is disabled"),
    ],
)
def test_a_token_that_may_not_be_served_is_refused(
    oauth_client, make_token, change, message
):
    from oauth2_integrator import AuthorizationRequired

    token = make_token(oauth_client)
    if "status" in change:
        OAuth2Token.objects.filter(pk=token.pk).update(status=change["status"])
    else:
        type(oauth_client).objects.filter(pk=oauth_client.pk).update(enabled=False)
    with pytest.raises(AuthorizationRequired, match=message):
        get_access_token("acme")


# --- the cache -----------------------------------------------------------------------


def test_the_cache_is_off_by_default(
    oauth_client, make_token, django_assert_num_queries
):
    make_token(oauth_client)
    get_access_token("acme")
    with django_assert_num_queries(1):
        get_access_token("acme")
    assert not cache._entries


def test_a_cache_hit_reads_nothing(
    cache_on, oauth_client, make_token, django_assert_num_queries, decrypted
):
    make_token(oauth_client)
    get_access_token("acme")
    decrypted.clear()
    with django_assert_num_queries(0):
        assert get_access_token("acme") == STORED_ACCESS_TOKEN
    assert decrypted == []


def test_an_entry_lives_at_most_the_ttl(settings, oauth_client, make_token):
    settings.OAUTH2_INTEGRATOR = {**settings.OAUTH2_INTEGRATOR, "TOKEN_CACHE_TTL": 5}
    make_token(oauth_client, expires_at=in_seconds(86400))
    get_access_token("acme")
    _, deadline = cache._entries[("acme", "")]
    assert 0 < deadline - time.monotonic() <= 5


def test_an_entry_never_outlives_the_refresh_margin(cache_on, oauth_client, make_token):
    # Enters the 300 s margin in about 2 s: cached for at most that long.
    make_token(oauth_client, expires_at=in_seconds(302))
    get_access_token("acme")
    _, deadline = cache._entries[("acme", "")]
    assert 0 < deadline - time.monotonic() <= 2


def test_an_expired_entry_is_not_served(cache_on, oauth_client, make_token):
    make_token(oauth_client)
    cache._entries[("acme", "")] = ("stale-value", time.monotonic() - 1)
    assert get_access_token("acme") == STORED_ACCESS_TOKEN


def test_a_token_with_no_expiry_is_cached_for_the_ttl(
    cache_on, oauth_client, make_token
):
    make_token(oauth_client, expires_at=None)
    get_access_token("acme")
    _, deadline = cache._entries[("acme", "")]
    assert 55 < deadline - time.monotonic() <= 60


def test_a_refresh_in_this_process_drops_the_entry(
    cache_on, oauth_client, make_token, token_endpoint
):
    make_token(oauth_client)
    assert get_access_token("acme") == STORED_ACCESS_TOKEN
    token_endpoint.post(
        TOKEN_URL,
        json={"access_token": "refreshed-access-token-42", "expires_in": 3600},
    )
    refresh_access_token("acme")
    assert get_access_token("acme") == "refreshed-access-token-42"


def test_a_failed_refresh_drops_the_entry(
    cache_on, oauth_client, make_token, token_endpoint
):
    make_token(oauth_client)
    get_access_token("acme")
    token_endpoint.post(TOKEN_URL, json={"error": "invalid_grant"}, status=400)
    with pytest.raises(Exception, match="invalid_grant"):
        refresh_access_token("acme")
    assert ("acme", "") not in cache._entries


def test_a_new_authorization_drops_the_entry(cache_on, oauth_client, make_token):
    make_token(oauth_client)
    get_access_token("acme")
    store_token_set(
        oauth_client,
        TokenSet(access_token="after-reauthorization-token-7", expires_in=3600),
    )
    assert get_access_token("acme") == "after-reauthorization-token-7"


def test_revoking_or_disabling_in_this_process_drops_the_entry(
    cache_on, oauth_client, make_token
):
    from oauth2_integrator import AuthorizationRequired

    token = make_token(oauth_client)
    get_access_token("acme")
    token.status = TokenStatus.REVOKED
    token.save()
    with pytest.raises(AuthorizationRequired):
        get_access_token("acme")

    OAuth2Token.objects.filter(pk=token.pk).update(status=TokenStatus.ACTIVE)
    get_access_token("acme")
    oauth_client.enabled = False
    oauth_client.save()
    with pytest.raises(AuthorizationRequired):
        get_access_token("acme")


def test_forget_drops_one_client(cache_on, oauth_client, make_token):
    make_token(oauth_client)
    get_access_token("acme")
    cache.forget("other")
    assert ("acme", "") in cache._entries
    cache.forget("acme")
    assert ("acme", "") not in cache._entries


def test_a_read_that_raced_a_forget_is_not_cached():
    seen = cache.generation()
    cache.forget("acme")  # a refresh or revocation landed while the row was read
    refresh_at = timezone.now() + datetime.timedelta(hours=1)
    cache.put(
        "acme", "", "old-token", refresh_at=refresh_at, ttl=60, seen_generation=seen
    )
    assert cache.get("acme") is None
    cache.put(
        "acme",
        "",
        "new-token",
        refresh_at=refresh_at,
        ttl=60,
        seen_generation=cache.generation(),
    )
    assert cache.get("acme") == "new-token"


def test_a_revocation_in_this_process_drops_the_entry(
    cache_on, oauth_client, make_token
):
    from oauth2_integrator import signals

    make_token(oauth_client)
    get_access_token("acme")
    signals.token_revoked.send(
        sender=type(oauth_client), client=oauth_client, account="", token=None
    )
    assert ("acme", "") not in cache._entries


def test_deleting_the_client_drops_the_entry(cache_on, oauth_client, make_token):
    make_token(oauth_client)
    get_access_token("acme")
    oauth_client.delete()
    assert ("acme", "") not in cache._entries
