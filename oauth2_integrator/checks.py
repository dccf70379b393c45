"""System checks: fail at startup, with the fix in the message, rather than at first use.

Checks that read stored rows run where Django runs database checks (``migrate``,
``check --database default``) and with ``check --deploy``, so a removed key or an
insecure registration is found at deploy, not at 3 a.m. when a refresh fails.
They read a bounded sample and never print a stored value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, models
from django.db.models.functions import Cast

from .conf import app_settings
from .crypto import parse_keys

#: Rows per model whose encrypted columns the decryption check opens (newest first).
DECRYPT_SAMPLE_ROWS = 50
#: Client registrations the endpoint check reads at most.
CLIENT_SAMPLE_ROWS = 500

#: Keys published with this project (the example project's development key):
#: anything encrypted with them is readable by anyone with the source.
PUBLIC_KEYS = frozenset({"ZGV2LW9ubHktTk9ULVNFQ1JFVC1yZXBsYWNlLW1lISE="})


@checks.register(checks.Tags.security)
def check_encryption_keys(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    try:
        parse_keys(app_settings.ENCRYPTION_KEYS)
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc),
                hint="Set OAUTH2_INTEGRATOR = {'ENCRYPTION_KEYS': ['<key>', ...]} in settings.",
                id="oauth2_integrator.E001",
            )
        ]
    return []


@checks.register(checks.Tags.security, deploy=True)
def check_public_keys(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """A key from this project's source encrypts nothing: refuse it at deploy."""
    try:
        configured = app_settings.ENCRYPTION_KEYS
    except ImproperlyConfigured:
        return []  # E001 says what is wrong with the setting
    if isinstance(configured, str | bytes):
        configured = [configured]
    if not isinstance(configured, list | tuple):
        return []
    public = [
        position
        for position, key in enumerate(configured, start=1)
        if (key.decode() if isinstance(key, bytes) else key) in PUBLIC_KEYS
    ]
    if not public:
        return []
    positions = ", ".join(f"#{n}" for n in public)
    return [
        checks.Error(
            f"OAUTH2_INTEGRATOR['ENCRYPTION_KEYS'] key {positions} is the example "
            "project's public development key: tokens and client secrets encrypted "
            "with it are readable by anyone.",
            hint=(
                'Generate a key with python -c "from cryptography.fernet import '
                'Fernet; print(Fernet.generate_key().decode())", put it first, run '
                "`manage.py oauth2_rotate_keys`, then remove the public key."
            ),
            id="oauth2_integrator.E003",
        )
    ]


# --------------------------------------------------------- checks of stored rows


def _aliases(databases: Sequence[str] | None, *, deploy: bool) -> list[str]:
    if databases is not None:
        return list(databases)
    return ["default"] if deploy else []


def _tables_exist(alias: str, *tables: str) -> bool:
    """False before ``migrate`` created them (the check also runs during migrate)."""
    try:
        existing = set(connections[alias].introspection.table_names())
    except DatabaseError:
        return False
    return set(tables) <= existing


def _stored_values_decrypt(aliases: Iterable[str]) -> list[checks.CheckMessage]:
    from . import crypto
    from .rotation import encrypted_fields

    try:
        parse_keys(app_settings.ENCRYPTION_KEYS)
    except ImproperlyConfigured:
        return []  # E001 already says so
    failures: dict[str, int] = {}
    for alias in aliases:
        for model, fields in encrypted_fields():
            if not _tables_exist(alias, model._meta.db_table):
                continue
            # The raw column, cast to plain text: the field would decrypt (and
            # raise, or hide a failure behind the Undecryptable marker).
            raw = {
                f"_raw_{f.name}": Cast(f.name, output_field=models.TextField())
                for f in fields
            }
            try:
                rows = list(
                    model._default_manager.using(alias)
                    .order_by("-pk")
                    .annotate(**raw)
                    .values_list(*raw)[:DECRYPT_SAMPLE_ROWS]
                )
            except DatabaseError:
                continue
            for row in rows:
                for model_field, value in zip(fields, row, strict=True):
                    if not value:
                        continue
                    try:
                        crypto.decrypt(value)
                    except ImproperlyConfigured:
                        label = f"{model._meta.label}.{model_field.name}"
                        failures[label] = failures.get(label, 0) + 1
    if not failures:
        return []
    where = ", ".join(f"{label} ({count})" for label, count in sorted(failures.items()))
    return [
        checks.Error(
            "Stored secrets cannot be decrypted with any key in "
            f"OAUTH2_INTEGRATOR['ENCRYPTION_KEYS']: {where}, in the newest "
            f"{DECRYPT_SAMPLE_ROWS} rows of each table. Logins and refreshes of "
            "those clients will fail.",
            hint=(
                "Restore the key that encrypted them (a key must stay in the list "
                "until `manage.py oauth2_rotate_keys` reports everything current). "
                "If it is lost: type each client secret again in the admin or import "
                "it with `manage.py oauth2_import_clients`, and authorize the "
                "affected clients again. `manage.py oauth2_rotate_keys` lists every "
                "value it cannot open."
            ),
            id="oauth2_integrator.E002",
        )
    ]


