"""The audit trail (OAuth2Event): who did what to which client, never a secret."""

from __future__ import annotations

import datetime
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
import responses
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from oauth2_integrator import AuthorizationRequired, events, flow, get_access_token
from oauth2_integrator.models import (
    EventKind,
    OAuth2Client,
    OAuth2Event,
)
from oauth2_integrator.rotation import rotate_keys
from oauth2_integrator.tokens import refresh_access_token, store_token_set

from .conftest import (
    AUTHORIZE_URL,
    CLIENT_SECRET,
    STORED_ACCESS_TOKEN,
    TOKEN_URL,
)

NEW = {
    "access_token": "refreshed-access-token-7777",
    "refresh_token": "refreshed-refresh-token-8888",
    "expires_in": 3600,
}


def only_event(kind: str) -> OAuth2Event:
    return OAuth2Event.objects.get(kind=kind)


def assert_no_secret_in_events(secret_values: Any) -> None:
    """No secret the test handled (the log guard's list) reached an event."""
    assert OAuth2Event.objects.exists()
    for event in OAuth2Event.objects.all():
        assert not secret_values.found_in(event.detail), event.detail
        assert not secret_values.found_in(event.actor_name)


# --- what writes an event ---------------------------------------------------------------


def test_authorized_event_names_the_user_who_completed_the_login(
    oauth_client, operator, operator_client, start_login, token_endpoint, secret_values
):
    state = start_login(operator_client)["state"]
    token_endpoint.post(TOKEN_URL, json={**NEW, "scope": "read"})
    response = operator_client.get(
        "/oauth2/acme/callback/", {"state": state, "code": "code-0123456789"}
    )
    assert response.status_code == 302
    event = only_event(EventKind.AUTHORIZED)
    assert (event.client, event.actor, event.outcome) == (oauth_client, operator, "ok")
    assert event.actor_name == "operator"
    assert "read" in event.detail
    assert_no_secret_in_events(secret_values)


def test_refreshed_and_failed_refresh_events_are_the_systems(
    oauth_client, make_token, token_endpoint, secret_values
):
    make_token(oauth_client)
    token_endpoint.post(TOKEN_URL, json=NEW)
    refresh_access_token("acme")
    event = only_event(EventKind.REFRESHED)
    assert event.actor is None and event.outcome == "ok"

    token_endpoint.replace(responses.POST, TOKEN_URL, status=503)
    with pytest.raises(Exception):  # noqa: B017 (whichever refresh error)
        refresh_access_token("acme")
    failed = only_event(EventKind.REFRESH_FAILED)
    assert failed.outcome == "failed" and "503" in failed.detail
    assert_no_secret_in_events(secret_values)


def test_invalid_grant_records_that_an_operator_must_act(
    oauth_client, make_token, token_endpoint, secret_values
):
    make_token(oauth_client)
    token_endpoint.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(AuthorizationRequired):
        refresh_access_token("acme")
    event = only_event(EventKind.REAUTHORIZATION_REQUIRED)
    assert event.outcome == "failed"
    assert "invalid_grant" in event.detail
    assert_no_secret_in_events(secret_values)


def test_a_plain_read_writes_no_event(oauth_client, make_token):
    make_token(oauth_client)
    before = OAuth2Event.objects.count()
    for _ in range(3):
        assert get_access_token("acme") == STORED_ACCESS_TOKEN
    assert OAuth2Event.objects.count() == before


def test_client_changed_in_the_admin_names_fields_not_values(
    oauth_client, operator, operator_client, secret_values
):
    from .test_admin import form_data

    url = reverse("admin:oauth2_integrator_oauth2client_change", args=[oauth_client.pk])
    new_secret = "typed-new-client-secret-5555"
    response = operator_client.post(
        url, form_data(oauth_client, client_secret=new_secret, scope="read")
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    event = OAuth2Event.objects.filter(kind=EventKind.CLIENT_CHANGED).latest("pk")
    assert event.actor == operator
    assert "client secret" in event.detail and "scope" in event.detail
    assert new_secret not in event.detail
    assert CLIENT_SECRET not in event.detail
    secret_values.add(new_secret, "typed secret")
    assert_no_secret_in_events(secret_values)


def test_registering_and_importing_clients_are_events(tmp_path: Path, db):
    path = tmp_path / "clients.json"
    path.write_text(
        json.dumps(
            [
                {
                    "name": "acme",
                    "client_id": "acme-client-id",
                    "client_secret": CLIENT_SECRET,
                    "authorization_endpoint": AUTHORIZE_URL,
                    "token_endpoint": TOKEN_URL,
                    "scope": "read",
                }
            ]
        )
    )
    call_command("oauth2_import_clients", str(path), stdout=io.StringIO())
    created = only_event(EventKind.CLIENT_CHANGED)
    assert created.detail == "Registered the client." and created.actor is None

    entry = json.loads(path.read_text())
    entry[0]["scope"] = "read write"
    path.write_text(json.dumps(entry))
    call_command("oauth2_import_clients", str(path), stdout=io.StringIO())
    changed = OAuth2Event.objects.filter(kind=EventKind.CLIENT_CHANGED).latest("pk")
    assert changed.detail == "Changed: scope."


def test_key_rotation_is_one_event_for_the_installation(
    oauth_client, make_token, settings
):
    from cryptography.fernet import Fernet

    make_token(oauth_client)
    keys = settings.OAUTH2_INTEGRATOR["ENCRYPTION_KEYS"]
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "ENCRYPTION_KEYS": [Fernet.generate_key().decode(), *keys],
    }
    report = rotate_keys()
    event = only_event(EventKind.KEYS_ROTATED)
    assert event.client is None and event.outcome == "ok"
    assert f"Re-encrypted {report.reencrypted} value(s)" in event.detail


