"""Registering clients from data (a deploy file), create-or-update by ``name``.

The import is meant to run on every deploy, so it must be repeatable (an unchanged
file changes nothing), must never wipe what the file does not mention (a file
without ``client_secret`` keeps the stored secret), and must be all-or-nothing: a
half-applied registration file leaves production in a state nobody wrote down.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models, transaction

from .exceptions import OAuth2IntegratorError
from .models import OAuth2Client

__all__ = [
    "IMPORTABLE_FIELDS",
    "SECRET_ENV_KEY",
    "ImportFailed",
    "ImportOutcome",
    "import_clients",
    "load_entries",
    "read_entries",
]

#: The OAuth2Client fields a registration file may set (ids and timestamps are not).
IMPORTABLE_FIELDS: tuple[str, ...] = (
    "name",
    "display_name",
    "provider",
    "client_id",
    "client_secret",
    "authorization_endpoint",
    "token_endpoint",
    "revocation_endpoint",
    "issuer",
    "redirect_uri",
    "scope",
    "token_auth_method",
    "use_pkce",
    "extra_authorize_params",
    "extra_token_params",
    "provider_options",
    "enabled",
)

#: Fields a new client takes from its provider profile when the file omits them.
#: Endpoints and scope are not copied: left blank, they resolve from the profile
#: at use, so a corrected profile reaches existing clients.
PROFILE_DEFAULTS = ("token_auth_method", "use_pkce")

#: Names an environment variable that holds the client secret, so the file itself
#: can be committed without it.
SECRET_ENV_KEY = "client_secret_env"  # noqa: S105 (a key name, not a secret)

_KNOWN_KEYS = (*IMPORTABLE_FIELDS, SECRET_ENV_KEY)


class ImportFailed(OAuth2IntegratorError, ValueError):
    """The registration file cannot be applied; ``problems`` holds one line each.

    Messages name the entry (list index and name), the key and the reason, never
    a value: the value may be a secret.
    """

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        if self.problems:
            message = "\n".join([message, *(f"  {line}" for line in self.problems)])
        super().__init__(message)


@dataclass
class ImportOutcome:
    """What an import did (or, for a dry run, would do), by client name."""

    dry_run: bool = False
    created: list[str] = field(default_factory=list)
    #: Client name -> names of the fields that changed (never their values).
    updated: dict[str, list[str]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"created {len(self.created)}, updated {len(self.updated)}, "
            f"unchanged {len(self.unchanged)}"
        )


def read_entries(path: str, *, stdin: IO[str] | None = None) -> list[Any]:
    """Read a registration file; ``-`` means standard input."""
    if path == "-":
        if stdin is None:
            raise ImportFailed("No standard input to read the clients from.")
        return load_entries(stdin.read(), source="standard input")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ImportFailed(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError as exc:
        raise ImportFailed(
            f"Cannot read {path}: it is not UTF-8 text ({exc.reason})."
        ) from None
    return load_entries(text, source=path)


def load_entries(text: str, *, source: str = "the input") -> list[Any]:
    """Parse the JSON document: a list of client objects."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFailed(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}."
        ) from None
    if not isinstance(data, list):
        raise ImportFailed(
            f"{source} must hold a JSON list of client objects, not a "
            f"{_json_type(data)}."
        )
    return data


def import_clients(
    entries: Sequence[Any],
    *,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
) -> ImportOutcome:
    """Create or update one OAuth2Client per entry, matched by ``name``.

    Every entry is validated (the model's ``full_clean``) before anything is
    written, and all writes happen in one transaction: when any entry is invalid,
    ``ImportFailed`` lists every problem and nothing is written.
    """
    environ = os.environ if environ is None else environ
    problems: list[tuple[int, str]] = []
    prepared: list[_Entry] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(entries):
        item = _prepare(index, raw, environ)
        problems.extend((index, line) for line in item.problems)
        if not item.name:
            continue
        if item.name in seen:
            problems.append(
                (
                    index,
                    f"{item.label}: name: the same name is already used by entry "
                    f"[{seen[item.name]}]; each client may appear once.",
                )
            )
            continue
        seen[item.name] = index
        prepared.append(item)

    outcome = ImportOutcome(dry_run=dry_run)
    with transaction.atomic():
        # Lock the rows this import may change, so two deploys running the import
        # at once apply one after the other instead of interleaving.
        existing = {
            client.name: client
            for client in OAuth2Client.objects.select_for_update().filter(
                name__in=list(seen)
            )
        }
        to_save: list[tuple[OAuth2Client, list[str] | None]] = []
        for item in prepared:
            client = existing.get(item.name) or OAuth2Client()
            if client.pk is None:
                _profile_defaults(client, item)
            before = {key: getattr(client, key) for key in item.values}
            for key, value in item.values.items():
                setattr(client, key, value)
            # Validated even when the entry already has problems, so one run
            # reports everything; fields that failed their type check are left
            # out rather than reported twice.
            try:
                client.full_clean(exclude=item.bad_fields)
            except ValidationError as exc:
                problems.extend(
                    (item.index, line)
                    for line in _describe_validation_error(item.label, exc)
                )
                continue
            if item.problems:
                continue
            if client.pk is None:
                outcome.created.append(item.name)
                to_save.append((client, None))
                continue
            changed = [k for k in item.values if getattr(client, k) != before[k]]
            if changed:
                outcome.updated[item.name] = changed
                to_save.append((client, changed))
            else:
                outcome.unchanged.append(item.name)
        if problems:
            problems.sort(key=lambda problem: problem[0])
            invalid = len({index for index, _ in problems})
            raise ImportFailed(
                f"{invalid} of {len(entries)} entries are invalid, so nothing was "
                "written (the import is all-or-nothing; fix them and run it again):",
                [line for _, line in problems],
            )
        if not dry_run:
            for client, fields in to_save:
                if fields is None:
                    client.save()
                else:
                    # Only what the file changed: the stored secret is not
                    # re-encrypted and concurrent edits to other fields survive.
                    client.save(update_fields=[*fields, "updated_at"])
    return outcome


