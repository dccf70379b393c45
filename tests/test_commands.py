"""``oauth2_status`` and the shared status words; the commands as a deploy runs them."""

from __future__ import annotations

import datetime
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from oauth2_integrator.models import OAuth2Client, OAuth2Token, TokenStatus
from oauth2_integrator.status import describe
from tests.settings import TEST_KEY_NEW, TEST_KEY_OLD

from .conftest import CLIENT_SECRET

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def clients(
    make_client: Callable[..., OAuth2Client], make_token: Callable[..., OAuth2Token]
) -> dict[str, OAuth2Token | OAuth2Client]:
    """One client in each state, with distinct secrets to look for in the output."""
    now = timezone.now()
    made: dict[str, Any] = {}
    made["connected"] = make_token(
        make_client(name="connected", provider="generic"),
        access_token="connected-access-AAAA-0001",
        refresh_token="connected-refresh-BBBB-0002",
        expires_at=now + datetime.timedelta(hours=2, seconds=30),
        refreshed_at=datetime.datetime(2029, 12, 31, 23, 58, tzinfo=datetime.UTC),
    )
    made["forever"] = make_token(
        make_client(name="forever"),
        access_token="forever-access-CCCC-0003",
        refresh_token="",
        expires_at=None,
    )
    made["fresh"] = make_client(name="fresh")
    made["broken"] = make_token(
        make_client(name="broken"),
        access_token="broken-access-DDDD-0004",
        refresh_token="broken-refresh-EEEE-0005",
        status=TokenStatus.REAUTHORIZATION_REQUIRED,
        last_error="The provider answered invalid_grant: the refresh token was revoked.",
        last_error_at=now,
    )
    made["off"] = make_token(
        make_client(name="off", enabled=False),
        access_token="off-access-FFFF-0006",
    )
    made["stale"] = make_token(
        make_client(name="stale"),
        access_token="stale-access-GGGG-0007",
        refresh_token="stale-refresh-HHHH-0008",
        expires_at=now - datetime.timedelta(minutes=10, seconds=5),
    )
    made["dead"] = make_token(
        make_client(name="dead"),
        access_token="dead-access-IIII-0009",
        refresh_token="",
        expires_at=now - datetime.timedelta(days=3, minutes=1),
    )
    return made


SECRETS = [
    CLIENT_SECRET,
    "connected-access-AAAA-0001",
    "connected-refresh-BBBB-0002",
    "forever-access-CCCC-0003",
    "broken-access-DDDD-0004",
    "broken-refresh-EEEE-0005",
    "off-access-FFFF-0006",
    "stale-access-GGGG-0007",
    "stale-refresh-HHHH-0008",
    "dead-access-IIII-0009",
]

EXPECTED_STATUS = {
    "broken": "Needs re-authorization",
    "connected": "Connected, expires in 2 hours",
    "dead": "Needs re-authorization",
    "forever": "Connected, no expiry",
    "fresh": "Not authorized",
    "off": "Disabled",
    "stale": "Connected, expired 10 minutes ago (refreshed on next use)",
}