def _stored_clients(aliases: Iterable[str]) -> list[checks.CheckMessage]:
    from .forms import URL_FIELDS
    from .models import OAuth2Client, TokenAuthMethod
    from .validators import has_userinfo, insecure_http

    insecure: list[str] = []
    credentials: list[str] = []
    no_pkce: list[str] = []
    allow_http = app_settings.ALLOW_INSECURE_HTTP
    for alias in aliases:
        if not _tables_exist(alias, OAuth2Client._meta.db_table):
            continue
        try:
            clients = list(
                OAuth2Client.objects.using(alias)
                .order_by("name")
                .values("name", "token_auth_method", "use_pkce", *URL_FIELDS)[
                    :CLIENT_SAMPLE_ROWS
                ]
            )
        except DatabaseError:
            continue
        for client in clients:
            urls = {name: client[name] or "" for name in URL_FIELDS}
            bad = [n for n, url in urls.items() if has_userinfo(url)]
            if bad:
                credentials.append(f"{client['name']} ({', '.join(bad)})")
            bad = [n for n, url in urls.items() if n != "issuer" and insecure_http(url)]
            if bad and not allow_http:
                insecure.append(f"{client['name']} ({', '.join(bad)})")
            if (
                client["token_auth_method"] == TokenAuthMethod.NONE
                and not client["use_pkce"]
            ):
                no_pkce.append(client["name"])
    found: list[checks.CheckMessage] = []
    if insecure:
        found.append(
            checks.Warning(
                "OAuth2 clients use plain http:// outside loopback: "
                f"{'; '.join(insecure)}. Codes, tokens and client secrets cross "
                "the network unencrypted.",
                hint=(
                    "Change the URLs to https:// in the admin or the import file "
                    "(OAUTH2_INTEGRATOR['ALLOW_INSECURE_HTTP'] = True accepts them "
                    "for development only)."
                ),
                id="oauth2_integrator.W004",
            )
        )
    if credentials:
        found.append(
            checks.Warning(
                "OAuth2 client URLs contain a user name or password (user:pass@): "
                f"{'; '.join(credentials)}. They end up in logs and error messages.",
                hint=(
                    "Remove them in the admin (the change page shows and saves the "
                    "URL without them) or in the import file, and change that "
                    "password at the provider."
                ),
                id="oauth2_integrator.W005",
            )
        )
    if no_pkce:
        found.append(
            checks.Warning(
                "Public OAuth2 clients (token endpoint authentication “None”) "
                f"without PKCE: {', '.join(no_pkce)}. An intercepted authorization "
                "code can be redeemed by anyone (RFC 9700).",
                hint="Turn PKCE on for them, or give them a client secret.",
                id="oauth2_integrator.W006",
            )
        )
    return found


@checks.register(checks.Tags.database)
def check_stored_data(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Run by ``migrate`` and ``check --database``: decryptable secrets, safe URLs."""
    aliases = _aliases(databases, deploy=False)
    return _stored_values_decrypt(aliases) + _stored_clients(aliases)


@checks.register(checks.Tags.security, deploy=True)
def check_stored_data_at_deploy(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """The same for ``check --deploy`` without ``--database`` (the default database).

    When ``--database`` is given, the database check above already ran.
    """
    if databases is not None:
        return []
    aliases = _aliases(None, deploy=True)
    return _stored_values_decrypt(aliases) + _stored_clients(aliases)
