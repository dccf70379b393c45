"""The provider catalog: every entry well-formed, selectable, and the loader strict.

Each entry of ``oauth2_integrator/providers/catalog/*.toml`` must load, name its
documentation page, use https endpoints and only the keys the loader knows (the
entry keys plus the quirk vocabulary). The loader refuses anything else with the
file's name and the known keys, and a hook class with the same key wins.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from oauth2_integrator.providers import ProviderProfile, catalog, options, registry
from oauth2_integrator.providers.catalog import (
    CATALOG_DIR,
    ENTRY_KEYS,
    URL_KEYS,
    CatalogError,
    load_entry,
    read_catalog,
)

FILES = sorted(CATALOG_DIR.glob("*.toml"))
KNOWN_KEYS = set(ENTRY_KEYS) | set(options.VOCABULARY)

#: The issue's list of profiles proven against their documentation (``oidc`` is
#: the OpenID Connect profile, a class of its own).
ISSUE_PROVIDERS = {
    "google": "Google",
    "microsoft": "Microsoft Entra ID",
    "facebook": "Facebook",
    "instagram": "Instagram",
    "github": "GitHub",
    "gitlab": "GitLab",
    "slack": "Slack",
    "salesforce": "Salesforce",
    "dropbox": "Dropbox",
    "linkedin": "LinkedIn",
    "twitter": "X (Twitter)",
    "reddit": "Reddit",
    "spotify": "Spotify",
    "strava": "Strava",
    "zoom": "Zoom",
    "notion": "Notion",
    "discord": "Discord",
    "box": "Box",
    "hubspot": "HubSpot",
    "quickbooks": "Intuit QuickBooks",
    "xero": "Xero",
    "atlassian": "Atlassian",
    "zoho": "Zoho",
    "shopify": "Shopify",
}

_TEMPLATE = re.compile(r"\{[a-z_]+\}")


def raw(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def write(tmp_path: Path, key: str, text: str) -> Path:
    path = tmp_path / f"{key}.toml"
    path.write_text(text)
    return path


MINIMAL = 'key = "acme"\nname = "Acme"\ndocs = "https://acme.example/oauth"\n'


# ------------------------------------------------------------- every entry


def test_at_least_a_hundred_entries() -> None:
    assert len(FILES) >= 100
    assert len(read_catalog()) == len(FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_entry_is_well_formed(path: Path) -> None:
    data = raw(path)
    assert set(data) <= KNOWN_KEYS, set(data) - KNOWN_KEYS
    assert data["key"] == path.stem
    assert re.fullmatch(r"[a-z0-9_-]+", data["key"])
    assert data["name"].strip()
    assert data["docs"].startswith("https://")
    assert data.get("token_endpoint"), "an entry without a token endpoint is useless"
    assert data.get("authorization_endpoint")
    for name in URL_KEYS:
        if name in data:
            assert data[name].startswith("https://"), name
            # templates are whole {name} placeholders
            assert not set("{}") & set(_TEMPLATE.sub("", data[name])), name
            for placeholder in _TEMPLATE.findall(data[name]):
                # a placeholder without a default says how to set it in the notes
                if placeholder[1:-1] not in data.get("url_values", {}):
                    assert placeholder[1:-1] in data.get("notes", ""), placeholder
    for name, value in data.items():
        option = ENTRY_KEYS.get(name) or options.VOCABULARY[name]
        option.check(value)  # the right type, as the loader checks
    assert load_entry(path) == data


def test_keys_and_names_are_unique() -> None:
    entries = [raw(path) for path in FILES]
    keys = [entry["key"] for entry in entries]
    names = [entry["name"].casefold() for entry in entries]
    assert len(set(keys)) == len(keys)
    assert len(set(names)) == len(names)


def test_the_issues_providers_are_there() -> None:
    entries = {path.stem: raw(path) for path in FILES}
    for key, name in ISSUE_PROVIDERS.items():
        assert key in entries, key
        assert entries[key]["name"].startswith(name), key
    assert "oidc" in dict(registry.choices())


def test_every_entry_is_selectable_in_the_admin() -> None:
    choices = registry.choices()
    keys = [key for key, _ in choices]
    for path in FILES:
        assert path.stem in keys
        profile = registry.get(path.stem)
        assert profile.name == raw(path)["name"]
    names = [name.casefold() for _, name in choices]
    assert names == sorted(names)
    assert "generic" in keys


def test_the_model_field_offers_the_catalog() -> None:
    from oauth2_integrator.models import OAuth2Client

    field = OAuth2Client._meta.get_field("provider")
    offered = {key for key, _ in field.choices}
    assert {path.stem for path in FILES} <= offered


# ---------------------------------------------------------- known facts


def profile(key: str) -> ProviderProfile:
    return registry.get(key)


def test_known_facts_of_the_issue() -> None:
    google = profile("google")
    assert google.authorize_params == {"access_type": "offline", "prompt": "consent"}
    microsoft = profile("microsoft")
    assert "offline_access" in microsoft.required_scopes
    assert microsoft.scope_on_refresh is True
    assert "{tenant}" in microsoft.token_endpoint
    assert microsoft.url_values == {"tenant": "common"}
    github = profile("github")
    assert github.token_headers == {"Accept": "application/json"}
    slack = profile("slack")
    assert (slack.token_path, slack.scope_separator, slack.ok_field) == (
        "authed_user",
        ",",
        "ok",
    )
    salesforce = profile("salesforce")
    assert "instance_url" in salesforce.token_values
    assert salesforce.url_values == {"domain": "login"}
    assert '"test"' in salesforce.notes
    reddit = profile("reddit")
    assert reddit.authorize_params == {"duration": "permanent"}
    assert reddit.token_auth_method == "client_secret_basic"
    assert profile("dropbox").authorize_params == {"token_access_type": "offline"}
    notion = profile("notion")
    assert notion.token_auth_method == "client_secret_basic"
    assert notion.token_request_format == "json"
    x = profile("twitter")
    assert "offline.access" in x.required_scopes
    assert x.use_pkce is True
    assert x.token_auth_method == "client_secret_basic"
    strava = profile("strava")
    assert strava.expires_at_field == "expires_at"
    assert strava.scope_separator == ","
    assert profile("facebook").scope_separator == ","
    quickbooks = profile("quickbooks")
    assert quickbooks.callback_values == ["realmId"]
    assert quickbooks.refresh_token_expires_in_field == "x_refresh_token_expires_in"
    assert "rotate" in quickbooks.notes
    assert "rotate" in profile("xero").notes
    assert "offline_access" in profile("xero").required_scopes
    atlassian = profile("atlassian")
    assert atlassian.authorize_params["audience"] == "api.atlassian.com"
    assert "api_domain" in profile("zoho").token_values
    assert "{shop}" in profile("shopify").token_endpoint
    assert profile("tiktok").param_names == {"client_id": "client_key"}
    assert profile("amazon-sp-api").code_param == "spapi_oauth_code"
    assert profile("fitbit").errors_field == "errors"


def test_profile_defaults_feed_the_add_form() -> None:
    values = profile("google").initial_values()
    assert values["token_endpoint"] == "https://oauth2.googleapis.com/token"
    assert values["scope"] == "openid email"
    assert values["token_auth_method"] == "client_secret_post"


# -------------------------------------------------------------- the loader


def test_unknown_key_is_refused_naming_the_file_and_the_known_keys(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "acme", MINIMAL + 'scope_seperator = ","\n')
    with pytest.raises(CatalogError) as caught:
        load_entry(path)
    message = str(caught.value)
    assert "acme.toml" in message
    assert "scope_seperator" in message
    assert "scope_separator" in message and "token_endpoint" in message


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('use_pkce = "no"\n', "use_pkce"),
        ("scope_separator = 1\n", "scope_separator"),
        ('default_scopes = "a b"\n', "default_scopes"),
        ('token_auth_method = "private_key_jwt"\n', "token_auth_method"),
        ("authorize_params = { a = [1] }\n", "authorize_params"),
        ("default_expires_in = -1\n", "default_expires_in"),
    ],
)
def test_wrong_types_are_refused(tmp_path: Path, line: str, named: str) -> None:
    path = write(tmp_path, "acme", MINIMAL + line)
    with pytest.raises(CatalogError, match=named) as caught:
        load_entry(path)
    assert "acme.toml" in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        'name = "Acme"\ndocs = "https://acme.example/"\n',  # no key
        'key = "acme"\ndocs = "https://acme.example/"\n',  # no name
        'key = "acme"\nname = "Acme"\n',  # no docs
        MINIMAL.replace('"acme"', '"other"', 1),  # key is not the file name
        MINIMAL + 'token_endpoint = "http://acme.example/token"\n',
        MINIMAL.replace("https://acme", "http://acme"),
        MINIMAL + 'refresh_endpoint = "ftp://acme.example/refresh"\n',
        MINIMAL + 'token_endpoint = "https://{tenant.acme.example/token"\n',
        MINIMAL + "this is not toml\n",
    ],
)
def test_malformed_entries_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(CatalogError, match=r"acme\.toml"):
        load_entry(write(tmp_path, "acme", text))


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "acme", MINIMAL)
    write(tmp_path, "acme2", MINIMAL.replace('"acme"', '"acme2"'))
    with pytest.raises(CatalogError, match="share the name"):
        read_catalog(tmp_path)


def test_templates_are_allowed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "acme",
        MINIMAL + 'token_endpoint = "https://{subdomain}.acme.example/token"\n',
    )
    assert load_entry(path)["token_endpoint"].startswith("https://{subdomain}")


@pytest.fixture
def fresh_catalog(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty catalog directory, loaded afresh, with a registry of its own."""
    monkeypatch.setattr(catalog, "CATALOG_DIR", tmp_path)
    monkeypatch.setattr(catalog, "_entries", None)
    monkeypatch.setattr(registry, "_profiles", dict(registry._profiles))
    return tmp_path


