"""``oauth2_rotate_keys`` writes each batch with bulk updates, not one UPDATE per
row (issue #7, item 7; the speed is in benchmarks/bench_rotate_keys.py)."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oauth2_integrator import crypto
from oauth2_integrator.models import OAuth2Client, OAuth2Token
from oauth2_integrator.rotation import rotate_keys
from tests.settings import TEST_KEY_NEW, TEST_KEY_OLD

from .test_rotation import raw

pytestmark = pytest.mark.django_db

CLIENTS = 25


@pytest.fixture
def old_key_rows() -> list[OAuth2Token]:
    with override_settings(OAUTH2_INTEGRATOR={"ENCRYPTION_KEYS": [TEST_KEY_OLD]}):
        tokens = []
        for n in range(CLIENTS):
            client = OAuth2Client.objects.create(
                name=f"client-{n}",
                client_id=f"id-{n}",
                client_secret=f"secret-value-{n}-0123456789",
                authorization_endpoint="https://auth.example.test/authorize",
                token_endpoint="https://auth.example.test/token",
            )
            tokens.append(
                OAuth2Token.objects.create(
                    client=client,
                    access_token=f"access-token-{n}-0123456789",
                    # Some rows have no refresh token: their groups differ.
                    refresh_token=f"refresh-token-{n}-0123456789" if n % 3 else "",
                    extra={"id_token": f"id-token-{n}"},
                )
            )
    an_hour_ago = timezone.now() - datetime.timedelta(hours=1)
    OAuth2Token.objects.update(updated_at=an_hour_ago)
    return tokens


def test_each_batch_is_written_with_a_few_updates(old_key_rows):
    with (
        override_settings(
            OAUTH2_INTEGRATOR={"ENCRYPTION_KEYS": [TEST_KEY_NEW, TEST_KEY_OLD]}
        ),
        CaptureQueriesContext(connection) as queries,
    ):
        report = rotate_keys(batch_size=10)
        updates = [q for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    # 3 batches of clients (1 field) and 3 of tokens (two field groups at most).
    assert len(updates) <= 3 * 1 + 3 * 2
    with_refresh = sum(1 for n in range(CLIENTS) if n % 3)
    assert report.reencrypted == CLIENTS * 3 + with_refresh
    assert not report.undecryptable


def test_every_value_is_rewritten_correctly_and_nothing_else(old_key_rows):
    keys = {"ENCRYPTION_KEYS": [TEST_KEY_NEW, TEST_KEY_OLD]}
    with override_settings(OAUTH2_INTEGRATOR=keys):
        rotate_keys(batch_size=7)
        for n, token in enumerate(old_key_rows):
            assert crypto.is_current(raw(OAuth2Token, token.pk, "access_token"))
            assert crypto.is_current(
                raw(OAuth2Client, token.client_id, "client_secret")
            )
            fresh = OAuth2Token.objects.get(pk=token.pk)
            assert fresh.access_token == f"access-token-{n}-0123456789"
            assert fresh.refresh_token == (
                f"refresh-token-{n}-0123456789" if n % 3 else ""
            )
            assert fresh.extra == {"id_token": f"id-token-{n}"}
            assert fresh.client.client_secret == f"secret-value-{n}-0123456789"
            # Rotation is not an edit: auto_now timestamps stay.
            assert fresh.updated_at < timezone.now() - datetime.timedelta(minutes=59)
        second = rotate_keys(batch_size=7)
    assert second.reencrypted == 0


def test_each_key_is_tried_once_per_value(old_key_rows, monkeypatch):
    """A value under the old key costs two tries (the new key fails, the old one
    opens it), a current one costs one: not a first try to ask whether it is
    current and then the same try again to open it."""
    from cryptography.fernet import Fernet

    tries: list[int] = []
    real_decrypt = Fernet.decrypt

    def counted(self: Fernet, token: bytes, ttl: int | None = None) -> bytes:
        tries.append(1)
        return real_decrypt(self, token, ttl)

    monkeypatch.setattr(Fernet, "decrypt", counted)
    keys = {"ENCRYPTION_KEYS": [TEST_KEY_NEW, TEST_KEY_OLD]}
    with override_settings(OAUTH2_INTEGRATOR=keys):
        first = rotate_keys()
        assert len(tries) == 2 * first.reencrypted
        tries.clear()
        second = rotate_keys()
        assert len(tries) == second.current == first.reencrypted


def test_a_value_the_field_cannot_read_is_reported_and_kept(old_key_rows):
    """It opens with the old key, but to text that is not JSON: it is not
    rewritten, so nothing is lost, and it is named."""
    from cryptography.fernet import Fernet

    token = old_key_rows[0]
    broken = Fernet(TEST_KEY_OLD.encode()).encrypt(b"{not json").decode()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {OAuth2Token._meta.db_table} SET extra = %s WHERE id = %s",  # noqa: S608
            [broken, token.pk],
        )
    keys = {"ENCRYPTION_KEYS": [TEST_KEY_NEW, TEST_KEY_OLD]}
    with override_settings(OAUTH2_INTEGRATOR=keys):
        report = rotate_keys()
    assert ("oauth2_integrator.OAuth2Token", token.pk, "extra") in report.undecryptable
    assert raw(OAuth2Token, token.pk, "extra") == broken


def test_the_bulk_write_keeps_values_that_hold_a_comma(old_key_rows):
    """PostgreSQL gets each column as one comma-joined string (Fernet tokens hold
    no comma); a value that does goes as an array instead, intact."""
    from oauth2_integrator.models import OAuth2Token as Token
    from oauth2_integrator.rotation import _update_rows

    first, second = old_key_rows[:2]
    field = Token._meta.get_field("access_token")
    _update_rows(
        Token,
        [field],  # type: ignore[list-item]
        [(first.pk, {"access_token": "a,b"}), (second.pk, {"access_token": "c"})],
    )
    assert raw(Token, first.pk, "access_token") == "a,b"
    assert raw(Token, second.pk, "access_token") == "c"
