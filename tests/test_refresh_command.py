"""``manage.py oauth2_refresh_tokens`` (issue 7 item 2): one summary line on stdout
for cron, a progress bar on a terminal, exit code 2 when a client needs an operator."""

from __future__ import annotations

import datetime
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from oauth2_integrator.models import OAuth2Token

from .conftest import OPS_ADMINS, TOKEN_URL, in_seconds
from .rotating_provider import RotatingProvider, running

ROOT = Path(__file__).resolve().parent.parent
NEW = {
    "access_token": "command-new-access-TTTT-5656",
    "refresh_token": "command-new-refresh-UUUU-7878",
    "token_type": "Bearer",
    "expires_in": 3600,
}
REFUSED_URL = "https://refused.example.test/token"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*args: str, stderr: io.StringIO | None = None) -> tuple[str, str, int]:
    out, err = io.StringIO(), stderr or io.StringIO()
    code = 0
    try:
        call_command("oauth2_refresh_tokens", *args, stdout=out, stderr=err)
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    return out.getvalue(), err.getvalue(), code


def idle(make_client: Any, make_token: Any, name: str, **fields: Any) -> OAuth2Token:
    return make_token(
        make_client(name=name, **fields),
        obtained_at=timezone.now() - datetime.timedelta(hours=30),
    )


@pytest.fixture(autouse=True)
def _admins(settings: Any) -> None:
    settings.ADMINS = OPS_ADMINS


def test_one_summary_line_and_exit_0(make_client, make_token, token_endpoint):
    idle(make_client, make_token, "acme")
    idle(make_client, make_token, "beta")
    make_token(make_client(name="fresh"), obtained_at=timezone.now())
    token_endpoint.post(TOKEN_URL, json=NEW)
    out, err, code = run()
    assert code == 0
    assert out.count("\n") == 1
    assert out.startswith("OAuth2 refresh: 2 token(s) looked at, 2 refreshed,")
    assert "0 need an operator" in out
    assert "[" not in err  # no progress bar when stderr is not a terminal
    assert len(token_endpoint.calls) == 2


def test_exit_code_2_when_a_client_needs_an_operator(
    make_client, make_token, token_endpoint, mailoutbox
):
    idle(make_client, make_token, "acme")
    idle(make_client, make_token, "refused", token_endpoint=REFUSED_URL)
    token_endpoint.post(TOKEN_URL, json=NEW)
    token_endpoint.post(REFUSED_URL, status=400, json={"error": "invalid_grant"})
    out, err, code = run()
    assert code == 2
    assert out.count("\n") == 1
    assert "1 refreshed" in out and "1 need an operator (refused)" in out
    assert "refused needs an operator:" in err and "invalid_grant" in err
    # The next run calls nobody for it, tells nobody again, and still fails.
    out, err, code = run()
    assert code == 2
    assert len(token_endpoint.calls) == 2
    assert len(mailoutbox) == 1


def test_transient_failures_do_not_fail_the_run(
    oauth_client, make_token, token_endpoint
):
    make_token(oauth_client, expires_at=in_seconds(60))
    token_endpoint.post(TOKEN_URL, status=503)
    out, _err, code = run()
    assert code == 0
    assert "1 failed" in out
    out, _err, code = run()
    assert "1 backing off" in out
    assert len(token_endpoint.calls) == 1


def test_client_force_and_dry_run(make_client, make_token, token_endpoint):
    make_token(make_client(name="acme"), obtained_at=timezone.now())
    idle(make_client, make_token, "beta")
    token_endpoint.post(TOKEN_URL, json=NEW)
    out, _, _ = run("--dry-run")
    assert "1 due (dry run: nothing sent)" in out
    assert len(token_endpoint.calls) == 0
    out, _, _ = run("--client", "acme")
    assert "0 token(s) looked at" in out
    out, _, _ = run("--client", "acme", "--force")
    assert "1 refreshed" in out
    assert len(token_endpoint.calls) == 1
    assert OAuth2Token.objects.get(client__name="beta").refreshed_at is None


def test_usage_errors(db):
    with pytest.raises(CommandError, match="no OAuth2 client named 'nope'"):
        call_command("oauth2_refresh_tokens", "--client", "nope")
    with pytest.raises(CommandError, match="--workers"):
        call_command("oauth2_refresh_tokens", "--workers", "0")


def test_progress_bar_on_a_terminal(make_client, make_token, token_endpoint):
    for name in ("acme", "beta", "gamma"):
        idle(make_client, make_token, name)
    token_endpoint.post(TOKEN_URL, json=NEW)
    out, err, code = run(stderr=Terminal())
    assert code == 0
    assert "\r[" + "#" * 30 + "] 3/3" in err
    assert "] 1/3" in err
    assert out.count("\n") == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("refused", [False, True], ids=["ok", "invalid_grant"])
def test_the_real_command_for_cron(make_client, make_token, refused):
    """A real process, as cron runs it: its exit code, one line on stdout, the
    logs on stderr."""
    if connection.vendor != "postgresql":
        pytest.skip("the subprocess needs a database it can share (PostgreSQL)")
    provider = RotatingProvider(
        "wrong-refresh-token-x" if refused else "stored-refresh-token-CCCC-2222-DDDD"
    )
    with running(provider):
        idle(make_client, make_token, "acme", token_endpoint=provider.url)
        db = connection.settings_dict
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "TEST_DATABASE_URL": (
                f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:"
                f"{db['PORT'] or 5432}/{db['NAME']}"
            ),
        }
        done = subprocess.run(
            [sys.executable, "manage.py", "oauth2_refresh_tokens"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == (2 if refused else 0), done.stderr
    assert done.stdout.count("\n") == 1, done.stdout
    assert done.stdout.startswith("OAuth2 refresh: 1 token(s) looked at")
    assert len(provider.calls) == 1
    if refused:
        assert "acme needs an operator" in done.stderr
        assert "invalid_grant" in done.stderr
    else:
        assert "Refreshed the access token of OAuth2 client 'acme'" in done.stderr
        token = OAuth2Token.objects.get()
        assert token.refresh_token == provider.refresh_token
    assert "stored-refresh-token" not in done.stderr + done.stdout
    assert provider.refresh_token is None or provider.refresh_token not in (
        done.stderr + done.stdout
    )
