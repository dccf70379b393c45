"""Known provider profiles, by key."""

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
    return cls


def get(key: str) -> ProviderProfile:
    try:
        return _profiles[key]()
    except KeyError:
        known = ", ".join(sorted(_profiles))
        raise ConfigurationError(
            f"Unknown provider profile {key!r}. Known profiles: {known}."
        ) from None


def choices() -> list[tuple[str, str]]:
    return sorted(
        ((key, cls.name or key) for key, cls in _profiles.items()), key=lambda c: c[1]
    )