def status(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("oauth2_status", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
        assert secret[:12] not in text  # not even a recognisable prefix


def test_status_table(clients: dict[str, Any]) -> None:
    out, err = status()

    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "PROVIDER",
        "ENABLED",
        "STATUS",
        "EXPIRES",
        "AT",
        "(UTC)",
        "LAST",
        "REFRESH",
        "(UTC)",
        "LAST",
        "ERROR",
    ]
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert sorted(by_name) == sorted(EXPECTED_STATUS)  # one line per client
    for name, words in EXPECTED_STATUS.items():
        assert words in by_name[name], (name, by_name[name])
    assert by_name["connected"].split()[1:3] == ["generic", "yes"]
    assert by_name["off"].split()[2] == "no"
    assert "2029-12-31 23:58" in by_name["connected"]  # last refresh
    assert "never" in by_name["stale"]
    assert "The provider answered invalid_grant" in by_name["broken"]
    expires = clients["connected"].expires_at.isoformat()[:16].replace("T", " ")
    assert expires in by_name["connected"]
    assert err == ""
    assert_no_secret(out + err)


def test_status_json(clients: dict[str, Any]) -> None:
    out, err = status("--json")

    data = json.loads(out)
    assert [row["name"] for row in data] == sorted(EXPECTED_STATUS)
    rows = {row["name"]: row for row in data}
    assert {name: row["status"] for name, row in rows.items()} == EXPECTED_STATUS
    connected = rows["connected"]
    assert connected["provider"] == "generic"
    assert connected["enabled"] is True
    assert connected["token_status"] == "active"
    assert connected["expires_at"] == clients["connected"].expires_at.isoformat()
    assert connected["refreshed_at"] == "2029-12-31T23:58:00+00:00"
    assert rows["fresh"]["token_status"] is None
    assert rows["fresh"]["expires_at"] is None
    assert rows["off"]["enabled"] is False
    assert rows["broken"]["token_status"] == "reauthorization_required"
    assert rows["broken"]["last_error"].startswith(
        "The provider answered invalid_grant"
    )
    assert rows["broken"]["last_error_at"] is not None
    assert_no_secret(out + err)


def test_status_of_selected_clients(clients: dict[str, Any]) -> None:
    data = json.loads(status("--json", "fresh", "off")[0])
    assert [row["name"] for row in data] == ["fresh", "off"]

    with pytest.raises(CommandError, match="No OAuth2 client named nope"):
        status("fresh", "nope")


def test_status_without_clients(db: Any) -> None:
    assert "No OAuth2 clients are registered" in status()[0]
    assert json.loads(status("--json")[0]) == []


def test_status_needs_no_key_to_read_secrets(
    make_client: Callable[..., OAuth2Client], make_token: Callable[..., OAuth2Token]
) -> None:
    """An operator checks status exactly when keys are wrong; it must still work."""
    with override_settings(OAUTH2_INTEGRATOR={"ENCRYPTION_KEYS": [TEST_KEY_OLD]}):
        make_token(make_client(name="acme"), expires_at=None)

    with override_settings(OAUTH2_INTEGRATOR={"ENCRYPTION_KEYS": [TEST_KEY_NEW]}):
        data = json.loads(status("--json")[0])

    assert data[0]["status"] == "Connected, no expiry"


def test_describe(
    make_client: Callable[..., OAuth2Client], make_token: Callable[..., OAuth2Token]
) -> None:
    client = make_client()
    assert describe(client, now=NOW) == "Not authorized"
    token = make_token(client, expires_at=NOW + datetime.timedelta(days=1, hours=3))
    assert describe(client, now=NOW) == "Connected, expires in 1 day, 3 hours"
    assert describe(
        client, now=NOW + datetime.timedelta(days=1, hours=2, minutes=59)
    ) == ("Connected, expires in 1 minute")
    # A token passed in (as an admin list would, to save a query) is used as is.
    assert describe(client, token=None, now=NOW) == "Not authorized"
    token.refresh_token = ""
    assert describe(client, token=token, now=NOW + datetime.timedelta(days=2)) == (
        "Needs re-authorization"
    )
    OAuth2Token.objects.filter(pk=token.pk).update(status=TokenStatus.REVOKED)
    assert describe(client, now=NOW) == "Disconnected"
    OAuth2Client.objects.filter(pk=client.pk).update(enabled=False)
    client.refresh_from_db()
    assert describe(client, now=NOW) == "Disabled"


def run_manage(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/clients.json"], "Cannot read /nonexistent/clients.json"),
        (["-"], "standard input is not valid JSON"),
    ],
)
def test_import_errors_reach_a_shell_without_traceback(
    args: list[str], message: str
) -> None:
    """What a deploy script sees: exit status 1 and one line, not a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "django", "oauth2_import_clients", *args],
        cwd=REPO,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        input="{not json",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.startswith("CommandError: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_commands_have_help() -> None:
    for command in ("oauth2_import_clients", "oauth2_rotate_keys", "oauth2_status"):
        result = run_manage(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout


def test_status_never_prints_the_credentials_of_a_url_in_a_stored_error(
    make_client: Callable[..., OAuth2Client], make_token: Callable[..., OAuth2Token]
) -> None:
    """Errors stored before URLs with credentials were refused (issue 5, item 5)."""
    url = "https://svc-user:Pa55-in-the-URL-9Qz@auth.example.test/oauth/token"
    make_token(
        make_client(name="leaky", token_endpoint=url),
        last_error=f"Could not reach {url}: timed out",
        last_error_at=timezone.now(),
    )
    table, _ = status()
    data = json.loads(status("--json")[0])
    for text in (table, json.dumps(data)):
        assert "Pa55-in-the-URL-9Qz" not in text
        assert "svc-user" not in text
    assert data[0]["last_error"] == (
        "Could not reach https://***@auth.example.test/oauth/token: timed out"
    )
    assert "https://***@auth.example.test" in table
