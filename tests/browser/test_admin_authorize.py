"""The operator's path in a real browser: admin -> Authorize -> provider consent -> back.

Our site runs on pytest-django's live server (http://localhost:<port>), the provider
is the django-oauth-toolkit server of the e2e tests (http://127.0.0.1:<port>): two
hosts, so the two sites' session cookies stay apart as they would in production.
"""

from __future__ import annotations

import re
import secrets

import pytest
from django.contrib.auth.models import Permission, User

from oauth2_integrator import get_access_token
from oauth2_integrator.models import OAuth2Client, OAuth2Token, TokenStatus

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

OPERATOR_PASSWORD = "operator-browser-pass"
OWNER = "browser-resource-owner"


@pytest.fixture
def setup(live_server, authserver, transactional_db):  # type: ignore[no-untyped-def]
    owner_password = secrets.token_urlsafe(12)
    client_id = f"browser-{secrets.token_hex(4)}"
    application = authserver.register_application(
        client_id=client_id,
        redirect_uris=[f"{live_server.url}/oauth2/dot/callback/"],
        username=OWNER,
        password=owner_password,
    )
    client = OAuth2Client.objects.create(
        name="dot",
        display_name="DOT server",
        **authserver.client_fields(application),
    )
    operator = User.objects.create_user(
        "browser-operator", password=OPERATOR_PASSWORD, is_staff=True
    )
    operator.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="oauth2_integrator",
            codename__in=["authorize", "view_oauth2client", "change_oauth2client"],
        )
    )
    return {
        "base": live_server.url,
        "client": client,
        "change_url": f"{live_server.url}/admin/oauth2_integrator/oauth2client/{client.pk}/change/",
        "owner_password": owner_password,
        "application": application,
    }


def sign_in_to_admin(page, base: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "browser-operator")
    page.fill("#id_password", OPERATOR_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def pass_provider_login(page, setup) -> None:  # type: ignore[no-untyped-def]
    """The provider asks its own user to sign in (its admin login page) first."""
    page.wait_for_url(re.compile(r"http://127\.0\.0\.1:\d+/admin/login/"))
    page.fill("#id_username", OWNER)
    page.fill("#id_password", setup["owner_password"])
    page.click("input[type=submit]")
    page.wait_for_selector("#authorizationForm")


def test_operator_authorizes_a_client_from_the_admin(page, setup, authserver):  # type: ignore[no-untyped-def]
    sign_in_to_admin(page, setup["base"])
    page.goto(setup["change_url"])
    assert "Not authorized" in page.inner_text("body")

    page.click("#oauth2-authorize-button")
    pass_provider_login(page, setup)
    assert "Read the demo data" in page.inner_text("#authorizationForm")
    page.click("#authorizationForm input[name=allow]")

    page.wait_for_url(setup["change_url"])
    body = page.inner_text("body")
    assert "DOT server (dot) is connected." in body
    assert "Connected, expires in" in body
    assert "Re-authorize" in (page.text_content("#oauth2-authorize-button") or "")

    token = OAuth2Token.objects.get(client=setup["client"])
    assert token.status == TokenStatus.ACTIVE
    # The page shows the token masked, never whole.
    html = page.content()
    assert token.access_token not in html
    assert f"{token.access_token[:4]}…{token.access_token[-4:]}" in html
    # And the host code now gets a token the provider accepts.
    access_token = get_access_token("dot")
    assert authserver.introspect(setup["application"], access_token)["active"] is True


def test_denied_consent_shows_a_clear_page_and_changes_nothing(page, setup):  # type: ignore[no-untyped-def]
    sign_in_to_admin(page, setup["base"])
    page.goto(setup["change_url"])
    page.click("#oauth2-authorize-button")
    pass_provider_login(page, setup)

    with page.expect_response(re.compile(r"/oauth2/dot/callback/")) as answer:
        page.click("#authorizationForm input[type=submit]:not([name=allow])")
    assert answer.value.status == 400
    text = page.inner_text("#oauth2-problem")
    assert "denied at the provider (access_denied)" in text
    assert not OAuth2Token.objects.filter(client=setup["client"]).exists()

    page.click("text=Back to DOT server (dot)")
    page.wait_for_url(setup["change_url"])
    assert "Not authorized" in page.inner_text("body")
