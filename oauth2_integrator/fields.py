"""Model fields whose values are encrypted before they reach the database.

The column holds a Fernet token (text); Python code sees the plain value. Empty
strings and NULL stay as they are, so "no refresh token" needs no ciphertext.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models

from . import crypto
from .exceptions import ConfigurationError


class Undecryptable(str):
    """A stored value no configured key opens, kept as its ciphertext.

    Loading a row must not fail because one secret cannot be decrypted (the admin
    page that repairs it would not open): the field hands out this marker instead.
    It is falsy, so "is a secret stored?" checks stay honest, it shows as a fixed
    text, and saving the row writes the original ciphertext back unchanged, so a
    missing key can still be restored later. Code that needs the plain value calls
    ``reveal()``, which raises a clear ``ConfigurationError``.
    """

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<undecryptable>"

    __str__ = __repr__

    @property
    def ciphertext(self) -> str:
        return str.__str__(self)


def reveal(value: str | None, *, what: str, client: str | None = None) -> str:
    """The plain value of an encrypted field, or a ``ConfigurationError`` saying why not."""
    if isinstance(value, Undecryptable):
        raise ConfigurationError(
            f"The stored {what} cannot be decrypted with any key in "
            "OAUTH2_INTEGRATOR['ENCRYPTION_KEYS'] (was a key removed before "
            "`manage.py oauth2_rotate_keys` ran?). Restore the key, or type the value "
            "again in the Django admin or import it with `oauth2_import_clients`.",
            client=client,
        )
    return value or ""


class EncryptedTextField(models.TextField):
    """A secret string (token, client secret, PKCE verifier).

    With ``tolerate_undecryptable=True`` a value no key opens loads as
    ``Undecryptable`` instead of raising (used for the client secret, which an
    operator must be able to replace in the admin).
    """

    description = "Text encrypted at rest"

    def __init__(self, *args: Any, tolerate_undecryptable: bool = False, **kwargs: Any):
        self.tolerate_undecryptable = tolerate_undecryptable
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.tolerate_undecryptable:
            kwargs["tolerate_undecryptable"] = True
        return name, path, args, kwargs

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return value
        try:
            plain = crypto.decrypt(value)
        except ConfigurationError:
            if self.tolerate_undecryptable:
                return Undecryptable(value)
            raise
        return self.decode(plain)

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, Undecryptable):
            return value.ciphertext
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
