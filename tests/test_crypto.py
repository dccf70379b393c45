"""Encryption at rest: the keyring, its system check, rotation-friendly decryption."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import connection
from django.test import override_settings

from oauth2_integrator import ConfigurationError, crypto
from oauth2_integrator.checks import check_encryption_keys
from oauth2_integrator.conf import app_settings
from oauth2_integrator.fields import Undecryptable, reveal
from oauth2_integrator.models import OAuth2Client, OAuth2Token

from .conftest import CLIENT_SECRET
from .settings import TEST_KEY_NEW, TEST_KEY_OLD

THIRD_KEY = Fernet.generate_key().decode()


def keys(*values: object) -> override_settings:
    return override_settings(OAUTH2_INTEGRATOR={"ENCRYPTION_KEYS": list(values)})


def raw_column(model: type, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM {model._meta.db_table} WHERE id = %s",  # noqa: S608
            [pk],
        )
        return cursor.fetchone()[0]


# --- the system check -----------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "says"),
    [
        ([], "is empty"),
        ("", "is empty"),
        (["not-a-fernet-key"], "key #1 is not a valid Fernet key"),
        ([TEST_KEY_NEW, "short"], "key #2 is not a valid Fernet key"),
        ([TEST_KEY_NEW, 12345], "key #2 is not a valid Fernet key"),
    ],
)
def test_check_e001_for_missing_or_malformed_keys(configured, says):
    with override_settings(OAUTH2_INTEGRATOR={"ENCRYPTION_KEYS": configured}):
        errors = check_encryption_keys()
    assert [e.id for e in errors] == ["oauth2_integrator.E001"]
    assert says in errors[0].msg
    assert "Fernet.generate_key()" in errors[0].msg  # how to make one
    assert "ENCRYPTION_KEYS" in errors[0].hint


def test_check_e001_without_the_setting_at_all():
    def changed() -> None:
        # Deleting a setting sends no setting_changed; send it like Django would.
        setting_changed.send(
            sender=None, setting="OAUTH2_INTEGRATOR", value=None, enter=True
        )

    with override_settings():
        del settings.OAUTH2_INTEGRATOR
        changed()
        errors = check_encryption_keys()
    changed()
    assert [e.id for e in errors] == ["oauth2_integrator.E001"]
    assert "is empty" in errors[0].msg
    assert check_encryption_keys() == []


@pytest.mark.parametrize("configured", [{}, None])
def test_check_e001_with_an_empty_setting(configured):
    with override_settings(OAUTH2_INTEGRATOR=configured):
        errors = check_encryption_keys()
    assert [e.id for e in errors] == ["oauth2_integrator.E001"]
    assert "is empty" in errors[0].msg


def test_check_is_registered_and_quiet_when_keys_are_fine():
    assert not [
        e
        for e in run_checks(include_deployment_checks=False)
        if e.id.startswith("oauth2")
    ]
    with keys("nope"):
        ids = [e.id for e in run_checks()]
    assert "oauth2_integrator.E001" in ids


def test_generate_key_hint_produces_a_working_key():
    """Run the command the messages tell an operator to run; use what it prints."""
    argv = shlex.split(crypto.GENERATE_KEY_HINT)
    assert argv[0] == "python"
    # This interpreter stands in for the operator's `python` (it has cryptography).
    result = subprocess.run(
        [sys.executable, *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = result.stdout.strip()
    assert key not in {TEST_KEY_NEW, TEST_KEY_OLD}
    with keys(key):
        assert check_encryption_keys() == []
        ciphertext = crypto.encrypt("päss wörd")
        assert crypto.decrypt(ciphertext) == "päss wörd"
    # It really was that key that encrypted it.
    assert Fernet(key.encode()).decrypt(ciphertext.encode()).decode() == "päss wörd"


# --- settings -------------------------------------------------------------------


def test_unknown_setting_is_rejected_naming_the_key():
    with override_settings(
        OAUTH2_INTEGRATOR={"ENCRYPTION_KEYS": [TEST_KEY_NEW], "REFRESH_MARGN": 60}
    ):
        with pytest.raises(ImproperlyConfigured) as info:
            app_settings.REFRESH_MARGIN  # noqa: B018
        assert "REFRESH_MARGN" in str(info.value)
        assert "REFRESH_MARGIN" in str(info.value)  # the known keys are listed
        errors = check_encryption_keys()
        assert "REFRESH_MARGN" in errors[0].msg


def test_settings_follow_override_settings():
    assert app_settings.REFRESH_MARGIN == 300
    with override_settings(
        OAUTH2_INTEGRATOR={"ENCRYPTION_KEYS": [TEST_KEY_NEW], "REFRESH_MARGIN": 42}
    ):
        assert app_settings.REFRESH_MARGIN == 42
    assert app_settings.REFRESH_MARGIN == 300


# --- encrypting and decrypting --------------------------------------------------


def test_round_trip_and_non_determinism():
    first = crypto.encrypt("päss wörd")
    second = crypto.encrypt("päss wörd")
    assert first != second
    assert "päss" not in first
    assert crypto.decrypt(first) == crypto.decrypt(second) == "päss wörd"


def test_old_key_still_decrypts_after_a_new_key_is_put_first(make_client, make_token):
    with keys(TEST_KEY_OLD):
        client = make_client()
        token = make_token(client)
        old_ciphertext = raw_column(OAuth2Token, "access_token", token.pk)
        assert crypto.is_current(old_ciphertext)
    with keys(THIRD_KEY, TEST_KEY_OLD):
        assert not crypto.is_current(old_ciphertext)
        assert OAuth2Client.objects.get().client_secret == CLIENT_SECRET
        token = OAuth2Token.objects.get()
        assert token.access_token == "stored-access-token-AAAA-1111-BBBB"
        # New writes use the new first key.
        token.save()
        assert crypto.is_current(raw_column(OAuth2Token, "access_token", token.pk))
        assert Fernet(THIRD_KEY.encode()).decrypt(
            raw_column(OAuth2Token, "access_token", token.pk).encode()
        )


def test_no_matching_key_gives_a_clear_configuration_error(make_client, make_token):
    with keys(TEST_KEY_OLD):
        make_token(make_client())
    with keys(THIRD_KEY), pytest.raises(ConfigurationError) as info:
        OAuth2Token.objects.get()
    message = str(info.value)
    assert "cannot be decrypted" in message
    assert "ENCRYPTION_KEYS" in message
    assert "oauth2_rotate_keys" in message
    assert "stored-access-token" not in message


def test_an_undecryptable_client_secret_loads_as_a_marker_and_survives_a_save(
    make_client,
):
    with keys(TEST_KEY_OLD):
        client = make_client()
    stored = raw_column(OAuth2Client, "client_secret", client.pk)
    with keys(THIRD_KEY):
        loaded = OAuth2Client.objects.get(pk=client.pk)
        assert isinstance(loaded.client_secret, Undecryptable)
        assert not loaded.client_secret
        assert "undecryptable" in repr(loaded.client_secret)
        with pytest.raises(ConfigurationError, match="cannot be decrypted") as info:
            reveal(loaded.client_secret, what="client secret")
        assert CLIENT_SECRET not in str(info.value)
        loaded.display_name = "renamed"
        loaded.save()
    # The ciphertext was written back as it was: restoring the key restores the secret.
    assert raw_column(OAuth2Client, "client_secret", client.pk) == stored
    with keys(TEST_KEY_OLD):
        assert OAuth2Client.objects.get(pk=client.pk).client_secret == CLIENT_SECRET


def test_garbage_in_the_column_gives_the_same_clear_error(make_client, make_token):
    make_token(make_client())
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {OAuth2Token._meta.db_table} SET access_token = %s",  # noqa: S608
            ["plainly-not-encrypted-é"],
        )
    with pytest.raises(ConfigurationError, match="cannot be decrypted"):
        OAuth2Token.objects.get()


def test_empty_values_are_stored_empty(make_client, make_token):
    client = make_client(client_secret="")
    token = make_token(client, refresh_token="")
    assert raw_column(OAuth2Client, "client_secret", client.pk) == ""
    assert raw_column(OAuth2Token, "refresh_token", token.pk) == ""
    assert OAuth2Token.objects.get().refresh_token == ""


def test_json_extras_are_encrypted_and_round_trip(oauth_client, make_token):
    extra = {"id_token": "eyJhbGciOiJSUzI1NiJ9.body.sig", "n": [1, 2], "ü": None}
    token = make_token(oauth_client, extra=extra)
    raw = raw_column(OAuth2Token, "extra", token.pk)
    assert "eyJhbGciOiJSUzI1NiJ9" not in raw
    assert crypto.decrypt(raw)  # a Fernet token, not JSON
    assert OAuth2Token.objects.get().extra == extra