@dataclass
class _Entry:
    """One entry of the file, checked for keys and JSON types."""

    index: int
    label: str
    name: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: Fields whose value had the wrong type (kept out of full_clean).
    bad_fields: list[str] = field(default_factory=list)


def _prepare(index: int, entry: Any, environ: Mapping[str, str]) -> _Entry:
    """Check one entry's keys and JSON types; turn it into model field values."""
    if not isinstance(entry, dict):
        label = f"[{index}]"
        wrong = f"{label}: expected a JSON object, got a {_json_type(entry)}."
        return _Entry(index, label, problems=[wrong])
    name = entry.get("name")
    if isinstance(name, str) and name:
        item = _Entry(index, f"[{index}] {name!r}", name=name)
    else:
        item = _Entry(index, f"[{index}]")
    label = item.label

    for key in entry:
        if key not in _KNOWN_KEYS:
            hint = difflib.get_close_matches(str(key), _KNOWN_KEYS, n=1)
            item.problems.append(
                f"{label}: unknown key {key!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f". Known keys: {', '.join(_KNOWN_KEYS)}."
            )
    if not item.name:
        item.problems.append(
            f"{label}: name: required, a non-empty string (clients are created or "
            "updated by name)."
        )

    for key in IMPORTABLE_FIELDS:
        if key not in entry or key == "name":
            continue
        value = entry[key]
        if key == "scope":
            value, problem = _scope(value)
        else:
            problem = _type_problem(OAuth2Client._meta.get_field(key), value)
        if problem:
            item.problems.append(f"{label}: {key}: {problem}")
            item.bad_fields.append(key)
        else:
            item.values[key] = value
    if item.name:
        item.values["name"] = item.name

    if SECRET_ENV_KEY in entry:
        variable = entry[SECRET_ENV_KEY]
        if "client_secret" in entry:
            item.problems.append(
                f"{label}: give either client_secret or {SECRET_ENV_KEY}, not both."
            )
        elif not isinstance(variable, str) or not variable:
            item.problems.append(
                f"{label}: {SECRET_ENV_KEY}: must be the name of an environment "
                "variable (a non-empty string)."
            )
        elif not environ.get(variable):
            item.problems.append(
                f"{label}: {SECRET_ENV_KEY}: the environment variable {variable} is "
                "not set (or empty); set it to the client secret."
            )
        else:
            item.values["client_secret"] = environ[variable]
    return item


def _profile_defaults(client: OAuth2Client, item: _Entry) -> None:
    """A new client with a provider gets the profile's method and PKCE setting
    unless the file sets them (an unknown provider is reported by full_clean)."""
    from .exceptions import ConfigurationError
    from .providers import registry

    provider = item.values.get("provider")
    if not isinstance(provider, str) or not provider:
        return
    try:
        profile = registry.get(provider)
    except ConfigurationError:
        return
    for key in PROFILE_DEFAULTS:
        if key not in item.values:
            setattr(client, key, getattr(profile, key))


def _scope(value: Any) -> tuple[str, str | None]:
    """A scope is a space-separated string or a list of single scopes."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, list):
        if not all(isinstance(item, str) and item.split() == [item] for item in value):
            return "", "each item of the list must be one scope (a string, no spaces)."
        return " ".join(value), None
    return "", f"must be a string or a list of strings, not a {_json_type(value)}."


def _type_problem(model_field: Any, value: Any) -> str | None:
    """JSON types must match the field, rather than being coerced silently."""
    kind = _json_type(value)
    if isinstance(model_field, models.BooleanField):
        return (
            None if isinstance(value, bool) else f"must be true or false, not a {kind}."
        )
    if isinstance(model_field, models.JSONField):
        return (
            None if isinstance(value, dict) else f"must be a JSON object, not a {kind}."
        )
    if isinstance(model_field, models.CharField | models.TextField):
        if isinstance(value, str):
            return None
        return f'must be a string (use "" for none), not a {kind}.'
    return None


def _describe_validation_error(label: str, exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for key, messages in exc.message_dict.items():
        where = "" if key == NON_FIELD_ERRORS else f" {key}:"
        lines.extend(f"{label}:{where} {message}" for message in messages)
    return lines


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
