"""Model fields whose values are encrypted before they reach the database.

The column holds a Fernet token (text); Python code sees the plain value. Empty
strings and NULL stay as they are, so "no refresh token" needs no ciphertext.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models

from . import crypto


class EncryptedTextField(models.TextField):
    """A secret string (token, client secret, PKCE verifier)."""

    description = "Text encrypted at rest"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return value
        return self.decode(crypto.decrypt(value))

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return crypto.encrypt(self.encode(value))

    def to_python(self, value: Any) -> Any:
        return value

    # Subclasses change how the plain value is serialised before encryption.
    def encode(self, value: Any) -> str:
        return str(value)

    def decode(self, value: str) -> Any:
        return value


class EncryptedJSONField(EncryptedTextField):
    """A JSON document (the rest of a token response) encrypted as one blob."""

    description = "JSON encrypted at rest"
    # Tell django-stubs that instances hold JSON values, not strings.
    _pyi_private_set_type: Any
    _pyi_private_get_type: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("default", dict)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        return crypto.encrypt(self.encode(value))

    def encode(self, value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    def decode(self, value: str) -> Any:
        return json.loads(value)

    def value_to_string(self, obj: Any) -> str:
        return self.encode(self.value_from_object(obj))
