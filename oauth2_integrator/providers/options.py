"""The quirk vocabulary: every way a provider may deviate from RFC 6749, as data.

One table serves four readers: the defaults of ``ProviderProfile``, the validation
of catalog entries (``providers/catalog/*.toml``), the validation of a client's
``provider_options`` (so an operator can handle a new quirk without a release),
and the generated providers page of the docs. A deviation that this table cannot
express is a named hook on a ``ProviderProfile`` subclass instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["VOCABULARY", "Option", "OptionError", "validate_options"]

_SCALAR = (str, int, float, bool)


class OptionError(ValueError):
    """A provider option is unknown or has the wrong type; the message names it."""


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    default: Any
    description: str
    #: "dict" (flat: string keys, scalar values), "str_dict", "str", "str_list",
    #: "bool", "int_or_none", or "choice" (one of ``choices``).
    kind: str
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> None:
        """Raise ``OptionError`` naming this option when ``value`` does not fit."""
        ok = {
            "dict": lambda v: (
                isinstance(v, dict)
                and all(
                    isinstance(k, str) and isinstance(x, _SCALAR) for k, x in v.items()
                )
            ),
            "str_dict": lambda v: (
                isinstance(v, dict)
                and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())
            ),
            "str": lambda v: isinstance(v, str),
            "str_list": lambda v: (
                isinstance(v, list) and all(isinstance(x, str) for x in v)
            ),
            "bool": lambda v: isinstance(v, bool),
            "int_or_none": lambda v: (
                v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
            ),
            "choice": lambda v: v in self.choices,
        }[self.kind](value)
        if not ok:
            raise OptionError(f"{self.name} must be {self.expected()}.")

    def expected(self) -> str:
        return {
            "dict": "an object of names to strings, numbers or booleans",
            "str_dict": "an object of names to strings",
            "str": "a string",
            "str_list": "a list of strings",
            "bool": "true or false",
            "int_or_none": "a whole number of seconds (0 or more) or null",
            "choice": "one of " + ", ".join(repr(c) for c in self.choices),
        }[self.kind]


def _options(*options: Option) -> dict[str, Option]:
    return {option.name: option for option in options}


VOCABULARY: dict[str, Option] = _options(
    # --- requests ------------------------------------------------------------------
    Option("authorize_params", {}, "extra authorization request parameters", "dict"),
    Option(
        "token_params",
        {},
        "extra parameters on every token request (code exchange and refresh)",
        "dict",
    ),
    Option("refresh_params", {}, "extra parameters on refresh requests only", "dict"),
    Option(
        "param_names",
        {},
        'protocol parameters sent under another name, e.g. {"client_id": "client_key"}',
        "str_dict",
    ),
    Option("scope_separator", " ", "how scopes are joined in requests", "str"),
    Option(
        "required_scopes",
        [],
        "scopes always added to the requested ones (e.g. offline_access)",
        "str_list",
    ),
    Option(
        "scope_on_refresh",
        False,
        "send the scope with refresh requests (Microsoft: AADSTS90009 without it)",
        "bool",
    ),
    Option(
        "token_request_format",
        "form",
        "body of token requests",
        "choice",
        ("form", "json"),
    ),
    Option("token_headers", {}, "extra headers on token requests", "str_dict"),
    Option(
        "refresh_endpoint",
        "",
        "refresh requests go here instead of the token endpoint",
        "str",
    ),
    Option(
        "url_values",
        {},
        "values for endpoint templates such as {tenant} or {subdomain}",
        "str_dict",
    ),
    # --- responses -----------------------------------------------------------------
    Option(
        "token_response_format",
        "auto",
        "how token responses are read",
        "choice",
        ("auto", "json", "form"),
    ),
    Option(
        "token_path",
        "",
        'dotted path to the object holding access_token ("authed_user", "data")',
        "str",
    ),
    Option(
        "bearer_token_types",
        [],
        'other names the provider gives Bearer tokens in token_type (Slack "user")',
        "str_list",
    ),
    Option(
        "ok_field",
        "",
        'a boolean field that is false on errors, sent with HTTP 200 (Slack "ok")',
        "str",
    ),
    Option(
        "errors_field",
        "",
        'a list of error objects sent instead of "error" (Fitbit "errors")',
        "str",
    ),
    Option(
        "expires_in_field",
        "expires_in",
        'field with the access token lifetime ("expires" for old Facebook)',
        "str",
    ),
    Option(
        "expires_at_field",
        "",
        'field with an absolute expiry (Strava "expires_at"), used without a lifetime',
        "str",
    ),
    Option(
        "expires_unit",
        "seconds",
        "unit of both expiry fields",
        "choice",
        ("seconds", "milliseconds"),
    ),
    Option(
        "default_expires_in",
        None,
        "lifetime in seconds when the response says nothing",
        "int_or_none",
    ),
    Option(
        "zero_expires_means_never",
        True,
        "an expiry of 0 means the token never expires",
        "bool",
    ),
    Option(
        "refresh_token_expires_in_field",
        "refresh_token_expires_in",
        'field with the refresh token lifetime ("x_refresh_token_expires_in")',
        "str",
    ),
    # --- the callback --------------------------------------------------------------
    Option(
        "code_param",
        "code",
        'callback parameter that carries the code ("spapi_oauth_code")',
        "str",
    ),
    Option(
        "callback_values",
        [],
        'callback parameters kept with the token ("realmId")',
        "str_list",
    ),
    Option(
        "token_values",
        [],
        'token response fields kept with the token ("instance_url")',
        "str_list",
    ),
    Option(
        "sends_iss",
        False,
        "the provider always sends iss in its callbacks (RFC 9207)",
        "bool",
    ),
)


def validate_options(values: Any, *, where: str = "provider options") -> None:
    """Refuse unknown keys (naming the known ones) and values of the wrong type."""
    if not isinstance(values, Mapping):
        raise OptionError(f"The {where} must be a JSON object.")
    unknown = sorted(set(values) - set(VOCABULARY))
    if unknown:
        raise OptionError(
            f"Unknown key(s) in the {where}: {', '.join(unknown)}. "
            f"Known keys: {', '.join(VOCABULARY)}."
        )
    for name, value in values.items():
        VOCABULARY[name].check(value)