def test_loading_is_lazy_and_once(
    fresh_catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(fresh_catalog, "acme", MINIMAL + 'scope_separator = ","\n')
    reads: list[Path] = []
    original = catalog.load_entry

    def counting(path: Path) -> dict[str, Any]:
        reads.append(path)
        return original(path)

    monkeypatch.setattr(catalog, "load_entry", counting)
    assert reads == []
    assert registry.get("acme").scope_separator == ","
    registry.choices()
    registry.get("acme")
    assert len(reads) == 1


def test_a_hook_class_wins_and_takes_the_entrys_data(fresh_catalog: Path) -> None:
    write(
        fresh_catalog,
        "acme",
        MINIMAL + 'token_endpoint = "https://acme.example/token"\n'
        'scope_separator = ","\nnotes = "from the file"\n',
    )

    @registry.register
    class AcmeHooks(ProviderProfile):
        key = "acme"
        catalog_key = "acme"
        notes = "the class's own"

        def renewal_request(self, config: Any, token: Any) -> None:
            return None

    profile = registry.get("acme")
    assert type(profile) is AcmeHooks
    assert profile.token_endpoint == "https://acme.example/token"
    assert profile.scope_separator == ","
    assert profile.notes == "the class's own"  # what the class sets wins
    assert profile.name == "Acme"


def test_a_bad_file_fails_loudly(fresh_catalog: Path) -> None:
    write(fresh_catalog, "acme", MINIMAL + "colour = 1\n")
    with pytest.raises(CatalogError, match=r"acme\.toml"):
        registry.choices()


def test_unknown_profile_message_is_short_and_helpful() -> None:
    from oauth2_integrator.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError) as caught:
        registry.get("no-such-provider")
    assert "no-such-provider" in str(caught.value)
    assert len(str(caught.value)) < 300


