"""The provider catalog: one TOML file per provider in ``providers/catalog/``, as data.

Each file (``catalog/<key>.toml``) reads alone: the provider's endpoints, default
scopes, client authentication, PKCE support and its deviations from RFC 6749 in
the words of the quirk vocabulary (``options.VOCABULARY``), with the URL of the
documentation page the facts came from. ``docs/adding-a-provider.md`` explains how
to write one; ``manage.py oauth2_providers_doc`` turns the catalog into
``docs/providers.md``.

The files are read lazily, on the first ``registry.get()`` / ``registry.choices()``,
never at import time, and every entry is validated: an unknown key is refused with
the file's name and the known keys, a value of the wrong type with the key's name.
Each entry becomes a ``ProviderProfile`` subclass registered under its key. A
provider that needs code has a module ``providers/<key>.py`` whose class sets
``catalog_key = "<key>"`` and registers itself; it is imported here, takes every
value it does not define itself from the file, and wins over the plain entry.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import threading
import tomllib
from pathlib import Path
from typing import Any

from .base import ProviderProfile
from .options import VOCABULARY, Option, OptionError

__all__ = [
    "CATALOG_DIR",
    "ENTRY_KEYS",
    "CatalogError",
    "apply_entry",
    "ensure_loaded",
    "entries",
    "load_entry",
    "read_catalog",
]

#: Where the shipped catalog lives (package data, see pyproject.toml).
CATALOG_DIR = Path(__file__).with_name("catalog")

_KEY = re.compile(r"^[a-z0-9_-]+$")
#: ``{name}`` placeholders in endpoint templates, filled from ``url_values``.
_TEMPLATE = re.compile(r"\{[a-z_]+\}")

#: Keys of an entry besides the quirk vocabulary (spec: "TOML entry: keys").
ENTRY_KEYS: dict[str, Option] = {
    option.name: option
    for option in (
        Option("key", "", "registry key, stored in OAuth2Client.provider", "str"),
        Option("name", "", "name shown in the admin", "str"),
        Option("docs", "", "documentation page the facts came from", "str"),
        Option("notes", "", "what an operator should know, shown in the admin", "str"),
        Option("authorization_endpoint", "", "authorization endpoint URL", "str"),
        Option("token_endpoint", "", "token endpoint URL", "str"),
        Option("revocation_endpoint", "", "revocation endpoint URL (RFC 7009)", "str"),
        Option("issuer", "", "issuer identifier (RFC 8414 / OpenID Connect)", "str"),
        Option("userinfo_endpoint", "", "URL that tells who the token is for", "str"),
        Option(
            "account_fields",
            [],
            "userinfo fields that name the account, first present wins",
            "str_list",
        ),
        Option(
            "default_scopes", [], "scopes used when the client sets none", "str_list"
        ),
        Option(
            "token_auth_method",
            "client_secret_basic",
            "how the client authenticates at the token endpoint",
            "choice",
            ("client_secret_basic", "client_secret_post", "none"),
        ),
        Option("use_pkce", True, "send PKCE (RFC 7636); false where refused", "bool"),
    )
}

#: Entry keys that hold a URL: https only (``{placeholders}`` allowed).
URL_KEYS = (
    "docs",
    "authorization_endpoint",
    "token_endpoint",
    "revocation_endpoint",
    "issuer",
    "userinfo_endpoint",
    "refresh_endpoint",
)

_REQUIRED = ("key", "name", "docs")


class CatalogError(OptionError):
    """A catalog file that cannot be used; the message names the file and the key."""


def _known_keys() -> dict[str, Option]:
    return {**ENTRY_KEYS, **VOCABULARY}


def load_entry(path: Path) -> dict[str, Any]:
    """Read and validate one catalog file; raise ``CatalogError`` naming it."""
    where = f"provider catalog file {path.name}"
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"Cannot read the {where}: {exc}") from exc
    known = _known_keys()
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise CatalogError(
            f"Unknown key(s) in the {where}: {', '.join(unknown)}. "
            f"Known keys: {', '.join(known)}."
        )
    missing = [name for name in _REQUIRED if not data.get(name)]
    if missing:
        raise CatalogError(f"The {where} needs {', '.join(missing)}.")
    for name, value in data.items():
        try:
            known[name].check(value)
        except OptionError as exc:
            raise CatalogError(f"In the {where}: {exc}") from None
    if not _KEY.match(data["key"]) or data["key"] != path.stem:
        raise CatalogError(
            f"In the {where}: key must be the file's name ({path.stem!r}) and use "
            "only a-z, 0-9, '_' and '-'."
        )
    for name in URL_KEYS:
        value = data.get(name, "")
        if value and not value.startswith("https://"):
            raise CatalogError(f"In the {where}: {name} must be an https URL.")
        if set("{}") & set(_TEMPLATE.sub("", value)):
            raise CatalogError(f"In the {where}: {name} has a malformed template.")
    return data


def read_catalog(directory: Path | None = None) -> list[dict[str, Any]]:
    """Every entry of a catalog directory (the shipped one by default), validated,
    in file-name order."""
    folder = CATALOG_DIR if directory is None else directory
    loaded = [load_entry(path) for path in sorted(folder.glob("*.toml"))]
    names: dict[str, str] = {}
    for entry in loaded:
        other = names.setdefault(entry["name"].casefold(), entry["key"])
        if other != entry["key"]:
            raise CatalogError(
                f"Provider catalog files {other}.toml and {entry['key']}.toml "
                f"share the name {entry['name']!r}."
            )
    return loaded


def _attributes(entry: dict[str, Any]) -> dict[str, Any]:
    """Class attributes of a profile made from an entry."""
    attributes = dict(entry)
    # The admin's pre-fill reads one space-separated scope string.
    attributes["default_scope"] = " ".join(entry.get("default_scopes", []))
    return attributes


def apply_entry(cls: type[ProviderProfile], entry: dict[str, Any]) -> None:
    """Give a hook class every value of its entry it does not define itself."""
    own = cls.__dict__
    for name, value in _attributes(entry).items():
        if name not in own:
            setattr(cls, name, value)


def _class_name(key: str) -> str:
    words = re.split(r"[-_]", key)
    return "".join(word.capitalize() for word in words) + "Profile"


#: Modules of this package that are not provider hooks.
_NOT_HOOKS = frozenset({"base", "catalog", "config", "generic", "options", "registry"})


def _hook_module(key: str) -> str | None:
    """``oauth2_integrator.providers.<key>`` when that module exists (a hook)."""
    if key in _NOT_HOOKS:
        return None
    name = f"{__package__}.{key.replace('-', '_')}"
    try:
        return name if importlib.util.find_spec(name) is not None else None
    except (ImportError, ValueError):  # pragma: no cover - odd keys
        return None


_lock = threading.Lock()
_entries: dict[str, dict[str, Any]] | None = None


def entries() -> dict[str, dict[str, Any]]:
    """The validated catalog entries by key (loads the catalog once)."""
    ensure_loaded()
    assert _entries is not None
    return _entries


def ensure_loaded() -> None:
    """Read the catalog and register its profiles, once per process.

    Hook modules are imported here; they must not call ``registry.get()`` at
    import time (the lock is held).
    """
    global _entries
    if _entries is not None:
        return
    with _lock:
        if _entries is not None:
            return
        from . import registry

        loaded = {entry["key"]: entry for entry in read_catalog()}
        for key in loaded:
            module = _hook_module(key)
            if module:
                importlib.import_module(module)
        for key, entry in loaded.items():
            hook = registry._profiles.get(key)
            if hook is not None and getattr(hook, "catalog_key", "") == key:
                apply_entry(hook, entry)
            elif hook is None:
                registry._profiles[key] = type(
                    _class_name(key),
                    (ProviderProfile,),
                    {"__module__": __name__, **_attributes(entry)},
                )
        _entries = loaded


# --- the providers page of the docs (manage.py oauth2_providers_doc) -------------

#: Hooks a profile class may override (ProviderProfile's named hooks).
HOOKS = (
    "configure",
    "authorization_params",
    "prepare_token_request",
    "prepare_refresh_request",
    "parse_token_response",
    "parse_refresh_response",
    "renewal_request",
    "token_endpoint_from_callback",
    "validate_token_set",
    "account_name",
)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else _json(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _hooks(profile: ProviderProfile) -> list[str]:
    cls = type(profile)
    return [
        name
        for name in HOOKS
        if getattr(cls, name, None) is not getattr(ProviderProfile, name, None)
    ]


def render_markdown() -> str:
    """``docs/providers.md``: every profile, its endpoints and quirks, from the catalog.

    Deterministic (no dates), so ``oauth2_providers_doc --check`` can compare it.
    """
    from . import registry

    choices = registry.choices()
    lines = [
        "# Provider profiles",
        "",
        "<!-- Generated by `manage.py oauth2_providers_doc` from "
        "oauth2_integrator/providers/catalog/*.toml and the profile classes; "
        "do not edit by hand. -->",
        "",
        f"{len(choices)} profiles. Pick one as the client's provider in the admin (or "
        "`provider` in `oauth2_import_clients`); every value below can be overridden "
        "per client with the client's fields or its provider options. "
        "How to add one: [adding-a-provider.md](adding-a-provider.md).",
        "",
        "## The quirk vocabulary",
        "",
        "| key | default | meaning |",
        "|---|---|---|",
    ]
    for option in VOCABULARY.values():
        lines.append(
            f"| `{option.name}` | `{_cell(_json(option.default))}` | "
            f"{_cell(option.description)} ({option.expected()}) |"
        )
    lines += ["", "## Profiles", ""]
    lines += [f"- [{_cell(name)}](#{key}) (`{key}`)" for key, name in choices]
    for key, name in choices:
        profile = registry.get(key)
        lines += ["", f'<a id="{key}"></a>', f"### {name}", "", f"- key: `{key}`"]
        docs = getattr(profile, "docs", "")
        if docs:
            lines.append(f"- documentation: <{docs}>")
        for field in (
            "authorization_endpoint",
            "token_endpoint",
            "revocation_endpoint",
            "issuer",
            "userinfo_endpoint",
        ):
            value = getattr(profile, field, "")
            if value:
                lines.append(f"- {field.replace('_', ' ')}: `{value}`")
        scopes = list(getattr(profile, "default_scopes", []) or []) or (
            profile.default_scope.split()
        )
        if scopes:
            lines.append(f"- default scopes: `{' '.join(scopes)}`")
        lines.append(f"- client authentication: `{profile.token_auth_method}`")
        lines.append(f"- PKCE: {'yes' if profile.use_pkce else 'no'}")
        quirks = [
            f"`{option.name} = {_cell(_json(getattr(profile, option.name)))}`"
            for option in VOCABULARY.values()
            if getattr(profile, option.name, option.default) != option.default
        ]
        lines.append(f"- quirks: {', '.join(quirks) if quirks else 'none (RFC 6749)'}")
        hooks = _hooks(profile)
        if hooks:
            module = type(profile).__module__
            lines.append(
                f"- hooks: {', '.join(f'`{hook}`' for hook in hooks)} (`{module}`)"
            )
        notes = getattr(profile, "notes", "")
        if notes:
            lines += ["", _cell(notes)]
    return "\n".join(lines) + "\n"
