"""The admin: status words, the Authorize button, a write-only secret, masked tokens,
the "Refresh now" action and the provider pre-fill."""

from __future__ import annotations

import datetime
import html
import json
import re
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
import responses
from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from oauth2_integrator import admin as integrator_admin
from oauth2_integrator.masking import mask
from oauth2_integrator.models import (
    AuthorizationRequest,
    OAuth2Client,
    OAuth2Token,
    TokenStatus,
)
from oauth2_integrator.providers import ProviderProfile, registry
from oauth2_integrator.status import describe

from .conftest import AUTHORIZE_URL, CLIENT_SECRET, TOKEN_URL, raw_secret

CHANGELIST = "/admin/oauth2_integrator/oauth2client/"
ADD_URL = "/admin/oauth2_integrator/oauth2client/add/"

# Distinctive values: any 5 characters of them in a page would be a leak.
ACCESS_TOKEN = "ya29.Zq8-admin-test-access-MIDDLE-token-f3Qx"
REFRESH_TOKEN = "1//0g-admin-test-refresh-MIDDLE-token-9kLw"
NEW_SECRET = "n3w-Secret-Kq7-for-the-admin-test-XyZ8"


# --------------------------------------------------------------------- helpers


def change_url(client: OAuth2Client) -> str:
    return reverse("admin:oauth2_integrator_oauth2client_change", args=[client.pk])


def page_text(response: Any) -> str:
    """The page as an operator reads it (entities decoded)."""
    return html.unescape(response.content.decode())


def assert_no_leak(text: str, secret: str) -> None:
    """Neither the secret nor more than its first/last four characters appear."""
    assert secret not in text
    assert secret[:5] not in text
    assert secret[-5:] not in text
    assert secret[4:-4] not in text


def row_for(text: str, name: str) -> str:
    """The changelist row of one client."""
    rows = re.findall(r"<tr[^>]*>.*?</tr>", text, flags=re.S)
    matching = [row for row in rows if f">{name}</a>" in row]
    assert len(matching) == 1, f"no single row for {name!r}"
    return matching[0]


class FormFinder(HTMLParser):
    """Collects every <form> with its attributes, inputs and button ids."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "form":
            self._current = {"attrs": values, "inputs": {}, "buttons": []}
            self.forms.append(self._current)
        elif self._current is not None and tag == "input" and values.get("name"):
            self._current["inputs"][values["name"]] = values.get("value", "")
        elif self._current is not None and tag == "button":
            self._current["buttons"].append(values.get("id", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def authorize_form(text: str) -> dict[str, Any] | None:
    finder = FormFinder()
    finder.feed(text)
    found = [f for f in finder.forms if "oauth2-authorize-button" in f["buttons"]]
    assert len(found) <= 1
    return found[0] if found else None


def form_data(client: OAuth2Client, **overrides: Any) -> dict[str, Any]:
    """What the change form posts when the operator only presses Save."""
    data: dict[str, Any] = {
        "name": client.name,
        "display_name": client.display_name,
        "provider": client.provider,
        "client_id": client.client_id,
        "client_secret": "",
        "token_auth_method": client.token_auth_method,
        "scope": client.scope,
        "authorization_endpoint": client.authorization_endpoint,
        "token_endpoint": client.token_endpoint,
        "revocation_endpoint": client.revocation_endpoint,
        "issuer": client.issuer,
        "redirect_uri": client.redirect_uri,
        "extra_authorize_params": json.dumps(client.extra_authorize_params),
        "extra_token_params": json.dumps(client.extra_token_params),
        "_save": "Save",
    }
    if client.enabled:
        data["enabled"] = "on"
    if client.use_pkce:
        data["use_pkce"] = "on"
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def run_action(browser: Client, *clients: OAuth2Client) -> Any:
    return browser.post(
        CHANGELIST,
        {"action": "refresh_now", "_selected_action": [c.pk for c in clients]},
        follow=True,
    )


# -------------------------------------------------------------------- fixtures


@pytest.fixture
def staff_without_authorize(db: Any) -> Client:
    """May view and change clients, but not start a login or refresh."""
    user = User.objects.create_user("viewer", password="viewer-pass", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type=ContentType.objects.get_for_model(OAuth2Client),
            codename__in=["view_oauth2client", "change_oauth2client"],
        )
    )
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def connected(
    oauth_client: OAuth2Client, make_token: Callable[..., OAuth2Token]
) -> OAuth2Token:
    return make_token(
        oauth_client,
        access_token=ACCESS_TOKEN,
        refresh_token=REFRESH_TOKEN,
        token_type="Bearer",
        scope="read",
    )


@pytest.fixture
def token_endpoint() -> Iterator[responses.RequestsMock]:
    """Mocks the provider; any other outgoing request fails (no internet)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# --------------------------------------------------------------- registration


def test_pending_logins_are_not_in_the_admin() -> None:
    assert admin.site.is_registered(OAuth2Client)
    assert not admin.site.is_registered(AuthorizationRequest)


# -------------------------------------------------------------- status words