# ------------------------------------------------------------ the docs page


def test_docs_providers_md_is_current() -> None:
    from django.core.management import call_command

    call_command("oauth2_providers_doc", "--check")


def test_the_page_lists_every_profile_with_its_quirks() -> None:
    page = catalog.render_markdown()
    for key, name in registry.choices():
        assert f"### {name}\n" in page
        assert f"- key: `{key}`" in page
    assert '`scope_separator = ","`' in page  # Slack, Facebook, ...
    assert '`token_path = "authed_user"`' in page
    assert "`renewal_request`" in page  # Facebook's hook
    assert (
        "<https://developers.google.com/identity/protocols/oauth2/web-server>" in page
    )
    for name in options.VOCABULARY:
        assert f"| `{name}` |" in page


def test_check_fails_when_the_page_is_stale(tmp_path: Path) -> None:
    from django.core.management import CommandError, call_command

    page = tmp_path / "providers.md"
    with pytest.raises(CommandError, match="not current"):
        call_command("oauth2_providers_doc", "--check", "--output", str(page))
    call_command("oauth2_providers_doc", "--output", str(page))
    call_command("oauth2_providers_doc", "--check", "--output", str(page))
    page.write_text(page.read_text().replace("Google", "Gogle"))
    with pytest.raises(CommandError, match="not current"):
        call_command("oauth2_providers_doc", "--check", "--output", str(page))


