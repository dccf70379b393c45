"""The status warns before a refresh token with a known lifetime dies.

LinkedIn, QuickBooks or GitHub Apps say how long a refresh token lives; when it
ends the connection ends, whatever the app does. The admin list, the change page
and ``oauth2_status`` say so two weeks ahead, and after.
"""

from __future__ import annotations

import datetime
import json

from django.core.management import call_command

from oauth2_integrator import status

from .conftest import in_seconds

DAY = 24 * 3600


def test_nothing_is_said_while_the_end_is_far(oauth_client, make_token):
    make_token(oauth_client, refresh_token_expires_at=in_seconds(60 * DAY))
    assert "refresh token" not in status.describe(oauth_client)


def test_two_weeks_ahead_the_operator_is_told(
    oauth_client, make_token, operator_client, capsys
):
    make_token(oauth_client, refresh_token_expires_at=in_seconds(5 * DAY + 60))
    said = status.describe(oauth_client)
    assert said.startswith("Connected, expires in ")
    assert "the refresh token expires in 5 days" in said
    assert "re-authorize the client before then" in said

    page = operator_client.get("/admin/oauth2_integrator/oauth2client/")
    assert "the refresh token expires in 5 days" in page.content.decode()
    call_command("oauth2_status", "--json")
    (row,) = json.loads(capsys.readouterr().out)
    assert "the refresh token expires in 5 days" in row["status"]


def test_after_the_end_it_says_to_re_authorize(oauth_client, make_token):
    make_token(oauth_client, refresh_token_expires_at=in_seconds(-2 * DAY - 60))
    said = status.describe(oauth_client)
    assert "the refresh token expired 2 days ago: re-authorize the client" in said


def test_the_warning_starts_at_fourteen_days(oauth_client, make_token):
    token = make_token(oauth_client)
    now = token.obtained_at + datetime.timedelta(days=1)
    token.refresh_token_expires_at = now + status.REFRESH_TOKEN_WARNING
    assert status.refresh_token_ending(token, now=now)
    token.refresh_token_expires_at += datetime.timedelta(seconds=1)
    assert status.refresh_token_ending(token, now=now) == ""
