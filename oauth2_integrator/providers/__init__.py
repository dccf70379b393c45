"""Provider profiles: each provider's deviations from RFC 6749, as data and hooks."""

from __future__ import annotations

from . import generic, oidc, registry
from .base import ProviderProfile
from .config import ClientConfig, configure
from .registry import get, register

__all__ = [
    "ClientConfig",
    "ProviderProfile",
    "configure",
    "generic",
    "get",
    "oidc",
    "register",
    "registry",
]
