"""System checks over stored data and deploy settings (issue 5, items 7, 16, 17, 18):
found at ``migrate`` / ``check --deploy``, never by a failing refresh at night."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection

from oauth2_integrator import checks as integrator_checks
from oauth2_integrator.checks import (
    PUBLIC_KEYS,
    check_public_keys,
    check_stored_data,
)
from oauth2_integrator.models import OAuth2Client, OAuth2Token

from .conftest import CLIENT_SECRET
from .settings import TEST_KEY_NEW

pytestmark = pytest.mark.django_db

LOST_KEY = "w3P8t4sF0k2c2l8G5tS5b0QWc0n9bJt0mY0lXq3yH1c="
URL_PASSWORD = "Pa55-in-the-URL-9Qz"
DEV_KEY = "ZGV2LW9ubHktTk9ULVNFQ1JFVC1yZXBsYWNlLW1lISE="


def with_keys(settings: Any, *keys: str, **more: Any) -> dict[str, Any]:
    before = settings.OAUTH2_INTEGRATOR
    settings.OAUTH2_INTEGRATOR = {**before, "ENCRYPTION_KEYS": list(keys), **more}
    return before


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


@pytest.fixture
def lost(
    make_client: Callable[..., OAuth2Client],
    make_token: Callable[..., OAuth2Token],
    settings: Any,
) -> OAuth2Client:
    """A client whose secret and token were encrypted with a key now removed."""
    before = with_keys(settings, LOST_KEY)
    client = make_client(name="lost")
    make_token(client)
    settings.OAUTH2_INTEGRATOR = before
    return client


def test_quiet_when_everything_decrypts(
    make_client: Callable[..., OAuth2Client], make_token: Callable[..., OAuth2Token]
) -> None:
    make_token(make_client())
    assert check_stored_data(databases=["default"]) == []


def test_e002_names_what_cannot_be_decrypted_and_never_a_value(
    lost: OAuth2Client, make_client: Callable[..., OAuth2Client]
) -> None:
    make_client(name="fine")
    found = check_stored_data(databases=["default"])
    assert ids(found) == ["oauth2_integrator.E002"]
    message = found[0].msg
    assert "oauth2_integrator.OAuth2Client.client_secret (1)" in message
    assert "oauth2_integrator.OAuth2Token.access_token (1)" in message
    assert "oauth2_integrator.OAuth2Token.refresh_token (1)" in message
    assert CLIENT_SECRET not in message + found[0].hint
    assert "oauth2_import_clients" in found[0].hint
    assert "Restore the key" in found[0].hint


def test_e002_reads_raw_columns_so_the_secret_marker_cannot_hide_it(
    lost: OAuth2Client,
) -> None:
    """The client secret loads as a falsy marker; the check must still count it."""
    OAuth2Token.objects.all().delete()
    found = check_stored_data(databases=["default"])
    assert ids(found) == ["oauth2_integrator.E002"]
    assert "OAuth2Client.client_secret (1)" in found[0].msg


def test_e002_reads_a_bounded_sample_newest_first(
    lost: OAuth2Client,
    make_client: Callable[..., OAuth2Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    OAuth2Token.objects.all().delete()
    for n in range(3):
        make_client(name=f"newer-{n}")
    monkeypatch.setattr(integrator_checks, "DECRYPT_SAMPLE_ROWS", 3)
    assert check_stored_data(databases=["default"]) == []
    monkeypatch.setattr(integrator_checks, "DECRYPT_SAMPLE_ROWS", 4)
    assert ids(check_stored_data(databases=["default"])) == ["oauth2_integrator.E002"]


def test_database_checks_run_only_when_django_asks_for_a_database(
    lost: OAuth2Client,
) -> None:
    assert check_stored_data() == []  # plain `manage.py check`, `runserver`
    assert "oauth2_integrator.E002" in ids(run_checks(databases=["default"]))
    with pytest.raises(SystemCheckError, match=r"oauth2_integrator\.E002"):
        call_command("check", "--database", "default")
    # A deploy's `migrate` stops on it (call_command skips checks unless asked).
    with pytest.raises(SystemCheckError, match=r"oauth2_integrator\.E002"):
        call_command("migrate", skip_checks=False, verbosity=0)


def test_check_deploy_finds_undecryptable_values_without_database_option(
    lost: OAuth2Client,
) -> None:
    assert "oauth2_integrator.E002" in ids(run_checks(include_deployment_checks=True))
    # With --database the database check runs; the deploy one does not repeat it.
    found = ids(run_checks(include_deployment_checks=True, databases=["default"]))
    assert found.count("oauth2_integrator.E002") == 1


def test_no_error_before_the_tables_exist(
    lost: OAuth2Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``migrate`` runs database checks before it creates the tables."""
    monkeypatch.setattr(connection.introspection, "table_names", lambda *a, **k: [])
    assert check_stored_data(databases=["default"]) == []


# --------------------------------------------------------------- stored clients


def test_w004_plain_http_outside_loopback(
    make_client: Callable[..., OAuth2Client], settings: Any
) -> None:
    make_client(name="lab", token_endpoint="http://lab.example.test/token")
    make_client(name="demo", token_endpoint="http://127.0.0.1:8000/token")
    make_client(name="iss", issuer="http://lab.example.test")
    found = check_stored_data(databases=["default"])
    assert ids(found) == ["oauth2_integrator.W004"]
    assert "lab (token_endpoint)" in found[0].msg
    assert "demo" not in found[0].msg
    assert "iss" not in found[0].msg.split(":")[1]
    with_keys(settings, TEST_KEY_NEW, ALLOW_INSECURE_HTTP=True)
    assert check_stored_data(databases=["default"]) == []


def test_w005_credentials_in_a_stored_url_never_printed(
    make_client: Callable[..., OAuth2Client],
) -> None:
    make_client(
        name="leaky",
        token_endpoint=f"https://svc:{URL_PASSWORD}@auth.example.test/token",
    )
    found = check_stored_data(databases=["default"])
    assert ids(found) == ["oauth2_integrator.W005"]
    assert "leaky (token_endpoint)" in found[0].msg
    assert URL_PASSWORD not in found[0].msg + found[0].hint
    assert "svc" not in found[0].msg.replace("secrets", "")


def test_w006_public_client_without_pkce(
    make_client: Callable[..., OAuth2Client],
) -> None:
    make_client(name="pub", client_secret="", token_auth_method="none", use_pkce=False)
    make_client(name="conf", use_pkce=False)
    found = check_stored_data(databases=["default"])
    assert ids(found) == ["oauth2_integrator.W006"]
    assert "pub" in found[0].msg
    assert "conf" not in found[0].msg


# ----------------------------------------------------------- public keys (item 18)


def test_e003_for_the_example_projects_public_key(settings: Any) -> None:
    assert DEV_KEY in PUBLIC_KEYS  # test_example_project: it is the example's key
    with_keys(settings, TEST_KEY_NEW, DEV_KEY)
    found = check_public_keys()
    assert ids(found) == ["oauth2_integrator.E003"]
    assert "key #2" in found[0].msg
    assert "public development key" in found[0].msg
    assert "oauth2_rotate_keys" in found[0].hint
    assert "oauth2_integrator.E003" in ids(run_checks(include_deployment_checks=True))
    assert "oauth2_integrator.E003" not in ids(run_checks())
    with_keys(settings, TEST_KEY_NEW)
    assert check_public_keys() == []
