"""Any standards-following authorization server, driven only by the client's fields."""

from __future__ import annotations

from .base import ProviderProfile
from .registry import register


@register
class GenericProvider(ProviderProfile):
    key = "generic"
    name = "Generic OAuth 2.0 server"