def test_status_words_for_every_state(
    make_client: Callable[..., OAuth2Client], make_token: Callable[..., OAuth2Token]
) -> None:
    now = timezone.now()
    client = make_client()
    assert describe(client, token=None, now=now) == "Not authorized"

    token = make_token(client, expires_at=now + datetime.timedelta(hours=1))
    assert describe(client, token=token, now=now) == "Connected, expires in 1 hour"
    token.expires_at = now + datetime.timedelta(minutes=5)
    assert describe(client, token=token, now=now) == "Connected, expires in 5 minutes"
    token.expires_at = None
    assert describe(client, token=token, now=now) == "Connected, no expiry"

    token.expires_at = now - datetime.timedelta(minutes=10)
    assert describe(client, token=token, now=now) == (
        "Connected, expired 10 minutes ago (refreshed on next use)"
    )
    token.refresh_token = ""
    assert describe(client, token=token, now=now) == "Needs re-authorization"

    token.expires_at = now + datetime.timedelta(hours=1)
    token.refresh_token = REFRESH_TOKEN
    token.status = TokenStatus.REAUTHORIZATION_REQUIRED
    assert describe(client, token=token, now=now) == "Needs re-authorization"
    token.status = TokenStatus.REVOKED
    assert describe(client, token=token, now=now) == "Disconnected"

    token.status = TokenStatus.ACTIVE
    client.enabled = False
    assert describe(client, token=token, now=now) == "Disabled"


def test_changelist_shows_status_of_each_client(
    operator_client: Client,
    make_client: Callable[..., OAuth2Client],
    make_token: Callable[..., OAuth2Token],
) -> None:
    make_client(name="fresh")
    soon = make_client(name="soon")
    make_token(
        soon, expires_at=timezone.now() + datetime.timedelta(hours=2, minutes=30)
    )
    forever = make_client(name="forever")
    make_token(forever, expires_at=None)
    broken = make_client(name="broken")
    make_token(broken, status=TokenStatus.REAUTHORIZATION_REQUIRED)
    off = make_client(name="off", enabled=False)
    make_token(off)

    response = operator_client.get(CHANGELIST)
    assert response.status_code == 200
    text = page_text(response)
    assert "Not authorized" in row_for(text, "fresh")
    assert "Connected, expires in 2 hours" in row_for(text, "soon")
    assert "Connected, no expiry" in row_for(text, "forever")
    assert "Needs re-authorization" in row_for(text, "broken")
    assert "Disabled" in row_for(text, "off")


def test_changelist_reads_tokens_in_one_query(
    operator_client: Client,
    make_client: Callable[..., OAuth2Client],
    make_token: Callable[..., OAuth2Token],
) -> None:
    """A page of six connected clients: exactly one query reads the token table,
    and it loads no encrypted column."""
    for n in range(6):
        make_token(make_client(name=f"client-{n}"))
    table = OAuth2Token._meta.db_table
    with CaptureQueriesContext(connection) as captured:
        response = operator_client.get(CHANGELIST)
    assert response.status_code == 200
    assert len(re.findall(r"Connected, expires in", page_text(response))) == 6
    token_reads = [
        query["sql"]
        for query in captured.captured_queries
        if query["sql"].lstrip().upper().startswith("SELECT")
        and f'FROM "{table}"' in query["sql"]
    ]
    assert len(token_reads) == 1, token_reads
    selected = token_reads[0].split(" FROM ")[0].removeprefix("SELECT ").split(", ")
    for column in ("access_token", "refresh_token", "extra"):
        assert f'"{table}"."{column}"' not in selected


def test_changelist_decrypts_nothing_so_it_works_when_a_key_is_missing(
    operator_client: Client,
    make_client: Callable[..., OAuth2Client],
    make_token: Callable[..., OAuth2Token],
    settings: Any,
) -> None:
    from cryptography.fernet import Fernet

    make_token(make_client(name="one"))
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
    }
    page = operator_client.get(CHANGELIST)
    assert page.status_code == 200
    assert "Connected, expires in" in page.content.decode()


def test_changelist_search_and_filters(
    operator_client: Client, make_client: Callable[..., OAuth2Client]
) -> None:
    make_client(name="billing", display_name="Billing API")
    make_client(name="crm", display_name="Sales CRM", enabled=False)

    found = page_text(operator_client.get(CHANGELIST, {"q": "Sales"}))
    assert ">crm</a>" in found
    assert ">billing</a>" not in found
    disabled = page_text(operator_client.get(CHANGELIST, {"enabled__exact": "0"}))
    assert ">crm</a>" in disabled
    assert ">billing</a>" not in disabled
    generic = operator_client.get(CHANGELIST, {"provider__exact": "generic"})
    assert ">billing</a>" in page_text(generic)


# ---------------------------------------------------------- Authorize button


def test_authorize_button_posts_to_the_login_with_csrf(
    operator_client: Client, oauth_client: OAuth2Client
) -> None:
    response = operator_client.get(change_url(oauth_client))
    assert response.status_code == 200
    text = page_text(response)
    form = authorize_form(text)
    assert form is not None
    assert form["attrs"]["method"].lower() == "post"
    assert form["attrs"]["action"] == reverse("oauth2_integrator:login", args=["acme"])
    assert form["inputs"]["csrfmiddlewaretoken"]
    assert form["inputs"]["next"] == change_url(oauth_client)
    assert re.search(r'id="oauth2-authorize-button"[^>]*>\s*Authorize\s*<', text)


