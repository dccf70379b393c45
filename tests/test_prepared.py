"""Statements compiled once and run many times (``prepared``): the same rows and
the same writes as the querysets they are built from, without compiling again."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.db import DataError, IntegrityError, connection
from django.utils import timezone

from oauth2_integrator import prepared, tokens
from oauth2_integrator.models import OAuth2Client, OAuth2Event, OAuth2Token

from .conftest import STORED_ACCESS_TOKEN, STORED_REFRESH_TOKEN


def raw_column(pk: int, column: str) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM oauth2_integrator_oauth2token WHERE id = %s",  # noqa: S608
            [pk],
        )
        return cursor.fetchone()[0]


def test_the_full_read_builds_what_select_related_builds(oauth_client, make_token):
    token = make_token(oauth_client, extra={"id_token": "x.y.z"})
    mine = tokens._read_token("acme", "")
    django = OAuth2Token.objects.select_related("client").get(pk=token.pk)
    assert mine is not None
    for field in OAuth2Token._meta.concrete_fields:
        assert getattr(mine, field.attname) == getattr(django, field.attname), field
    for field in OAuth2Client._meta.concrete_fields:
        assert getattr(mine.client, field.attname) == getattr(
            django.client, field.attname
        ), field
    assert mine.refresh_token == STORED_REFRESH_TOKEN
    assert mine.client.client_secret == django.client.client_secret
    assert not mine._state.adding
    assert mine._state.db == django._state.db
    assert tokens._read_token("acme", "other-account") is None
    assert tokens._read_token("nobody", "") is None


def test_a_statement_is_compiled_once_per_connection(
    oauth_client, make_token, monkeypatch
):
    make_token(oauth_client)
    compiled: list[Any] = []
    select = prepared.Select(
        lambda alias, key: (
            OAuth2Token.objects.using(alias)
            .filter(client__name=prepared.slot("name"))
            .values_list("access_token")[:1]
        )
    )
    real = select._compile

    def spy(alias: str, key: Any) -> Any:
        compiled.append(alias)
        return real(alias, key)

    monkeypatch.setattr(select, "_compile", spy)
    for _ in range(3):
        assert select.first("default", {"name": "acme"}) == (STORED_ACCESS_TOKEN,)
    assert select.first("default", {"name": "nobody"}) is None
    assert compiled == ["default"]


def test_an_update_encrypts_and_prepares_like_queryset_update(oauth_client, make_token):
    token = make_token(oauth_client)
    moment = timezone.now() - datetime.timedelta(minutes=5)
    update = prepared.Update(
        OAuth2Token,
        lambda alias, key: (
            OAuth2Token.objects.using(alias).filter(
                pk=prepared.slot("where:id"),
                obtained_at=prepared.slot("where:obtained_at"),
            ),
            ["access_token", "extra", "provider_values", "refreshed_at"],
        ),
    )
    values = {
        "where:id": token.pk,
        "where:obtained_at": token.obtained_at,
        "access_token": "new-access-QQQQ-4444",
        "extra": {"id_token": "a.b.c"},
        "provider_values": {"realmId": "123"},
        "refreshed_at": moment,
    }
    assert update.run("default", values) == 1
    stored = OAuth2Token.objects.get(pk=token.pk)
    assert stored.access_token == "new-access-QQQQ-4444"
    assert stored.extra == {"id_token": "a.b.c"}
    assert stored.provider_values == {"realmId": "123"}
    assert stored.refreshed_at == moment
    assert "new-access-QQQQ-4444" not in str(raw_column(token.pk, "access_token"))
    assert "a.b.c" not in str(raw_column(token.pk, "extra"))
    # The filter's values are compared as the columns' own: another moment misses.
    values["where:obtained_at"] = token.obtained_at + datetime.timedelta(microseconds=1)
    assert update.run("default", values) == 0


@pytest.mark.parametrize("field", ["refreshed_at", "next_attempt_at"])
def test_a_claim_matches_a_row_whose_version_columns_are_empty(
    oauth_client, make_token, field
):
    """NULL never equals NULL in SQL: the claim's statement has an IS NULL variant."""
    token = make_token(oauth_client, **{field: None})
    claimed = tokens._claim(token, "default", name="acme", wait=0)
    assert claimed.refresh_claim
    assert OAuth2Token.objects.get().refresh_claim == claimed.refresh_claim


def _scope_update() -> prepared.Update:
    return prepared.Update(
        OAuth2Token,
        lambda alias, key: (
            OAuth2Token.objects.using(alias).filter(pk=prepared.slot("where:id")),
            ["scope"],
        ),
    )


def _event_columns(pk: int) -> tuple[Any, ...]:
    return tuple(
        OAuth2Event.objects.filter(pk=pk)
        .values_list("client_id", "kind", "actor_id", "actor_name", "outcome")
        .get()
    )


def test_a_row_is_inserted_with_an_update_only_when_the_update_changes_a_row(
    oauth_client, make_token
):
    token = make_token(oauth_client)
    update = _scope_update()
    moment = timezone.now() - datetime.timedelta(minutes=3)
    event = OAuth2Event(
        client=oauth_client, kind="refreshed", detail="with it", created_at=moment
    )
    assert (
        update.run("default", {"where:id": token.pk, "scope": "a b"}, and_insert=event)
        == 1
    )
    (written,) = OAuth2Event.objects.filter(detail="with it")
    # As save() would write it: the empty actor is NULL, the default outcome kept.
    assert _event_columns(written.pk) == (oauth_client.pk, "refreshed", None, "", "ok")
    assert written.created_at == moment
    assert OAuth2Token.objects.get().scope == "a b"

    missed = OAuth2Event(client=oauth_client, kind="refreshed", detail="without")
    values = {"where:id": token.pk + 1000, "scope": "c"}
    assert update.run("default", values, and_insert=missed) == 0
    assert not OAuth2Event.objects.filter(detail="without").exists()


def test_an_installation_event_needs_no_client(oauth_client, make_token):
    """Every empty column (no client, no actor) is written as its type's NULL."""
    token = make_token(oauth_client)
    event = OAuth2Event(client=None, kind="keys_rotated", detail="whole site")
    assert (
        _scope_update().run(
            "default", {"where:id": token.pk, "scope": "x"}, and_insert=event
        )
        == 1
    )
    (written,) = OAuth2Event.objects.filter(detail="whole site")
    assert (written.client_id, written.actor_id) == (None, None)


@pytest.mark.django_db(transaction=True)
def test_the_update_is_undone_when_its_row_cannot_be_inserted(make_client, make_token):
    """One change: an event that cannot be written takes the update with it (a
    foreign key to a client that does not exist fails at the commit)."""
    client = make_client()
    token = make_token(client, scope="before")
    orphan = OAuth2Event(client_id=client.pk + 1000, kind="refreshed", detail="orphan")
    with pytest.raises(IntegrityError):
        _scope_update().run(
            "default", {"where:id": token.pk, "scope": "after"}, and_insert=orphan
        )
    assert OAuth2Token.objects.get().scope == "before"
    assert not OAuth2Event.objects.filter(detail="orphan").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_value_too_long_for_its_column_is_refused_not_cut(make_client, make_token):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite does not enforce a column's length")
    client = make_client()
    token = make_token(client, scope="before")
    long_detail = OAuth2Event(client=client, kind="refreshed", detail="d" * 501)
    with pytest.raises(DataError):
        _scope_update().run(
            "default", {"where:id": token.pk, "scope": "after"}, and_insert=long_detail
        )
    assert OAuth2Token.objects.get().scope == "before"
    assert not OAuth2Event.objects.filter(kind="refreshed").exists()
