"""``oauth2_import_clients``: create-or-update by name, all-or-nothing, secrets safe."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from oauth2_integrator.models import OAuth2Client
from oauth2_integrator.registration import ImportFailed, import_clients

from .conftest import AUTHORIZE_URL, CLIENT_SECRET, TOKEN_URL, raw_secret

pytestmark = pytest.mark.django_db

ENV_SECRET = "env-provided-secret-9f8e7d6c5b4a3210"
FILE_SECRET = "file-provided-secret-0a1b2c3d4e5f6789"


def entry(name: str = "acme", **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": name,
        "display_name": f"{name.title()} API",
        "client_id": f"{name}-client-id",
        "authorization_endpoint": AUTHORIZE_URL,
        "token_endpoint": TOKEN_URL,
        "scope": "read write",
    }
    values.update(fields)
    return values


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., tuple[str, str]]:
    """Write ``entries`` to a file and run the command on it; (stdout, stderr)."""

    def run_command(entries: Any, *args: str) -> tuple[str, str]:
        path = tmp_path / "clients.json"
        path.write_text(json.dumps(entries), encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        call_command("oauth2_import_clients", str(path), *args, stdout=out, stderr=err)
        return out.getvalue(), err.getvalue()

    return run_command


def fail(run: Callable[..., tuple[str, str]], entries: Any, *args: str) -> str:
    with pytest.raises(CommandError) as excinfo:
        run(entries, *args)
    return str(excinfo.value)


def test_creates_clients_with_every_field(run: Callable[..., tuple[str, str]]) -> None:
    out, _ = run(
        [
            entry(
                "acme",
                client_secret=FILE_SECRET,
                revocation_endpoint="https://auth.example.test/oauth/revoke",
                issuer="https://auth.example.test",
                redirect_uri="https://app.example.test/oauth2/acme/callback/",
                token_auth_method="client_secret_post",
                use_pkce=False,
                extra_authorize_params={"access_type": "offline"},
                extra_token_params={"audience": "api"},
                enabled=False,
                provider="generic",
            ),
            entry("public", token_auth_method="none"),
        ]
    )

    assert "created 2, updated 0, unchanged 0" in out
    acme = OAuth2Client.objects.get(name="acme")
    assert acme.display_name == "Acme API"
    assert acme.client_id == "acme-client-id"
    assert acme.client_secret == FILE_SECRET
    assert acme.revocation_endpoint == "https://auth.example.test/oauth/revoke"
    assert acme.issuer == "https://auth.example.test"
    assert acme.redirect_uri == "https://app.example.test/oauth2/acme/callback/"
    assert acme.token_auth_method == "client_secret_post"
    assert acme.use_pkce is False
    assert acme.extra_authorize_params == {"access_type": "offline"}
    assert acme.extra_token_params == {"audience": "api"}
    assert acme.enabled is False
    public = OAuth2Client.objects.get(name="public")
    assert public.client_secret == ""
    assert public.use_pkce is True  # model default for an omitted field
    # Encrypted at rest, and never echoed.
    assert FILE_SECRET not in raw_secret(acme)
    assert FILE_SECRET not in out


def test_second_run_of_the_same_file_changes_nothing(
    run: Callable[..., tuple[str, str]],
) -> None:
    entries = [entry("acme", client_secret=FILE_SECRET), entry("beta")]
    run(entries)
    stamps = dict(OAuth2Client.objects.values_list("name", "updated_at"))
    raw_before = raw_secret(OAuth2Client.objects.get(name="acme"))

    out, _ = run(entries)

    assert "created 0, updated 0, unchanged 2" in out
    assert dict(OAuth2Client.objects.values_list("name", "updated_at")) == stamps
    # Not even re-encrypted: the row was not written.
    assert raw_secret(OAuth2Client.objects.get(name="acme")) == raw_before


def test_updates_changed_fields_and_names_them(
    run: Callable[..., tuple[str, str]], make_client: Callable[..., OAuth2Client]
) -> None:
    make_client(name="acme", scope="read")
    make_client(name="beta", display_name="Beta API", client_id="beta-client-id")

    out, _ = run(
        [
            entry("acme", scope="read write", client_secret=CLIENT_SECRET),
            entry("beta", client_secret=CLIENT_SECRET),
            entry("gamma"),
        ]
    )

    assert "created 1, updated 1, unchanged 1" in out
    assert "updated   acme (scope)" in out
    assert "unchanged beta" in out
    assert "created   gamma" in out
    assert OAuth2Client.objects.get(name="acme").scope == "read write"
    assert OAuth2Client.objects.count() == 3


def test_omitted_fields_keep_their_stored_values(
    run: Callable[..., tuple[str, str]], make_client: Callable[..., OAuth2Client]
) -> None:
    make_client(
        name="acme", extra_authorize_params={"prompt": "consent"}, use_pkce=False
    )

    out, _ = run(
        [{"name": "acme", "display_name": "Renamed", "token_endpoint": TOKEN_URL}]
    )

    assert "created 0, updated 1, unchanged 0" in out
    client = OAuth2Client.objects.get(name="acme")
    assert client.display_name == "Renamed"
    assert client.client_secret == CLIENT_SECRET  # a deploy file without the secret
    assert client.extra_authorize_params == {"prompt": "consent"}
    assert client.use_pkce is False
    assert client.scope == "read write"


def test_scope_as_a_list(run: Callable[..., tuple[str, str]]) -> None:
    run([entry("acme", scope=["openid", "email", "offline_access"])])

    assert OAuth2Client.objects.get(name="acme").scope == "openid email offline_access"


@pytest.mark.parametrize(
    ("scope", "reason"),
    [
        (["openid", 3], "each item of the list must be one scope"),
        (["openid email"], "each item of the list must be one scope"),
        ({"openid": True}, "must be a string or a list of strings, not a object"),
    ],
)
def test_bad_scope(
    run: Callable[..., tuple[str, str]], scope: Any, reason: str
) -> None:
    message = fail(run, [entry("acme", scope=scope)])

    assert "[0] 'acme': scope:" in message
    assert reason in message
    assert not OAuth2Client.objects.exists()


def test_client_secret_from_environment(
    run: Callable[..., tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_CLIENT_SECRET", ENV_SECRET)

    out, err = run([entry("acme", client_secret_env="ACME_CLIENT_SECRET")])

    assert OAuth2Client.objects.get(name="acme").client_secret == ENV_SECRET
    assert ENV_SECRET not in out + err


def test_client_secret_env_updates_a_changed_secret(
    run: Callable[..., tuple[str, str]],
    make_client: Callable[..., OAuth2Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_client(name="acme")
    monkeypatch.setenv("ACME_CLIENT_SECRET", ENV_SECRET)

    out, _ = run([entry("acme", client_secret_env="ACME_CLIENT_SECRET")])

    assert "updated   acme (client_secret)" in out
    assert ENV_SECRET not in out
    assert OAuth2Client.objects.get(name="acme").client_secret == ENV_SECRET


@pytest.mark.parametrize("value", [None, ""])
def test_unset_environment_variable_is_a_clear_error(
    run: Callable[..., tuple[str, str]],
    make_client: Callable[..., OAuth2Client],
    monkeypatch: pytest.MonkeyPatch,
    value: str | None,
) -> None:
    make_client(name="acme")
    if value is None:
        monkeypatch.delenv("ACME_CLIENT_SECRET", raising=False)
    else:
        monkeypatch.setenv("ACME_CLIENT_SECRET", value)

    message = fail(run, [entry("acme", client_secret_env="ACME_CLIENT_SECRET")])

    assert "[0] 'acme': client_secret_env:" in message
    assert "ACME_CLIENT_SECRET is not set" in message
    assert "nothing was written" in message
    # The stored secret is not wiped by a missing variable.
    assert OAuth2Client.objects.get(name="acme").client_secret == CLIENT_SECRET


def test_secret_and_secret_env_together_is_an_error(
    run: Callable[..., tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_CLIENT_SECRET", ENV_SECRET)
    message = fail(
        run,
        [
            entry(
                "acme",
                client_secret=FILE_SECRET,
                client_secret_env="ACME_CLIENT_SECRET",
            )
        ],
    )

    assert "either client_secret or client_secret_env, not both" in message
    assert FILE_SECRET not in message
    assert ENV_SECRET not in message


def test_unknown_key_is_an_error_naming_it(run: Callable[..., tuple[str, str]]) -> None:
    message = fail(run, [entry("acme", client_secrte=FILE_SECRET, id=7)])

    assert (
        "[0] 'acme': unknown key 'client_secrte' (did you mean 'client_secret'?)"
        in (message)
    )
    assert "unknown key 'id'" in message
    assert FILE_SECRET not in message
    assert not OAuth2Client.objects.exists()


def test_invalid_entry_writes_nothing_and_reports_index_name_field_reason(
    run: Callable[..., tuple[str, str]], make_client: Callable[..., OAuth2Client]
) -> None:
    make_client(name="acme", scope="read")
    secret = "do-not-print-this-secret-123456"

    message = fail(
        run,
        [
            entry("acme", scope="read write admin"),  # a valid update
            entry("fresh"),  # a valid create
            entry("broken", token_endpoint="not a url", client_secret=secret),
            entry("worse", token_auth_method="carrier_pigeon", enabled="yes"),
            {"display_name": "No name"},
        ],
    )

    assert "3 of 5 entries are invalid, so nothing was written" in message
    assert "all-or-nothing" in message
    assert "[2] 'broken': token_endpoint: Enter a valid URL." in message
    assert "[3] 'worse': enabled: must be true or false, not a string." in message
    # Type problems and model validation of the same entry come in one run.
    assert "[3] 'worse': token_auth_method: Value 'carrier_pigeon' is not a valid" in (
        message
    )
    assert "[4]: name: required" in message
    assert secret not in message
    # Neither the valid update nor the valid create happened.
    assert OAuth2Client.objects.get(name="acme").scope == "read"
    assert list(OAuth2Client.objects.values_list("name", flat=True)) == ["acme"]


def test_model_validation_errors_are_reported(
    run: Callable[..., tuple[str, str]],
) -> None:
    message = fail(
        run,
        [
            entry("not a slug!"),
            entry("acme", provider="nonexistent", client_id=""),
            entry("params", extra_token_params={"nested": {"no": 1}}),
        ],
    )

    assert "[0] 'not a slug!': name:" in message
    assert "[1] 'acme': provider: Value 'nonexistent' is not a valid choice." in message
    assert "[1] 'acme': client_id: This field cannot be blank." in message
    assert "[2] 'params': extra_token_params:" in message
    assert not OAuth2Client.objects.exists()


def test_duplicate_names_in_one_file(run: Callable[..., tuple[str, str]]) -> None:
    message = fail(run, [entry("acme"), entry("acme", scope="other")])

    assert "[1] 'acme': name: the same name is already used by entry [0]" in message
    assert not OAuth2Client.objects.exists()


def test_entries_must_be_objects(run: Callable[..., tuple[str, str]]) -> None:
    message = fail(run, [entry("acme"), ["not", "an", "object"]])

    assert "[1]: expected a JSON object, got a list." in message
    assert not OAuth2Client.objects.exists()


def test_dry_run_writes_nothing(
    run: Callable[..., tuple[str, str]], make_client: Callable[..., OAuth2Client]
) -> None:
    make_client(name="acme", scope="read")
    make_client(name="beta", display_name="Beta API", client_id="beta-client-id")

    out, _ = run(
        [entry("acme"), entry("beta", client_secret=CLIENT_SECRET), entry("gamma")],
        "--dry-run",
    )

    assert "nothing was written" in out
    assert "created 1, updated 1, unchanged 1" in out
    assert OAuth2Client.objects.get(name="acme").scope == "read"
    assert not OAuth2Client.objects.filter(name="gamma").exists()


def test_dry_run_still_reports_invalid_entries(
    run: Callable[..., tuple[str, str]],
) -> None:
    message = fail(run, [entry("acme", token_endpoint="nope")], "--dry-run")

    assert "[0] 'acme': token_endpoint: Enter a valid URL." in message


def test_reads_standard_input() -> None:
    out = io.StringIO()
    call_command(
        "oauth2_import_clients",
        "-",
        stdin=io.StringIO(json.dumps([entry("acme")])),
        stdout=out,
    )

    assert (
        "Imported standard input: created 1, updated 0, unchanged 0." in out.getvalue()
    )
    assert OAuth2Client.objects.filter(name="acme").exists()


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(CommandError, match=r"Cannot read .*nope\.json: No such file"):
        call_command("oauth2_import_clients", str(missing))


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "clients.json"
    path.write_text('[{"name": "acme",}]', encoding="utf-8")

    with pytest.raises(CommandError) as excinfo:
        call_command("oauth2_import_clients", str(path))

    message = str(excinfo.value)
    assert f"{path} is not valid JSON" in message
    assert "line 1, column" in message
    assert not OAuth2Client.objects.exists()


def test_top_level_must_be_a_list(tmp_path: Path) -> None:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(entry("acme")), encoding="utf-8")

    with pytest.raises(CommandError, match="must hold a JSON list of client objects"):
        call_command("oauth2_import_clients", str(path))


def test_library_function_reports_problems_as_a_list(
    make_client: Callable[..., OAuth2Client],
) -> None:
    """Host code (a data migration, a fixture loader) can use the function directly."""
    with pytest.raises(ImportFailed) as excinfo:
        import_clients([entry("acme", token_endpoint="x"), entry("ok")])
    assert excinfo.value.problems == ["[0] 'acme': token_endpoint: Enter a valid URL."]

    outcome = import_clients(
        [entry("acme", client_secret_env="VAR")], environ={"VAR": ENV_SECRET}
    )
    assert outcome.created == ["acme"]
    assert OAuth2Client.objects.get(name="acme").client_secret == ENV_SECRET


# --- issue 5: URL rules, PKCE for public clients, repairing a lost secret -------

URL_PASSWORD = "Pa55-in-the-URL-9Qz"
LOST_KEY = "w3P8t4sF0k2c2l8G5tS5b0QWc0n9bJt0mY0lXq3yH1c="


@pytest.mark.parametrize(
    "url",
    [
        f"https://svc-user:{URL_PASSWORD}@auth.example.test/oauth/token",
        "https://svc-user@auth.example.test/oauth/token",
    ],
)
def test_urls_with_credentials_are_refused_without_echoing_them(
    run: Callable[..., tuple[str, str]], url: str
) -> None:
    message = fail(run, [entry("acme", token_endpoint=url, revocation_endpoint=url)])
    assert "[0] 'acme': token_endpoint: Remove the user name and password" in message
    assert "[0] 'acme': revocation_endpoint: Remove the user name" in message
    assert URL_PASSWORD not in message
    assert "svc-user" not in message
    assert not OAuth2Client.objects.exists()


def test_plain_http_outside_loopback_is_refused(
    run: Callable[..., tuple[str, str]],
) -> None:
    message = fail(
        run,
        [
            entry("acme", authorization_endpoint="http://auth.example.test/authorize"),
            entry("beta", redirect_uri="http://app.example.test/oauth2/cb/"),
        ],
    )
    assert "[0] 'acme': authorization_endpoint: Use https://" in message
    assert "[1] 'beta': redirect_uri: Use https://" in message
    assert "ALLOW_INSECURE_HTTP" in message
    assert not OAuth2Client.objects.exists()


def test_plain_http_on_loopback_or_when_allowed_is_accepted(
    run: Callable[..., tuple[str, str]], settings: Any
) -> None:
    run(
        [
            entry(
                "demo",
                authorization_endpoint="http://localhost:8000/demo-provider/authorize/",
                token_endpoint="http://127.0.0.1:8000/demo-provider/token/",
                redirect_uri="http://[::1]:8000/oauth2/demo/callback/",
            )
        ]
    )
    assert OAuth2Client.objects.get(name="demo").token_endpoint.startswith("http://")
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "ALLOW_INSECURE_HTTP": True,
    }
    run([entry("lab", token_endpoint="http://lab.internal/token")])
    assert OAuth2Client.objects.filter(name="lab").exists()


def test_public_client_without_pkce_is_refused(
    run: Callable[..., tuple[str, str]],
) -> None:
    message = fail(run, [entry("public", token_auth_method="none", use_pkce=False)])
    assert "[0] 'public': use_pkce: PKCE is required for a public client" in message
    assert not OAuth2Client.objects.exists()
    # The model rule, not only the form: a later change to the method is checked too.
    run([entry("public", token_auth_method="client_secret_post", use_pkce=False)])
    message = fail(run, [entry("public", token_auth_method="none", use_pkce=False)])
    assert "use_pkce: PKCE is required" in message


def test_import_replaces_a_secret_no_key_can_decrypt(
    run: Callable[..., tuple[str, str]],
    make_client: Callable[..., OAuth2Client],
    settings: Any,
) -> None:
    configured = settings.OAUTH2_INTEGRATOR
    settings.OAUTH2_INTEGRATOR = {**configured, "ENCRYPTION_KEYS": [LOST_KEY]}
    client = make_client()
    settings.OAUTH2_INTEGRATOR = configured
    stored = raw_secret(client)

    # A file without the secret keeps the stored ciphertext as it is.
    out, _ = run([entry("acme", display_name="Renamed")])
    assert "updated   acme (display_name)" in out
    assert raw_secret(client) == stored

    out, _ = run([entry("acme", display_name="Renamed", client_secret=FILE_SECRET)])
    assert "updated   acme (client_secret)" in out
    assert OAuth2Client.objects.get(name="acme").client_secret == FILE_SECRET