# --- writing an event never costs the caller -----------------------------------------


def test_a_failing_event_write_never_fails_a_login(oauth_client, monkeypatch, caplog):
    def broken(self: Any, *args: Any, **kwargs: Any) -> None:
        raise DatabaseError("disk full")

    monkeypatch.setattr(OAuth2Event, "save", broken)
    token = store_token_set(
        oauth_client, flow.TokenSet(access_token="fresh-0123456789")
    )
    assert token.pk is not None
    assert "Could not record the authorized event" in caplog.text


def test_detail_is_fitted_and_stripped_of_url_credentials(oauth_client):
    event = events.record(
        oauth_client,
        EventKind.CLIENT_CHANGED,
        detail="see https://user:pa55word@host.example/x " + "y" * 1000,
    )
    assert event is not None
    event.refresh_from_db()
    assert len(event.detail) == 500
    assert "pa55word" not in event.detail


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_outlives_a_rollback_in_the_callers_transaction(
    make_client, make_token, token_endpoint
):
    if connection.vendor != "postgresql":
        pytest.skip("a second connection is used on PostgreSQL only")
    client = make_client()
    make_token(client)
    token_endpoint.post(TOKEN_URL, json=NEW)
    with pytest.raises(RuntimeError), transaction.atomic():
        refresh_access_token("acme")
        raise RuntimeError("the caller's request fails afterwards")
    assert OAuth2Event.objects.filter(kind=EventKind.REFRESHED).count() == 1


# --- pruning ------------------------------------------------------------------------------


def old_and_new_events(client: OAuth2Client) -> tuple[OAuth2Event, OAuth2Event]:
    now = timezone.now()
    old = OAuth2Event.objects.create(
        client=client, kind="refreshed", created_at=now - datetime.timedelta(days=91)
    )
    new = OAuth2Event.objects.create(
        client=client, kind="refreshed", created_at=now - datetime.timedelta(days=89)
    )
    return old, new


def test_prune_events_deletes_what_is_past_the_retention(oauth_client, settings):
    old, new = old_and_new_events(oauth_client)
    assert events.prune_events() == 1
    assert set(OAuth2Event.objects.values_list("pk", flat=True)) >= {new.pk}
    assert not OAuth2Event.objects.filter(pk=old.pk).exists()

    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "EVENT_RETENTION_DAYS": 30,
    }
    assert events.prune_events() == 1


def test_the_command_prunes(oauth_client):
    old_and_new_events(oauth_client)
    out = io.StringIO()
    call_command("oauth2_prune_events", stdout=out)
    assert "Deleted 1 event(s) older than 90 days." in out.getvalue()


def test_a_long_running_process_prunes_once_an_hour(oauth_client, monkeypatch):
    old, _ = old_and_new_events(oauth_client)
    # An hour ago: not 0.0, the monotonic clock may have started less than an hour
    # ago (a machine just booted).
    monkeypatch.setattr(
        events, "_last_prune", time.monotonic() - events.PRUNE_INTERVAL - 1
    )
    events.record(oauth_client, EventKind.CLIENT_CHANGED)
    assert not OAuth2Event.objects.filter(pk=old.pk).exists()
    old, _ = old_and_new_events(oauth_client)
    events.record(oauth_client, EventKind.CLIENT_CHANGED)  # within the hour
    assert OAuth2Event.objects.filter(pk=old.pk).exists()


# --- the admin -----------------------------------------------------------------------------