# ------------------------------------------- every entry drives real requests


def client_for(key: str) -> Any:
    """An unsaved client as the admin's pre-fill makes it: blank endpoints, the
    profile's method and PKCE, and a value for every template without a default."""
    from oauth2_integrator.models import OAuth2Client

    profile = registry.get(key)
    urls = " ".join(
        getattr(profile, name, "") for name in (*URL_KEYS, "authorization_endpoint")
    )
    missing = {
        name: f"v-{name}"
        for name in re.findall(r"\{([a-z_]+)\}", urls)
        if name not in profile.url_values
    }
    return OAuth2Client(
        name=f"c-{key}",
        provider=key,
        client_id="the-client-id",
        client_secret="the-client-secret-9876",
        token_auth_method=profile.token_auth_method,
        use_pkce=profile.use_pkce,
        provider_options={"url_values": missing} if missing else {},
    )


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_entry_builds_its_authorization_and_token_requests(path: Path) -> None:
    from urllib.parse import parse_qs, urlsplit

    from oauth2_integrator import flow
    from oauth2_integrator.providers import configure

    data = raw(path)
    config = configure(client_for(path.stem))
    url = flow.authorization_url(
        config,
        redirect_uri="https://app.example/cb",
        state="st",
        code_verifier="v" * 43 if config.use_pkce else None,
    )
    parts = urlsplit(url)
    assert parts.scheme == "https"
    assert "{" not in url and "%7B" not in url
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    names = data.get("param_names", {})
    assert query[names.get("client_id", "client_id")] == "the-client-id"
    scopes = [*data.get("default_scopes", [])]
    scopes += [s for s in data.get("required_scopes", []) if s not in scopes]
    if scopes:
        separator = data.get("scope_separator", " ")
        assert query[names.get("scope", "scope")] == separator.join(scopes)
    assert ("code_challenge" in query) is data.get("use_pkce", True)
    for name, value in data.get("authorize_params", {}).items():
        assert query[name] == str(value)

    request = flow.code_exchange_request(
        config,
        code="the-code",
        redirect_uri="https://app.example/cb",
        code_verifier=None,
    )
    assert request.url.startswith("https://") and "{" not in request.url
    method = data.get("token_auth_method", "client_secret_basic")
    secret_name = names.get("client_secret", "client_secret")
    if method == "client_secret_basic":
        assert request.auth is not None and secret_name not in request.data
    elif method == "client_secret_post":
        assert request.auth is None
        assert request.data[secret_name] == "the-client-secret-9876"
    else:
        assert request.auth is None and secret_name not in request.data
    assert request.json_body is (data.get("token_request_format") == "json")
    for name, value in data.get("token_headers", {}).items():
        assert request.headers[name] == value