def test_button_reads_reauthorize_when_a_token_exists(
    operator_client: Client, oauth_client: OAuth2Client, connected: OAuth2Token
) -> None:
    text = page_text(operator_client.get(change_url(oauth_client)))
    assert authorize_form(text) is not None
    assert re.search(r'id="oauth2-authorize-button"[^>]*>\s*Re-authorize\s*<', text)


def test_one_click_on_the_button_starts_the_login(
    operator: User, oauth_client: OAuth2Client
) -> None:
    """The button's form, posted as is by a CSRF-checking client, reaches the provider."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)
    form = authorize_form(page_text(browser.get(change_url(oauth_client))))
    assert form is not None
    response = browser.post(form["attrs"]["action"], form["inputs"])
    assert response.status_code == 302
    assert response["Location"].startswith(AUTHORIZE_URL + "?")
    pending = AuthorizationRequest.objects.get(client=oauth_client)
    assert pending.return_url == change_url(oauth_client)


def test_no_button_without_the_authorize_permission(
    staff_without_authorize: Client, oauth_client: OAuth2Client
) -> None:
    response = staff_without_authorize.get(change_url(oauth_client))
    assert response.status_code == 200
    assert "oauth2-authorize-button" not in page_text(response)
    assert authorize_form(page_text(response)) is None


def test_no_button_for_a_disabled_client(
    operator_client: Client, make_client: Callable[..., OAuth2Client]
) -> None:
    client = make_client(enabled=False)
    assert "oauth2-authorize-button" not in page_text(
        operator_client.get(change_url(client))
    )


def test_no_button_on_the_add_page(operator_client: Client, db: Any) -> None:
    response = operator_client.get(ADD_URL)
    assert response.status_code == 200
    assert "oauth2-authorize-button" not in page_text(response)


# ------------------------------------------------- secrets and masked tokens


def test_change_page_shows_only_masked_secrets(
    operator_client: Client, oauth_client: OAuth2Client, connected: OAuth2Token
) -> None:
    text = page_text(operator_client.get(change_url(oauth_client)))
    for secret in (CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN):
        assert secret not in text
        assert secret[4:-4] not in text
    assert_no_leak(text, ACCESS_TOKEN)
    assert_no_leak(text, REFRESH_TOKEN)
    assert mask(CLIENT_SECRET) in text
    assert mask(ACCESS_TOKEN) in text
    assert mask(REFRESH_TOKEN) in text
    assert 'type="password"' in text
    assert re.search(
        r'<input type="password" name="client_secret"(?![^>]*value=)', text
    )


def test_token_details_are_read_only_on_the_change_page(
    operator_client: Client,
    oauth_client: OAuth2Client,
    make_token: Callable[..., OAuth2Token],
) -> None:
    make_token(
        oauth_client,
        access_token=ACCESS_TOKEN,
        refresh_token="",
        token_type="Bearer",
        scope="read only-this",
        status=TokenStatus.REAUTHORIZATION_REQUIRED,
        last_error="The provider answered invalid_grant: token revoked",
        last_error_at=timezone.now(),
    )
    response = operator_client.get(change_url(oauth_client))
    text = page_text(response)
    fields = response.context["adminform"].form.fields
    assert "access_token" not in fields
    assert "token_access_token" not in fields  # read-only, not a form field
    for words in (
        "Needs re-authorization",
        mask(ACCESS_TOKEN),
        "Bearer",
        "read only-this",
        "The provider answered invalid_grant: token revoked",
        "Obtained at",
        "Refreshed at",
        "Expires at",
    ):
        assert words in text
    assert re.search(r"Refresh token:\s*</label>\s*<div class=\"readonly\">none<", text)
    assert re.search(
        r"Refreshed at:\s*</label>\s*<div class=\"readonly\">not yet<", text
    )
    assert re.search(
        r"Expires at:\s*</label>\s*<div class=\"readonly\">[^<]+\(in ", text
    )
    assert re.search(
        r"Obtained at:\s*</label>\s*<div class=\"readonly\">[^<]+ ago\)<", text
    )


def test_change_page_says_when_there_is_no_expiry(
    operator_client: Client,
    oauth_client: OAuth2Client,
    make_token: Callable[..., OAuth2Token],
) -> None:
    make_token(oauth_client, expires_at=None)
    text = page_text(operator_client.get(change_url(oauth_client)))
    assert "Connected, no expiry" in text
    assert "no expiry given by the provider" in text


def test_change_page_without_token(
    operator_client: Client, oauth_client: OAuth2Client
) -> None:
    text = page_text(operator_client.get(change_url(oauth_client)))
    assert "Not authorized" in text
    assert re.search(r"Access token:\s*</label>\s*<div class=\"readonly\">none<", text)


def test_secret_help_text_says_not_set(
    operator_client: Client, make_client: Callable[..., OAuth2Client]
) -> None:
    client = make_client(client_secret="", token_auth_method="none")
    assert "not set" in page_text(operator_client.get(change_url(client)))


def test_blank_secret_keeps_the_stored_one(
    operator_client: Client, oauth_client: OAuth2Client
) -> None:
    response = operator_client.post(
        change_url(oauth_client), form_data(oauth_client, display_name="Renamed")
    )
    assert response.status_code == 302, page_text(response)
    oauth_client.refresh_from_db()
    assert oauth_client.display_name == "Renamed"
    assert oauth_client.client_secret == CLIENT_SECRET
    assert CLIENT_SECRET not in raw_secret(oauth_client)
    entry = LogEntry.objects.get(object_id=str(oauth_client.pk), action_flag=CHANGE)
    assert "Client secret" not in entry.get_change_message()


def test_typed_secret_replaces_the_stored_one_encrypted(
    operator_client: Client, oauth_client: OAuth2Client
) -> None:
    response = operator_client.post(
        change_url(oauth_client), form_data(oauth_client, client_secret=NEW_SECRET)
    )
    assert response.status_code == 302, page_text(response)
    oauth_client.refresh_from_db()
    assert oauth_client.client_secret == NEW_SECRET
    stored = raw_secret(oauth_client)
    assert NEW_SECRET not in stored
    assert NEW_SECRET[4:-4] not in stored

    entry = LogEntry.objects.get(object_id=str(oauth_client.pk), action_flag=CHANGE)
    assert "Client secret" in entry.get_change_message()
    history = page_text(
        operator_client.get(
            reverse(
                "admin:oauth2_integrator_oauth2client_history", args=[oauth_client.pk]
            )
        )
    )
    assert "Client secret" in history
    assert_no_leak(history, NEW_SECRET)
    page = page_text(operator_client.get(change_url(oauth_client)))
    assert_no_leak(page, NEW_SECRET)
    assert mask(NEW_SECRET) in page


def test_form_with_errors_never_echoes_a_secret(
    operator_client: Client, oauth_client: OAuth2Client
) -> None:
    response = operator_client.post(
        change_url(oauth_client),
        form_data(
            oauth_client, client_secret=NEW_SECRET, extra_authorize_params="[1, 2]"
        ),
    )
    assert response.status_code == 200
    text = page_text(response)
    assert "Enter a JSON object" in text
    assert_no_leak(text, NEW_SECRET)
    assert CLIENT_SECRET not in text
    oauth_client.refresh_from_db()
    assert oauth_client.client_secret == CLIENT_SECRET


def test_clear_secret_for_a_public_client(
    operator_client: Client, oauth_client: OAuth2Client
) -> None:
    response = operator_client.post(
        change_url(oauth_client),
        form_data(oauth_client, token_auth_method="none", clear_client_secret="on"),
    )
    assert response.status_code == 302, page_text(response)
    oauth_client.refresh_from_db()
    assert oauth_client.client_secret == ""
    assert oauth_client.token_auth_method == "none"


def test_clearing_the_secret_of_a_confidential_client_is_refused(
    operator_client: Client, oauth_client: OAuth2Client
) -> None:
    response = operator_client.post(
        change_url(oauth_client), form_data(oauth_client, clear_client_secret="on")
    )
    assert response.status_code == 200
    assert "A client secret is required" in page_text(response)
    oauth_client.refresh_from_db()
    assert oauth_client.client_secret == CLIENT_SECRET


def test_typing_and_clearing_at_once_is_refused(
    operator_client: Client, oauth_client: OAuth2Client
) -> None:
    response = operator_client.post(
        change_url(oauth_client),
        form_data(
            oauth_client,
            token_auth_method="none",
            client_secret=NEW_SECRET,
            clear_client_secret="on",
        ),
    )
    assert response.status_code == 200
    text = page_text(response)
    assert "not both" in text
    assert_no_leak(text, NEW_SECRET)


def add_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "newco",
        "display_name": "New Co",
        "provider": "generic",
        "enabled": "on",
        "client_id": "newco-id",
        "client_secret": "",
        "token_auth_method": "client_secret_basic",
        "use_pkce": "on",
        "scope": "read",
        "authorization_endpoint": AUTHORIZE_URL,
        "token_endpoint": TOKEN_URL,
        "revocation_endpoint": "",
        "issuer": "",
        "redirect_uri": "",
        "extra_authorize_params": "{}",
        "extra_token_params": "{}",
        "_save": "Save",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_adding_a_confidential_client_without_secret_is_an_error(
    operator_client: Client, method: str
) -> None:
    response = operator_client.post(ADD_URL, add_data(token_auth_method=method))
    assert response.status_code == 200
    text = page_text(response)
    assert "A client secret is required" in text
    assert "None: public client" in text
    assert not OAuth2Client.objects.filter(name="newco").exists()


def test_adding_a_public_client_needs_no_secret(
    operator_client: Client, db: Any
) -> None:
    response = operator_client.post(ADD_URL, add_data(token_auth_method="none"))
    assert response.status_code == 302, page_text(response)
    assert OAuth2Client.objects.get(name="newco").client_secret == ""


def test_adding_a_client_with_secret_stores_it_encrypted(
    operator_client: Client, db: Any
) -> None:
    response = operator_client.post(
        ADD_URL,
        add_data(
            client_secret=NEW_SECRET, extra_authorize_params='{"prompt": "consent"}'
        ),
    )
    assert response.status_code == 302, page_text(response)
    client = OAuth2Client.objects.get(name="newco")
    assert client.client_secret == NEW_SECRET
    assert client.extra_authorize_params == {"prompt": "consent"}
    assert NEW_SECRET not in raw_secret(client)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[1, 2]", "Enter a JSON object"),
        ('"offline"', "Enter a JSON object"),
        ('{"nested": {"a": 1}}', "must be a string, number or boolean"),
        ("{not json", "Enter a valid JSON"),
    ],
)
def test_extra_params_must_be_a_flat_json_object(
    operator_client: Client, oauth_client: OAuth2Client, value: str, message: str
) -> None:
    for field in ("extra_authorize_params", "extra_token_params"):
        response = operator_client.post(
            change_url(oauth_client), form_data(oauth_client, **{field: value})
        )
        assert response.status_code == 200
        assert message in page_text(response)
        assert response.context["adminform"].form.errors[field]


def test_emptied_extra_params_mean_none(
    operator_client: Client, make_client: Callable[..., OAuth2Client]
) -> None:
    client = make_client(extra_authorize_params={"a": "b"}, extra_token_params={"c": 1})
    response = operator_client.post(
        change_url(client),
        form_data(client, extra_authorize_params="", extra_token_params=""),
    )
    assert response.status_code == 302, page_text(response)
    client.refresh_from_db()
    assert client.extra_authorize_params == {}
    assert client.extra_token_params == {}


# ------------------------------------------------------------- Refresh now


def test_refresh_now_updates_the_token_and_writes_history(
    operator_client: Client,
    oauth_client: OAuth2Client,
    connected: OAuth2Token,
    operator: User,
    token_endpoint: responses.RequestsMock,
) -> None:
    new_access = "ya29.brand-NEW-access-token-after-refresh-77Aa"
    token_endpoint.post(
        TOKEN_URL,
        json={"access_token": new_access, "token_type": "Bearer", "expires_in": 7200},
    )
    response = run_action(operator_client, oauth_client)
    assert response.status_code == 200
    text = page_text(response)
    assert "Refreshed the access token of Acme API (acme)." in text
    assert_no_leak(text, new_access)

    assert len(token_endpoint.calls) == 1
    assert "refresh_token=" + REFRESH_TOKEN.replace("/", "%2F") in str(
        token_endpoint.calls[0].request.body
    )
    token = OAuth2Token.objects.get(pk=connected.pk)
    assert token.access_token == new_access
    assert token.refresh_token == REFRESH_TOKEN  # kept: the provider sent no new one
    assert token.refreshed_at is not None
    assert token.expires_at is not None
    assert token.expires_at > timezone.now() + datetime.timedelta(minutes=110)

    entry = LogEntry.objects.get(object_id=str(oauth_client.pk))
    assert entry.action_flag == CHANGE
    assert entry.user_id == operator.pk
    assert entry.get_change_message() == "Refreshed the access token"


def test_refresh_now_invalid_grant_asks_for_reauthorization(
    operator_client: Client,
    oauth_client: OAuth2Client,
    connected: OAuth2Token,
    token_endpoint: responses.RequestsMock,
) -> None:
    token_endpoint.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_grant", "error_description": "Token has been revoked."},
    )
    response = run_action(operator_client, oauth_client)
    assert response.status_code == 200
    text = page_text(response)
    assert "Could not refresh Acme API (acme)" in text
    assert "invalid_grant" in text
    assert "re-authorize" in text
    assert "Needs re-authorization" in row_for(text, "acme")

    token = OAuth2Token.objects.get(pk=connected.pk)
    assert token.access_token == ACCESS_TOKEN  # kept for inspection, not lost
    assert token.refresh_token == REFRESH_TOKEN
    assert token.status == TokenStatus.REAUTHORIZATION_REQUIRED
    entry = LogEntry.objects.get(object_id=str(oauth_client.pk))
    assert entry.action_flag == CHANGE
    assert entry.get_change_message().startswith("Refresh failed: ")
    assert "invalid_grant" in entry.get_change_message()


def test_refresh_now_server_error_keeps_the_token(
    operator_client: Client,
    oauth_client: OAuth2Client,
    connected: OAuth2Token,
    token_endpoint: responses.RequestsMock,
) -> None:
    before = OAuth2Token.objects.get(pk=connected.pk)
    token_endpoint.post(TOKEN_URL, status=503, body="<html>Service Unavailable</html>")
    response = run_action(operator_client, oauth_client)
    assert response.status_code == 200
    text = page_text(response)
    assert "Could not refresh Acme API (acme)" in text
    assert "Refreshed the access token" not in text
    assert "<html>Service Unavailable" not in text

    token = OAuth2Token.objects.get(pk=connected.pk)
    assert token.access_token == before.access_token
    assert token.refresh_token == before.refresh_token
    assert token.expires_at == before.expires_at
    assert token.status == TokenStatus.ACTIVE
    assert token.last_error  # the operator can see what happened on the change page
    entry = LogEntry.objects.get(object_id=str(oauth_client.pk))
    assert entry.get_change_message().startswith("Refresh failed: ")


def test_refresh_now_reports_each_client(
    operator_client: Client,
    make_client: Callable[..., OAuth2Client],
    make_token: Callable[..., OAuth2Token],
    token_endpoint: responses.RequestsMock,
) -> None:
    good = make_client(name="good", token_endpoint="https://good.example.test/token")
    make_token(good)
    bad = make_client(name="bad", token_endpoint="https://bad.example.test/token")
    make_token(bad)
    never = make_client(name="never")
    token_endpoint.post(good.token_endpoint, json={"access_token": "x" * 40})
    token_endpoint.post(bad.token_endpoint, status=503)

    response = run_action(operator_client, good, bad, never)
    assert response.status_code == 200
    text = page_text(response)
    assert "Refreshed the access token of Acme API (good)." in text
    assert "Could not refresh Acme API (bad)" in text
    assert "Could not refresh Acme API (never)" in text
    assert "not authorized yet" in text
    assert LogEntry.objects.count() == 3


def test_refresh_now_survives_an_unexpected_error(
    operator_client: Client,
    oauth_client: OAuth2Client,
    connected: OAuth2Token,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(name: str) -> str:
        raise RuntimeError("internal detail")

    monkeypatch.setattr(integrator_admin, "refresh_access_token", explode)
    response = run_action(operator_client, oauth_client)
    assert response.status_code == 200
    text = page_text(response)
    assert "Could not refresh Acme API (acme)" in text
    assert "RuntimeError" in text
    assert "internal detail" not in text
    assert OAuth2Token.objects.get(pk=connected.pk).access_token == ACCESS_TOKEN


def test_refresh_now_needs_the_authorize_permission(
    staff_without_authorize: Client,
    oauth_client: OAuth2Client,
    connected: OAuth2Token,
    token_endpoint: responses.RequestsMock,
) -> None:
    token_endpoint.post(
        TOKEN_URL, json={"access_token": "should-never-be-fetched-0000"}
    )
    changelist = page_text(staff_without_authorize.get(CHANGELIST))
    assert 'value="refresh_now"' not in changelist

    response = run_action(staff_without_authorize, oauth_client)
    assert response.status_code == 200
    assert len(token_endpoint.calls) == 0
    assert OAuth2Token.objects.get(pk=connected.pk).access_token == ACCESS_TOKEN
    assert not LogEntry.objects.exists()


def test_refresh_now_is_offered_to_operators(
    operator_client: Client, oauth_client: OAuth2Client
) -> None:
    assert 'value="refresh_now"' in page_text(operator_client.get(CHANGELIST))


# --------------------------------------------------------- provider pre-fill


class PrefillProfile(ProviderProfile):
    key = "prefill-test"
    name = "Pre-fill test provider"
    authorization_endpoint = "https://prefill.example.test/authorize"
    token_endpoint = "https://prefill.example.test/token"
    revocation_endpoint = "https://prefill.example.test/revoke"
    issuer = "https://prefill.example.test"
    default_scope = "openid email"
    token_auth_method = "client_secret_post"
    use_pkce = False


@pytest.fixture
def prefill_profile(monkeypatch: pytest.MonkeyPatch) -> type[ProviderProfile]:
    monkeypatch.setitem(registry._profiles, PrefillProfile.key, PrefillProfile)
    return PrefillProfile


def test_prefill_from_the_generic_profile(operator_client: Client, db: Any) -> None:
    response = operator_client.get(ADD_URL, {"provider": "generic"})
    assert response.status_code == 200
    initial = response.context["adminform"].form.initial
    assert initial["provider"] == "generic"
    expected = registry.get("generic").initial_values()
    assert {key: initial[key] for key in expected} == expected


def test_prefill_fills_the_add_form(
    operator_client: Client, prefill_profile: type[ProviderProfile]
) -> None:
    response = operator_client.get(
        ADD_URL, {"provider": "prefill-test", "scope": "mine"}
    )
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.initial["token_endpoint"] == "https://prefill.example.test/token"
    assert form.initial["token_auth_method"] == "client_secret_post"
    assert form.initial["use_pkce"] is False
    assert form.initial["scope"] == "mine"  # an explicit query parameter wins
    text = page_text(response)
    assert 'value="https://prefill.example.test/authorize"' in text
    assert '<option value="prefill-test" selected>' in text
    assert '<a href="?provider=prefill-test">Pre-fill test provider</a>' in text


def test_unknown_provider_is_a_warning_not_an_error(
    operator_client: Client, db: Any
) -> None:
    response = operator_client.get(ADD_URL, {"provider": "nope"})
    assert response.status_code == 200
    assert "Unknown provider profile" in page_text(response)


def test_change_page_links_back_to_itself_after_login(
    operator_client: Client, oauth_client: OAuth2Client
) -> None:
    form = authorize_form(page_text(operator_client.get(change_url(oauth_client))))
    assert form is not None
    assert urlsplit(form["inputs"]["next"]).path == change_url(oauth_client)


# ------------------------------------------- view-only staff (issue 5, item 4)

CREDENTIAL_URL = "https://svc-user:Pa55-in-the-URL-9Qz@auth.example.test/oauth/token"
URL_PASSWORD = "Pa55-in-the-URL-9Qz"


@pytest.fixture
def view_only(db: Any) -> Client:
    """Staff with only the view permission: Django renders every field read-only."""
    user = User.objects.create_user("looker", password="looker-pass", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type=ContentType.objects.get_for_model(OAuth2Client),
            codename="view_oauth2client",
        )
    )
    browser = Client()
    browser.force_login(user)
    return browser


def history_url(client: OAuth2Client) -> str:
    return reverse("admin:oauth2_integrator_oauth2client_history", args=[client.pk])


def test_view_only_staff_sees_the_secret_masked_on_every_page(
    view_only: Client,
    operator_client: Client,
    oauth_client: OAuth2Client,
    connected: OAuth2Token,
) -> None:
    # A history entry that names the secret field, as a real change would.
    operator_client.post(
        change_url(oauth_client), form_data(oauth_client, client_secret=NEW_SECRET)
    )
    response = view_only.get(change_url(oauth_client))
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    text = page_text(response)
    assert_no_leak(text, NEW_SECRET)
    assert mask(NEW_SECRET) in text
    assert re.search(r"Client secret:\s*</label>\s*<div class=\"readonly\">", text)
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN):
        assert_no_leak(text, secret)
    for url in (CHANGELIST, history_url(oauth_client)):
        page = view_only.get(url)
        assert page.status_code == 200
        assert_no_leak(page_text(page), NEW_SECRET)
    # Everything else a view-only user could open is refused.
    delete = reverse(
        "admin:oauth2_integrator_oauth2client_delete", args=[oauth_client.pk]
    )
    assert view_only.get(delete).status_code == 403
    assert (
        view_only.post(change_url(oauth_client), form_data(oauth_client)).status_code
        == 403
    )


def test_view_only_page_shows_a_public_client_as_not_set(
    view_only: Client, make_client: Callable[..., OAuth2Client]
) -> None:
    client = make_client(client_secret="", token_auth_method="none")
    text = page_text(view_only.get(change_url(client)))
    assert re.search(
        r"Client secret:\s*</label>\s*<div class=\"readonly\">not set<", text
    )


# ------------------------------------- credentials in URLs (issue 5, item 5)


def test_stored_url_credentials_are_never_shown(
    view_only: Client,
    operator_client: Client,
    make_client: Callable[..., OAuth2Client],
    make_token: Callable[..., OAuth2Token],
) -> None:
    """Rows stored before such URLs were refused: no page prints their userinfo."""
    client = make_client(token_endpoint=CREDENTIAL_URL, issuer=CREDENTIAL_URL)
    make_token(
        client,
        last_error=f"Could not reach {CREDENTIAL_URL}: timed out",
        last_error_at=timezone.now(),
    )
    for browser in (view_only, operator_client):
        response = browser.get(change_url(client))
        assert response.status_code == 200
        text = page_text(response)
        assert URL_PASSWORD not in text
        assert "svc-user" not in text
        assert "https://auth.example.test/oauth/token" in text
        assert "Could not reach https://***@auth.example.test/oauth/token" in text
        assert URL_PASSWORD not in page_text(browser.get(CHANGELIST))


def test_saving_a_stored_url_with_credentials_drops_them_and_says_so(
    operator_client: Client, make_client: Callable[..., OAuth2Client]
) -> None:
    client = make_client(token_endpoint=CREDENTIAL_URL)
    form = operator_client.get(change_url(client)).context["adminform"].form
    assert form.initial["token_endpoint"] == "https://auth.example.test/oauth/token"
    assert "user name and password" in str(form.fields["token_endpoint"].help_text)
    response = operator_client.post(
        change_url(client),
        form_data(client, token_endpoint=form.initial["token_endpoint"]),
    )
    assert response.status_code == 302, page_text(response)
    client.refresh_from_db()
    assert client.token_endpoint == "https://auth.example.test/oauth/token"
    entry = LogEntry.objects.get(object_id=str(client.pk), action_flag=CHANGE)
    assert "Token endpoint" in entry.get_change_message()


@pytest.mark.parametrize(
    "url",
    [
        CREDENTIAL_URL,
        "https://svc-user@auth.example.test/oauth/token",
        "http://svc-user:Pa55-in-the-URL-9Qz@127.0.0.1:8000/token",
    ],
)
@pytest.mark.parametrize(
    "field", ["authorization_endpoint", "token_endpoint", "revocation_endpoint"]
)
def test_urls_with_credentials_are_refused_without_echoing_them(
    operator_client: Client, oauth_client: OAuth2Client, field: str, url: str
) -> None:
    response = operator_client.post(
        change_url(oauth_client), form_data(oauth_client, **{field: url})
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors[field]
    assert "Remove the user name and password" in errors[0]
    text = page_text(response)
    assert URL_PASSWORD not in text
    assert "svc-user" not in text
    oauth_client.refresh_from_db()
    assert getattr(oauth_client, field) != url


def test_issuer_with_credentials_is_refused(
    operator_client: Client, oauth_client: OAuth2Client
) -> None:
    response = operator_client.post(
        change_url(oauth_client), form_data(oauth_client, issuer=CREDENTIAL_URL)
    )
    assert response.status_code == 200
    assert "Remove the user name and password" in str(
        response.context["adminform"].form.errors["issuer"]
    )
    assert URL_PASSWORD not in page_text(response)


# ------------------------------------------ plain http:// (issue 5, item 16)


@pytest.mark.parametrize(
    "field",
    ["authorization_endpoint", "token_endpoint", "revocation_endpoint", "redirect_uri"],
)
def test_plain_http_is_refused_outside_loopback(
    operator_client: Client, oauth_client: OAuth2Client, field: str
) -> None:
    response = operator_client.post(
        change_url(oauth_client),
        form_data(oauth_client, **{field: "http://auth.example.test/x"}),
    )
    assert response.status_code == 200
    assert "Use https://" in str(response.context["adminform"].form.errors[field])
    assert "ALLOW_INSECURE_HTTP" in page_text(response)


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "127.8.9.10", "[::1]", "api.localhost"]
)
def test_plain_http_is_accepted_for_loopback(
    operator_client: Client, oauth_client: OAuth2Client, host: str
) -> None:
    url = f"http://{host}:8123/demo-provider/token/"
    response = operator_client.post(
        change_url(oauth_client), form_data(oauth_client, token_endpoint=url)
    )
    assert response.status_code == 302, page_text(response)
    oauth_client.refresh_from_db()
    assert oauth_client.token_endpoint == url


def test_plain_http_is_accepted_when_the_setting_allows_it(
    operator_client: Client, oauth_client: OAuth2Client, settings: Any
) -> None:
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "ALLOW_INSECURE_HTTP": True,
    }
    response = operator_client.post(
        change_url(oauth_client),
        form_data(oauth_client, token_endpoint="http://auth.example.test/token"),
    )
    assert response.status_code == 302, page_text(response)


# ----------------------------------- public client needs PKCE (item 17)


def test_public_client_without_pkce_is_refused(
    operator_client: Client, oauth_client: OAuth2Client
) -> None:
    data = form_data(oauth_client, token_auth_method="none", clear_client_secret="on")
    del data["use_pkce"]
    response = operator_client.post(change_url(oauth_client), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["use_pkce"]
    assert "PKCE is required for a public client" in errors[0]
    oauth_client.refresh_from_db()
    assert oauth_client.token_auth_method != "none"
    # A confidential client may still switch PKCE off (some providers reject it).
    data = form_data(oauth_client)
    del data["use_pkce"]
    assert operator_client.post(change_url(oauth_client), data).status_code == 302


# ------------------------------------ undecryptable values (issue 5, item 7)

LOST_KEY = "w3P8t4sF0k2c2l8G5tS5b0QWc0n9bJt0mY0lXq3yH1c="


@pytest.fixture
def lost_secret(make_client: Callable[..., OAuth2Client], settings: Any) -> Any:
    """A client whose secret was encrypted with a key no longer configured."""
    configured = settings.OAUTH2_INTEGRATOR
    settings.OAUTH2_INTEGRATOR = {**configured, "ENCRYPTION_KEYS": [LOST_KEY]}
    client = make_client()
    settings.OAUTH2_INTEGRATOR = configured
    return client


def test_change_page_opens_and_explains_an_undecryptable_secret(
    operator_client: Client, lost_secret: OAuth2Client
) -> None:
    response = operator_client.get(change_url(lost_secret))
    assert response.status_code == 200
    text = page_text(response)
    assert "The stored client secret of Acme API (acme) cannot be decrypted" in text
    assert "Type the secret again" in text
    assert "Stored: not set" not in text
    assert "Stored (encrypted)" not in text


def test_blank_secret_keeps_an_undecryptable_one_untouched(
    operator_client: Client, lost_secret: OAuth2Client
) -> None:
    stored = raw_secret(lost_secret)
    response = operator_client.post(
        change_url(lost_secret),
        form_data(lost_secret, display_name="Renamed"),
        follow=True,
    )
    assert response.status_code == 200
    assert not response.context.get("errors")
    assert "cannot be decrypted" in page_text(response)  # warned after saving
    lost_secret.refresh_from_db()
    assert lost_secret.display_name == "Renamed"
    assert raw_secret(lost_secret) == stored  # restoring the key restores it


def test_typed_secret_replaces_an_undecryptable_one(
    operator_client: Client, lost_secret: OAuth2Client
) -> None:
    response = operator_client.post(
        change_url(lost_secret), form_data(lost_secret, client_secret=NEW_SECRET)
    )
    assert response.status_code == 302, page_text(response)
    lost_secret.refresh_from_db()
    assert lost_secret.client_secret == NEW_SECRET


def test_clearing_an_undecryptable_secret_of_a_confidential_client_is_refused(
    operator_client: Client, lost_secret: OAuth2Client
) -> None:
    stored = raw_secret(lost_secret)
    response = operator_client.post(
        change_url(lost_secret), form_data(lost_secret, clear_client_secret="on")
    )
    assert response.status_code == 200
    assert "A client secret is required" in page_text(response)
    assert raw_secret(lost_secret) == stored


def test_view_only_page_says_the_secret_cannot_be_decrypted(
    view_only: Client, lost_secret: OAuth2Client
) -> None:
    response = view_only.get(change_url(lost_secret))
    assert response.status_code == 200
    assert "cannot be decrypted with any configured key" in page_text(response)


def test_change_page_opens_when_the_tokens_cannot_be_decrypted(
    operator_client: Client,
    oauth_client: OAuth2Client,
    make_token: Callable[..., OAuth2Token],
    settings: Any,
) -> None:
    configured = settings.OAUTH2_INTEGRATOR
    settings.OAUTH2_INTEGRATOR = {**configured, "ENCRYPTION_KEYS": [LOST_KEY]}
    make_token(oauth_client, access_token=ACCESS_TOKEN, refresh_token=REFRESH_TOKEN)
    settings.OAUTH2_INTEGRATOR = configured
    response = operator_client.get(change_url(oauth_client))
    assert response.status_code == 200
    text = page_text(response)
    for label in ("Access token", "Refresh token"):
        assert re.search(
            label + r":\s*</label>\s*<div class=\"readonly\">cannot be decrypted", text
        )
    assert "authorize the client again" in text