def test_the_client_page_lists_its_newest_events_read_only(
    oauth_client, make_client, operator_client
):
    other = make_client(name="other")
    for n in range(25):
        events.record(oauth_client, EventKind.REFRESHED, detail=f"number {n:02d}")
    events.record(other, EventKind.REFRESHED, detail="of the other client")
    url = reverse("admin:oauth2_integrator_oauth2client_change", args=[oauth_client.pk])
    page = operator_client.get(url).content.decode()
    assert "Recent events (newest first)" in page
    assert "number 24" in page and "number 05" in page
    assert "number 04" not in page  # bounded: the newest 20
    assert page.index("number 24") < page.index("number 23")
    assert "of the other client" not in page
    assert f"?client__id__exact={oauth_client.pk}" in page


def test_the_event_list_filters_and_is_read_only(
    oauth_client, make_client, operator_client
):
    other = make_client(name="other")
    events.record(oauth_client, EventKind.REFRESHED, detail="mine refreshed")
    events.record(
        oauth_client, EventKind.REVOKED, outcome="failed", detail="mine revoked"
    )
    events.record(other, EventKind.REFRESHED, detail="other refreshed")
    changelist = reverse("admin:oauth2_integrator_oauth2event_changelist")

    page = operator_client.get(
        changelist, {"client__id__exact": oauth_client.pk, "kind": "revoked"}
    ).content.decode()
    assert "mine revoked" in page
    assert "mine refreshed" not in page and "other refreshed" not in page
    page = operator_client.get(changelist, {"outcome": "ok"}).content.decode()
    assert "mine refreshed" in page and "mine revoked" not in page
    assert (
        operator_client.get(
            changelist, {"created_at__year": timezone.now().year}
        ).status_code
        == 200
    )

    event = OAuth2Event.objects.filter(client=oauth_client).first()
    assert event is not None
    assert (
        operator_client.get(
            reverse("admin:oauth2_integrator_oauth2event_add")
        ).status_code
        == 403
    )
    detail_url = reverse("admin:oauth2_integrator_oauth2event_change", args=[event.pk])
    page = operator_client.get(detail_url).content.decode()
    assert 'name="_save"' not in page and "deletelink" not in page
    assert operator_client.post(detail_url, {"detail": "forged"}).status_code == 403
    delete_url = reverse("admin:oauth2_integrator_oauth2event_delete", args=[event.pk])
    assert operator_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert OAuth2Event.objects.filter(pk=event.pk, detail=event.detail).exists()


def test_staff_who_cannot_see_clients_cannot_see_events(
    oauth_client, django_user_model
):
    events.record(oauth_client, EventKind.REFRESHED)
    outsider = django_user_model.objects.create_user("outsider", is_staff=True)
    outsider.user_permissions.add(Permission.objects.get(codename="view_logentry"))
    browser = Client()
    browser.force_login(outsider)
    changelist = reverse("admin:oauth2_integrator_oauth2event_changelist")
    assert browser.get(changelist).status_code == 403


def test_an_event_of_a_deleted_user_keeps_the_name(oauth_client, django_user_model):
    user = django_user_model.objects.create_user("gone", is_staff=True)
    event = events.record(oauth_client, EventKind.REVOKED, actor=user)
    user.delete()
    assert event is not None
    event.refresh_from_db()
    assert event.actor is None and event.actor_name == "gone"
    from oauth2_integrator.admin import _actor_label

    assert _actor_label(event) == "gone (deleted user)"


def test_a_save_of_every_field_names_only_those_that_changed(oauth_client):
    """``update_or_create`` (the demo's set-up, deploy scripts) writes every field:
    the event names the fields whose stored value changed, not all it wrote."""
    OAuth2Client.objects.update_or_create(
        name=oauth_client.name,
        defaults={
            "display_name": oauth_client.display_name,
            "client_id": oauth_client.client_id,
            "client_secret": CLIENT_SECRET,
            "authorization_endpoint": AUTHORIZE_URL,
            "token_endpoint": TOKEN_URL,
            "scope": "read",
        },
    )
    changed = OAuth2Event.objects.filter(kind=EventKind.CLIENT_CHANGED).latest("pk")
    assert changed.detail == "Changed: scope."
    oauth_client.refresh_from_db()
    oauth_client.save()
    unchanged = OAuth2Event.objects.filter(kind=EventKind.CLIENT_CHANGED).latest("pk")
    assert unchanged.detail == "Saved the client without changes."


def test_a_worker_that_only_refreshes_prunes_too(
    oauth_client, make_token, token_endpoint, monkeypatch
):
    """A refresh writes its event with the token, not through ``record``: a Celery
    worker that does nothing else must still keep the trail bounded."""
    make_token(oauth_client)
    token_endpoint.post(TOKEN_URL, json=NEW)
    old, _ = old_and_new_events(oauth_client)
    monkeypatch.setattr(
        events, "_last_prune", time.monotonic() - events.PRUNE_INTERVAL - 1
    )
    refresh_access_token("acme")
    assert not OAuth2Event.objects.filter(pk=old.pk).exists()
