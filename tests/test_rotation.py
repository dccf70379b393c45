"""``oauth2_rotate_keys``: everything ends up under the first key, nothing is lost."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import CommandError, call_command
from django.db import connection, models
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from oauth2_integrator.models import AuthorizationRequest, OAuth2Client, OAuth2Token
from oauth2_integrator.rotation import rotate_keys
from tests.settings import TEST_KEY_NEW, TEST_KEY_OLD

from .conftest import CLIENT_SECRET

pytestmark = pytest.mark.django_db

OLD_ONLY = {"ENCRYPTION_KEYS": [TEST_KEY_OLD]}
NEW_THEN_OLD = {"ENCRYPTION_KEYS": [TEST_KEY_NEW, TEST_KEY_OLD]}
NEW_ONLY = {"ENCRYPTION_KEYS": [TEST_KEY_NEW]}

ACCESS = "old-key-access-token-1111-2222-3333"
REFRESH = "old-key-refresh-token-4444-5555-6666"
PUBLIC_ACCESS = "old-key-public-access-7777-8888"
MODERN_SECRET = "already-new-key-secret-abcdef-0123"
VERIFIER = "old-key-pkce-verifier-" + "v" * 30
EXTRA = {"id_token": "eyJhbGciOi.old-key-id-token.sig", "provider_extra": [1, 2]}

ENCRYPTED = [
    (OAuth2Client, "client_secret"),
    (OAuth2Token, "access_token"),
    (OAuth2Token, "refresh_token"),
    (OAuth2Token, "extra"),
    (AuthorizationRequest, "code_verifier"),
]


def raw(model: type[models.Model], pk: Any, field: str) -> str | None:
    """The column as stored, read with plain SQL (no model field involved)."""
    column = model._meta.get_field(field).column
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM {model._meta.db_table} WHERE id = %s",  # noqa: S608
            [pk],
        )
        value = cursor.fetchone()[0]
    return None if value is None else str(value)


def all_raw() -> dict[tuple[str, Any, str], str]:
    """Every non-empty encrypted value in the database."""
    values = {}
    for model, field in ENCRYPTED:
        for pk in model._default_manager.values_list("pk", flat=True):
            value = raw(model, pk, field)
            if value:
                values[(model.__name__, pk, field)] = value
    return values


def open_with(key: str, ciphertext: str) -> str:
    return Fernet(key.encode()).decrypt(ciphertext.encode()).decode()


def rotate(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("oauth2_rotate_keys", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def counts(output: str, label: str) -> tuple[int, int, int]:
    match = re.search(
        rf"^oauth2_integrator\.{label}\s+(\d+) re-encrypted, (\d+) already current, "
        r"(\d+) empty",
        output,
        re.MULTILINE,
    )
    assert match, f"no line for {label} in:\n{output}"
    return int(match[1]), int(match[2]), int(match[3])


@pytest.fixture
def old_data(
    make_client: Callable[..., OAuth2Client], make_token: Callable[..., OAuth2Token]
) -> dict[str, Any]:
    """Rows written while the old key was the only key, plus one already current."""
    with override_settings(OAUTH2_INTEGRATOR=OLD_ONLY):
        acme = make_client(name="acme")
        public = make_client(name="public", client_secret="", token_auth_method="none")
        token = make_token(
            acme, access_token=ACCESS, refresh_token=REFRESH, extra=EXTRA
        )
        public_token = make_token(
            public, access_token=PUBLIC_ACCESS, refresh_token="", extra={}
        )
        login = AuthorizationRequest.objects.create(
            state_hash="a" * 64,
            client=acme,
            session_hash="b" * 64,
            code_verifier=VERIFIER,
            redirect_uri="https://app.example.test/oauth2/acme/callback/",
        )
        no_pkce = AuthorizationRequest.objects.create(
            state_hash="c" * 64,
            client=public,
            session_hash="d" * 64,
            code_verifier="",
            redirect_uri="https://app.example.test/oauth2/public/callback/",
        )
    with override_settings(OAUTH2_INTEGRATOR=NEW_THEN_OLD):
        modern = make_client(name="modern", client_secret=MODERN_SECRET)
    return {
        "acme": acme,
        "public": public,
        "modern": modern,
        "token": token,
        "public_token": public_token,
        "login": login,
        "no_pkce": no_pkce,
    }


def test_old_data_really_is_under_the_old_key(old_data: dict[str, Any]) -> None:
    """Guards the other tests: the fixture must not already be current."""
    with pytest.raises(InvalidToken):
        open_with(TEST_KEY_NEW, raw(OAuth2Token, old_data["token"].pk, "access_token"))
    assert open_with(
        TEST_KEY_OLD, raw(OAuth2Token, old_data["token"].pk, "access_token")
    )


@override_settings(OAUTH2_INTEGRATOR=NEW_THEN_OLD)
def test_rotation_moves_everything_to_the_new_key(old_data: dict[str, Any]) -> None:
    token, login = old_data["token"], old_data["login"]
    stamps = dict(OAuth2Token.objects.values_list("pk", "updated_at"))

    out, err = rotate()

    assert counts(out, "OAuth2Client.client_secret") == (1, 1, 1)
    assert counts(out, "OAuth2Token.access_token") == (2, 0, 0)
    assert counts(out, "OAuth2Token.refresh_token") == (1, 0, 1)
    assert counts(out, "OAuth2Token.extra") == (2, 0, 0)
    assert counts(out, "AuthorizationRequest.code_verifier") == (1, 0, 1)
    assert "Re-encrypted 7 value(s) with the first key; 1 already current." in out
    assert err == ""

    # Every stored value opens with the new key alone, and not with the old one.
    stored = all_raw()
    assert len(stored) == 8
    for ciphertext in stored.values():
        open_with(TEST_KEY_NEW, ciphertext)
        with pytest.raises(InvalidToken):
            open_with(TEST_KEY_OLD, ciphertext)
    # The plaintext is identical.
    assert open_with(
        TEST_KEY_NEW, raw(OAuth2Client, old_data["acme"].pk, "client_secret")
    ) == (CLIENT_SECRET)
    assert open_with(TEST_KEY_NEW, raw(OAuth2Token, token.pk, "access_token")) == ACCESS
    assert (
        open_with(TEST_KEY_NEW, raw(OAuth2Token, token.pk, "refresh_token")) == REFRESH
    )
    assert (
        json.loads(open_with(TEST_KEY_NEW, raw(OAuth2Token, token.pk, "extra")))
        == EXTRA
    )
    assert open_with(
        TEST_KEY_NEW, raw(AuthorizationRequest, login.pk, "code_verifier")
    ) == (VERIFIER)
    # Empty values stay empty (no ciphertext for "no secret").
    assert raw(OAuth2Client, old_data["public"].pk, "client_secret") == ""
    assert raw(OAuth2Token, old_data["public_token"].pk, "refresh_token") == ""
    # Rotation is not an edit.
    assert dict(OAuth2Token.objects.values_list("pk", "updated_at")) == stamps
    # Nothing secret in the report.
    for secret in (
        ACCESS,
        REFRESH,
        PUBLIC_ACCESS,
        CLIENT_SECRET,
        MODERN_SECRET,
        VERIFIER,
    ):
        assert secret not in out + err


@override_settings(OAUTH2_INTEGRATOR=NEW_THEN_OLD)
def test_second_run_reports_everything_current_then_old_key_can_go(
    old_data: dict[str, Any],
) -> None:
    rotate()
    before = all_raw()

    out, _ = rotate()

    assert counts(out, "OAuth2Client.client_secret") == (0, 2, 1)
    assert counts(out, "OAuth2Token.access_token") == (0, 2, 0)
    assert counts(out, "OAuth2Token.refresh_token") == (0, 1, 1)
    assert counts(out, "OAuth2Token.extra") == (0, 2, 0)
    assert counts(out, "AuthorizationRequest.code_verifier") == (0, 1, 1)
    assert (
        "Every stored secret is already encrypted with the first key (8 current)."
        in out
    )
    assert all_raw() == before  # idempotent: not even rewritten

    with override_settings(OAUTH2_INTEGRATOR=NEW_ONLY):
        token = OAuth2Token.objects.get(pk=old_data["token"].pk)
        assert token.access_token == ACCESS
        assert token.refresh_token == REFRESH
        assert token.extra == EXTRA
        assert (
            OAuth2Token.objects.get(pk=old_data["public_token"].pk).refresh_token == ""
        )
        assert OAuth2Client.objects.get(name="acme").client_secret == CLIENT_SECRET
        assert OAuth2Client.objects.get(name="modern").client_secret == MODERN_SECRET
        assert OAuth2Client.objects.get(name="public").client_secret == ""
        login = AuthorizationRequest.objects.get(pk=old_data["login"].pk)
        assert login.code_verifier == VERIFIER


def test_works_in_batches_each_locked(
    make_client: Callable[..., OAuth2Client], make_token: Callable[..., OAuth2Token]
) -> None:
    with override_settings(OAUTH2_INTEGRATOR=OLD_ONLY):
        tokens = [
            make_token(make_client(name=f"c{i}"), access_token=f"a{i}" * 8)
            for i in range(5)
        ]

    with (
        override_settings(OAUTH2_INTEGRATOR=NEW_THEN_OLD),
        CaptureQueriesContext(connection) as queries,
    ):
        report = rotate_keys(batch_size=2)

    table = OAuth2Token._meta.db_table
    batch_reads = [
        q["sql"]
        for q in queries
        if f'FROM "{table}"' in q["sql"] and "LIMIT 2" in q["sql"]
    ]
    assert len(batch_reads) == 3  # 2 + 2 + 1 rows
    if connection.features.has_select_for_update:
        assert all("FOR UPDATE" in sql for sql in batch_reads)
    by_label = {f.label: f for f in report.fields}
    assert by_label["oauth2_integrator.OAuth2Token.access_token"].reencrypted == 5
    assert by_label["oauth2_integrator.OAuth2Client.client_secret"].reencrypted == 5
    for i, token in enumerate(tokens):
        assert (
            open_with(TEST_KEY_NEW, raw(OAuth2Token, token.pk, "access_token"))
            == f"a{i}" * 8
        )


@override_settings(OAUTH2_INTEGRATOR=NEW_THEN_OLD)
def test_undecryptable_value_is_reported_and_kept_others_rotated(
    old_data: dict[str, Any],
    make_client: Callable[..., OAuth2Client],
    make_token: Callable[..., OAuth2Token],
) -> None:
    lost_key = Fernet.generate_key().decode()
    with override_settings(OAUTH2_INTEGRATOR={"ENCRYPTION_KEYS": [lost_key]}):
        orphan = make_token(
            make_client(name="orphan", client_secret=""),
            access_token="orphan-access-token-xyz-123456",
            refresh_token="",
            extra={},
        )
    orphan_raw = {f: raw(OAuth2Token, orphan.pk, f) for f in ("access_token", "extra")}

    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("oauth2_rotate_keys", "--batch-size", "1", stdout=out, stderr=err)

    assert "2 value(s) could not be decrypted" in str(excinfo.value)
    assert "left unchanged" in str(excinfo.value)
    for field in ("access_token", "extra"):
        assert (
            f"Cannot decrypt oauth2_integrator.OAuth2Token pk={orphan.pk} field {field}"
            in err.getvalue()
        )
    assert "orphan-access-token" not in out.getvalue() + err.getvalue()
    assert counts(out.getvalue(), "OAuth2Token.access_token") == (2, 0, 0)
    assert "1 undecryptable" in out.getvalue()
    # The unreadable row is untouched (the data is not lost) ...
    assert {f: raw(OAuth2Token, orphan.pk, f) for f in orphan_raw} == orphan_raw
    # ... and every other value was still rotated.
    token = old_data["token"]
    assert open_with(TEST_KEY_NEW, raw(OAuth2Token, token.pk, "access_token")) == ACCESS
    assert (
        open_with(TEST_KEY_NEW, raw(OAuth2Token, token.pk, "refresh_token")) == REFRESH
    )

    # With the lost key back in the ring the value is recovered and rotated too.
    with override_settings(
        OAUTH2_INTEGRATOR={"ENCRYPTION_KEYS": [TEST_KEY_NEW, TEST_KEY_OLD, lost_key]}
    ):
        out_again, _ = rotate()
    assert counts(out_again, "OAuth2Token.access_token") == (1, 2, 0)
    assert open_with(TEST_KEY_NEW, raw(OAuth2Token, orphan.pk, "access_token")) == (
        "orphan-access-token-xyz-123456"
    )


def test_no_key_configured_is_a_command_error(db: Any) -> None:
    with (
        override_settings(OAUTH2_INTEGRATOR={"ENCRYPTION_KEYS": []}),
        pytest.raises(CommandError, match=r"ENCRYPTION_KEYS'\] is empty"),
    ):
        rotate()


def test_batch_size_must_be_positive(db: Any) -> None:
    with pytest.raises(CommandError, match="--batch-size"):
        rotate("--batch-size", "0")
