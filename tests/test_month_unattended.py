"""Issue 7's "Done when": a token set stays alive for a simulated month, unattended.

Against a strict local provider (a real HTTP server on 127.0.0.1) that rotates
refresh tokens on every use and revokes a refresh token left unused for three days,
the month has:

- a daily sweep at about 03:00 (``manage.py oauth2_refresh_tokens``, as cron runs it);
- five-day access tokens for the first two weeks, with host traffic on some days
  only and nobody asking for ten days: the access token never needs a refresh, so
  only the sweep's idle refresh keeps the refresh token alive; then one-hour
  access tokens;
- a provider outage of six hours with three callers every two minutes: the provider
  sees at most one call per back-off step (counted and checked step by step), a
  still-valid token keeps being served, an expired one raises TokenRefreshError;
- a key rotation (``oauth2_rotate_keys`` with a new key first, the old key dropped
  the next day);

and no human step: nobody re-authorizes, nobody is e-mailed. At the end
``get_access_token`` works, the provider accepts the token, and the provider's
current refresh token is the stored one.

Time travel: ``django.utils.timezone.now`` is patched (the app, its models and the
provider all read it), so a month runs in seconds.
"""

from __future__ import annotations

import datetime
import io
import itertools
from collections.abc import Iterator
from unittest import mock

import pytest
import requests
from django.core.management import call_command

from oauth2_integrator import TokenRefreshError, get_access_token
from oauth2_integrator.models import OAuth2Token

from .conftest import OPS_ADMINS
from .rotating_provider import RotatingProvider, running
from .settings import TEST_KEY_NEW, TEST_KEY_OLD

