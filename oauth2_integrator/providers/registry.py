"""Known provider profiles, by key.

Profiles come from two places: classes registered with ``@register`` (``generic``,
``oidc`` and the hook classes of ``providers/<key>.py``) and the data catalog
(``providers/catalog/*.toml``, see ``catalog.py``), read on the first ``get()`` or
``choices()``. A hook class registered under a catalog key wins over the plain
entry and takes the entry's data for everything it does not set itself.
"""

from __future__ import annotations

from typing import TypeVar

from ..exceptions import ConfigurationError
from .base import ProviderProfile

P = TypeVar("P", bound=type[ProviderProfile])

_profiles: dict[str, type[ProviderProfile]] = {}


def register(cls: P) -> P:
    """Class decorator: make a profile selectable in the admin."""
    if not cls.key:
        raise ValueError(f"{cls.__name__} needs a non-empty `key`.")
    _profiles[cls.key] = cls
    from . import catalog

    catalog_key = getattr(cls, "catalog_key", "")
    if catalog_key and catalog._entries is not None and catalog_key in catalog._entries:
        catalog.apply_entry(cls, catalog._entries[catalog_key])
    return cls


def _loaded() -> dict[str, type[ProviderProfile]]:
    from . import catalog

    catalog.ensure_loaded()
    return _profiles


def get(key: str) -> ProviderProfile:
    profiles = _loaded()
    try:
        return profiles[key]()
    except KeyError:
        raise ConfigurationError(
            f"Unknown provider profile {key!r}. Pick one of the admin's provider "
            'list (docs/providers.md lists them all), or "generic" for any '
            "standard OAuth 2.0 server."
        ) from None


def choices() -> list[tuple[str, str]]:
    """Every profile as (key, name), sorted by name: the admin's provider select."""
    return sorted(
        ((key, cls.name or key) for key, cls in _loaded().items()),
        key=lambda choice: (choice[1].casefold(), choice[0]),
    )
