"""One client, resolved: its profile's data, then its own fields, then its options.

``configure(client)`` is the one place that decides which endpoint, scope and
quirk a request uses: profile data < client model fields that are set (non-blank
endpoints, scope, issuer) < the client's ``provider_options``. It is built per
login or refresh, never on ``get_access_token``'s hot path.
"""

from __future__ import annotations

import dataclasses
import re
import types
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError

from ..exceptions import (
    ConfigurationError,
    TokenEndpointError,
    TransientTokenEndpointError,
)
from . import registry
from .options import VOCABULARY, OptionError, validate_options

if TYPE_CHECKING:
    from ..models import OAuth2Client
    from .base import ProviderProfile

__all__ = ["ClientConfig", "configure", "fill_template", "validate_client"]

#: Options whose values are objects: a client's value is merged into the profile's
#: (the client wins per key). Lists and single values replace the profile's.
_MERGED = frozenset(
    name for name, option in VOCABULARY.items() if option.kind in {"dict", "str_dict"}
)

_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: What a template value may hold: a host label, a tenant id or a domain. Nothing
#: that could move the URL to another host or path (``/``, ``@``, ``?``, ``#``).
_TEMPLATE_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*")


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Everything a request to the provider needs, resolved for one client."""

    client: OAuth2Client
    profile: ProviderProfile
    authorization_endpoint: str
    token_endpoint: str
    #: Where refresh requests go: ``refresh_endpoint`` or the token endpoint.
    refresh_endpoint: str
    revocation_endpoint: str
    issuer: str
    userinfo_endpoint: str
    scopes: list[str]
    token_auth_method: str
    use_pkce: bool
    #: The merged quirk vocabulary, by attribute: ``config.options.token_path``.
    options: types.SimpleNamespace

    def replace(self, **changes: Any) -> ClientConfig:
        """A copy with some fields changed (for ``configure`` hooks)."""
        return dataclasses.replace(self, **changes)

    @property
    def name(self) -> str:
        return self.client.name

    def __repr__(self) -> str:
        return (
            f"ClientConfig(client={self.client.name!r}, "
            f"profile={self.profile.key!r}, token_endpoint={self.token_endpoint!r})"
        )


def fill_template(url: str, values: dict[str, str], *, where: str) -> str:
    """``https://{subdomain}.okta.com/...`` with ``{subdomain}`` from ``values``.

    A missing value is a ConfigurationError that names it and where to set it.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = values.get(name)
        if not found:
            raise ConfigurationError(
                f"The {where} ({url}) needs a value for {{{name}}}: set it in the "
                f'client\'s provider options, e.g. {{"url_values": {{"{name}": "..."}}}}.'
            )
        if not _TEMPLATE_VALUE.fullmatch(found):
            raise ConfigurationError(
                f"The value for {{{name}}} in the client's url_values may hold only "
                "letters, digits, dots, dashes and underscores (it becomes part of "
                f"the {where})."
            )
        return found

    return _TEMPLATE.sub(value, url) if "{" in url else url


def _options(client: OAuth2Client, profile: ProviderProfile) -> dict[str, Any]:
    merged = profile.vocabulary()
    own = client.provider_options or {}
    try:
        validate_options(own, where=f"provider options of {client.name!r}")
    except OptionError as exc:
        raise ConfigurationError(str(exc), client=client.name) from None
    # The client's older fields add to the profile's parameters (client wins).
    merged["authorize_params"] = {
        **merged["authorize_params"],
        **(client.extra_authorize_params or {}),
    }
    merged["token_params"] = {
        **merged["token_params"],
        **(client.extra_token_params or {}),
    }
    for name, value in own.items():
        merged[name] = {**merged[name], **value} if name in _MERGED else value
    return merged


def _scopes(
    client: OAuth2Client, profile: ProviderProfile, required: list[str]
) -> list[str]:
    wanted = client.scopes or profile.scopes
    return list(dict.fromkeys([*wanted, *required]))


def configure(client: OAuth2Client, *, hooks: bool = True) -> ClientConfig:
    """Resolve ``client`` (see the module docstring); the profile's ``configure``
    hook has the last word, then the endpoints a login needs must be there.

    Raises ConfigurationError with an operator's message.
    """
    profile = registry.get(client.provider)
    options = _options(client, profile)
    values = options["url_values"]

    def endpoint(own: str, profiles: str, what: str) -> str:
        return fill_template(own or profiles, values, where=f"{what} of {client.label}")

    token_endpoint = endpoint(
        client.token_endpoint, profile.token_endpoint, "token endpoint"
    )
    if options["refresh_endpoint"] and (
        "refresh_endpoint" in (client.provider_options or {})
        or not client.token_endpoint
    ):
        # The profile's refresh endpoint belongs with its token endpoint: a client
        # that points the token endpoint at a sandbox or proxy refreshes there too.
        refresh_endpoint = endpoint("", options["refresh_endpoint"], "refresh endpoint")
    else:
        refresh_endpoint = token_endpoint
    config = ClientConfig(
        client=client,
        profile=profile,
        authorization_endpoint=endpoint(
            client.authorization_endpoint,
            profile.authorization_endpoint,
            "authorization endpoint",
        ),
        token_endpoint=token_endpoint,
        refresh_endpoint=refresh_endpoint,
        revocation_endpoint=endpoint(
            client.revocation_endpoint,
            profile.revocation_endpoint,
            "revocation endpoint",
        ),
        issuer=endpoint(client.issuer, profile.issuer, "issuer"),
        userinfo_endpoint=endpoint("", profile.userinfo_endpoint, "userinfo endpoint"),
        scopes=_scopes(client, profile, options["required_scopes"]),
        token_auth_method=client.token_auth_method,
        use_pkce=client.use_pkce,
        options=types.SimpleNamespace(**options),
    )
    if not hooks:
        return config
    config = profile.configure(config)
    for field, label in (
        ("token_endpoint", "a token endpoint"),
        ("authorization_endpoint", "an authorization endpoint"),
    ):
        if not getattr(config, field):
            raise ConfigurationError(
                f"{client.label} has no {field.replace('_', ' ')}: enter one, or pick "
                f"a provider that has {label}.",
                client=client.name,
            )
    return config


def validate_client(client: OAuth2Client) -> None:
    """``OAuth2Client.clean()``: the client must resolve to a usable configuration."""
    if not client.provider:
        return
    fields = (client.provider_options, client.extra_authorize_params)
    if not all(
        isinstance(value, dict) for value in (*fields, client.extra_token_params)
    ):
        return  # the fields' own validators say why
    try:
        configure(client, hooks=False)
        try:
            configure(client)
        except TransientTokenEndpointError:
            # The provider cannot be reached right now (OIDC discovery): an outage
            # must not stop operators from editing the client. What the hooks
            # check is checked again at the next login or refresh.
            pass
        except TokenEndpointError as exc:
            raise ConfigurationError(str(exc), client=client.name) from exc
    except ConfigurationError as exc:
        message = str(exc)
        if "provider options" in message or "url_values" in message:
            raise ValidationError({"provider_options": message}) from None
        if message.startswith("Unknown provider profile"):
            raise ValidationError({"provider": message}) from None
        if "no token endpoint" in message:
            raise ValidationError({"token_endpoint": message}) from None
        if "no authorization endpoint" in message:
            raise ValidationError({"authorization_endpoint": message}) from None
        raise ValidationError(message) from None
