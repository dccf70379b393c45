"""Provider profiles: each provider's deviations from RFC 6749, as data and hooks."""

from __future__ import annotations

from . import generic, registry
from .base import ProviderProfile
from .registry import get, register

__all__ = ["ProviderProfile", "generic", "get", "register", "registry"]