FIRST_REFRESH = "month-first-refresh-token-GGGG-4545"
START = datetime.datetime(2031, 3, 1, 0, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
HOUR = datetime.timedelta(hours=1)
MINUTE = datetime.timedelta(minutes=1)

SHORT_TOKENS_FROM = START + 14 * DAY + 12 * HOUR
OUTAGE_DAY = 16
OUTAGE = (START + OUTAGE_DAY * DAY + 2 * HOUR, START + OUTAGE_DAY * DAY + 8 * HOUR)
QUIET_DAYS = range(4, 14)  # nobody asks for a token
ROTATION = START + 20 * DAY + 12 * HOUR


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime.datetime:
        return self.now


@pytest.fixture
def clock() -> Iterator[Clock]:
    clock = Clock()
    with mock.patch("django.utils.timezone.now", side_effect=clock):
        yield clock


def events() -> list[tuple[datetime.datetime, str]]:
    """The month, in order: (when, what)."""
    plan: list[tuple[datetime.datetime, str]] = []
    for day in range(30):
        midnight = START + day * DAY
        # cron at 03:00, a few seconds early or late from one day to the next
        plan.append(
            (
                midnight + 3 * HOUR + (day % 3 - 1) * 7 * datetime.timedelta(seconds=1),
                "sweep",
            )
        )
        if day in QUIET_DAYS:
            continue
        if day == OUTAGE_DAY:
            moment = midnight + 1 * HOUR
            while moment < midnight + 10 * HOUR:
                plan.append((moment, "use"))
                moment += 2 * MINUTE
            continue
        for hour in (9, 21):
            plan.append((midnight + hour * HOUR, "use"))
    plan.append((ROTATION, "rotate"))
    plan.append((ROTATION + DAY, "drop-old-key"))
    return sorted(plan)


def sweep() -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("oauth2_refresh_tokens", stdout=out, stderr=err)  # raises on exit 2
    return out.getvalue()


def test_a_month_without_a_human(
    clock, make_client, settings, mailoutbox, secret_values
):
    settings.ADMINS = OPS_ADMINS
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "ENCRYPTION_KEYS": [TEST_KEY_OLD],
    }
    provider = RotatingProvider(
        FIRST_REFRESH, idle_revoke_after=3 * DAY, access_lifetime=5 * 86400
    )
    with running(provider):
        client = make_client(token_endpoint=provider.url)
        OAuth2Token.objects.create(
            client=client,
            access_token="month-first-access-token-HHHH-6767",
            refresh_token=FIRST_REFRESH,
            obtained_at=START,
            expires_at=START + 5 * DAY,
        )
        served_during_outage = 0
        refused_during_outage: list[str] = []
        sweeps: list[str] = []
        for when, what in events():
            clock.now = when
            provider.outage = OUTAGE[0] <= when < OUTAGE[1]
            if when >= SHORT_TOKENS_FROM:
                provider.access_lifetime = 3600
            if what == "sweep":
                sweeps.append(sweep())
            elif what == "use":
                for _ in range(3):  # three workers ask
                    try:
                        get_access_token("acme")
                    except TokenRefreshError as exc:
                        assert OUTAGE[0] <= when < OUTAGE[1] + HOUR, exc
                        refused_during_outage.append(str(exc))
                    else:
                        if OUTAGE[0] <= when < OUTAGE[1]:
                            served_during_outage += 1
            elif what == "rotate":
                settings.OAUTH2_INTEGRATOR = {
                    **settings.OAUTH2_INTEGRATOR,
                    "ENCRYPTION_KEYS": [TEST_KEY_NEW, TEST_KEY_OLD],
                }
                call_command("oauth2_rotate_keys", stdout=io.StringIO())
            elif what == "drop-old-key":
                settings.OAUTH2_INTEGRATOR = {
                    **settings.OAUTH2_INTEGRATOR,
                    "ENCRYPTION_KEYS": [TEST_KEY_NEW],
                }

        clock.now = START + 30 * DAY + 12 * HOUR
        access_token = get_access_token("acme")
        api = requests.get(
            provider.api_url,
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=5,
        )

    token = OAuth2Token.objects.get()
    # The end state: working, and in step with the provider.
    assert api.status_code == 200
    assert token.refresh_token == provider.refresh_token
    assert token.status == "active"
    assert provider.revoked_for_idleness == 0
    assert [c for c in provider.calls if c.status not in (200, 503)] == []
    # No human step: nobody re-authorized, nobody was told.
    assert token.obtained_at == START
    assert mailoutbox == []
    assert all("0 need an operator" in line for line in sweeps)
    # The quiet days were kept alive by the sweep alone.
    quiet = [
        c
        for c in provider.calls
        if START + QUIET_DAYS[0] * DAY + 12 * HOUR
        <= c.at
        < START + QUIET_DAYS[-1] * DAY
    ]
    at_three = [c.at.replace(hour=3, minute=0, second=0) for c in quiet]
    assert quiet and all(
        abs(c.at - three) <= MINUTE for c, three in zip(quiet, at_three, strict=True)
    )
    # The outage: one call per back-off step, while callers kept asking.
    outage_calls = [c for c in provider.calls if c.status == 503]
    assert outage_calls
    assert all(OUTAGE[0] <= c.at < OUTAGE[1] for c in outage_calls)
    for step, (before, after) in enumerate(itertools.pairwise(outage_calls), start=1):
        least = min(3600, 30 * 2 ** (step - 1))
        assert (after.at - before.at).total_seconds() >= least, (step, before, after)
    asked = 3 * 6 * 30  # three callers every two minutes for six hours
    assert len(outage_calls) <= 13 < asked
    assert served_during_outage > 0  # a still-valid token was served
    assert refused_during_outage  # and an expired one said when the next try is
    assert all("next attempt" in m or "asked again" in m for m in refused_during_outage)
    # The first call after the outage ended brought the token back.
    after_outage = [c for c in provider.calls if c.at >= OUTAGE[1]]
    assert after_outage[0].status == 200
    assert after_outage[0].at <= OUTAGE[1] + HOUR + 4 * MINUTE
