"""The protocol: authorization URL, state, PKCE, and requests to the token endpoint.

No views and no models are written here: the callback view and ``tokens`` decide
what to store; this module only speaks OAuth 2.0 (RFC 6749 §4.1, RFC 7636).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import email.utils
import hashlib
import json
import logging
import re
import secrets
import types
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

import requests
from django.utils import timezone

from . import providers, transport
from .exceptions import (
    OAuth2IntegratorError,
    TokenEndpointError,
    TransientTokenEndpointError,
)
from .fields import reveal
from .masking import mask, url_host
from .providers.base import MAX_JSON_DEPTH, JSONTooDeep
from .providers.config import ClientConfig
from .providers.options import VOCABULARY

if TYPE_CHECKING:
    from .models import OAuth2Client

logger = logging.getLogger("oauth2_integrator")

#: Token responses keep these; everything else goes to ``TokenSet.extra``.
STANDARD_FIELDS = {"access_token", "token_type", "refresh_token", "expires_in", "scope"}

#: The vocabulary's defaults: RFC 6749 as written.
STANDARD_OPTIONS = types.SimpleNamespace(
    **{name: option.default for name, option in VOCABULARY.items()}
)

#: Longer lifetimes (100 years) are read as "not said" rather than stored.
MAX_EXPIRES_IN = 100 * 365 * 24 * 3600


# --- state, PKCE, nonce -------------------------------------------------------------


def new_state() -> str:
    """256 random bits (RFC 6749 §10.12 asks for unguessable; RFC 9700 for >=128)."""
    return secrets.token_urlsafe(32)


def hash_state(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def new_code_verifier() -> str:
    """RFC 7636 §4.1: 43-128 characters from the unreserved set; 86 here."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """RFC 7636 §4.2, S256: BASE64URL(SHA256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


# --- authorization request ----------------------------------------------------------


def _stringify(params: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in params.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[str(key)] = str(value)
    return out


def _without_protocol_params(
    client: OAuth2Client, extras: dict[str, str], protocol: dict[str, str]
) -> dict[str, str]:
    """Extra parameters add to a request; they never replace the protocol's own.

    A client's ``extra_*_params`` are typed by an operator: an entry named ``state``,
    ``redirect_uri``, ``code_challenge`` or ``code`` would silently break the login
    or send the code elsewhere, so such entries are dropped (and named in the log).
    """
    clashes = sorted(set(extras) & set(protocol))
    if clashes:
        logger.warning(
            "OAuth2 client %r: ignoring extra parameter(s) %s, which the protocol "
            "sets itself.",
            client.name,
            ", ".join(clashes),
        )
    return {key: value for key, value in extras.items() if key not in protocol}


def config_for(client: OAuth2Client | ClientConfig) -> ClientConfig:
    """The resolved configuration; a ``ClientConfig`` passes through unchanged."""
    if isinstance(client, ClientConfig):
        return client
    return providers.configure(client)


def _renamed(params: dict[str, str], names: dict[str, str]) -> dict[str, str]:
    """``param_names``: protocol parameters sent under the provider's own names."""
    if not names:
        return params
    return {names.get(key, key): value for key, value in params.items()}


def authorization_url(
    client: OAuth2Client | ClientConfig,
    *,
    redirect_uri: str,
    state: str,
    code_verifier: str | None = None,
    nonce: str | None = None,
) -> str:
    """The URL the browser is sent to (RFC 6749 §4.1.1), every value URL-encoded.

    A query the endpoint already has (``?tenant=x``) is kept.
    """
    config = config_for(client)
    options = config.options
    params: dict[str, str] = {
        "response_type": "code",
        "client_id": config.client.client_id,
        "redirect_uri": redirect_uri,
    }
    if config.scopes:
        params["scope"] = options.scope_separator.join(config.scopes)
    params["state"] = state
    if code_verifier:
        params["code_challenge"] = code_challenge(code_verifier)
        params["code_challenge_method"] = "S256"
    if nonce and "openid" in config.scopes:
        params["nonce"] = nonce
    extras = _stringify(options.authorize_params)
    params.update(_without_protocol_params(config.client, extras, params))
    params = _renamed(params, options.param_names)
    params = config.profile.authorization_params(config, params)

    parts = urlsplit(config.authorization_endpoint)
    existing = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in params
    ]
    query = urlencode([*existing, *params.items()])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


# --- token endpoint -----------------------------------------------------------------


@dataclasses.dataclass
class TokenRequest:
    """A request to the token endpoint, open to a provider hook before it is sent."""

    url: str
    data: dict[str, str]
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    auth: tuple[str, str] | None = None
    #: "GET" sends ``data`` as the query (Instagram's ``ig_refresh_token``).
    method: str = "POST"
    #: Send ``data`` as a JSON body instead of a form (``token_request_format``).
    json_body: bool = False

    def __repr__(self) -> str:
        shown = {
            k: (mask(v) if k not in {"grant_type", "redirect_uri", "scope"} else v)
            for k, v in self.data.items()
        }
        return (
            f"TokenRequest(method={self.method!r}, host={url_host(self.url)!r}, "
            f"data={shown!r})"
        )


@dataclasses.dataclass(frozen=True)
class TokenSet:
    """A successful token response (RFC 6749 §5.1)."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105
    refresh_token: str | None = None
    expires_in: int | None = None
    scope: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: When the request was sent: expiry counts from here (the provider's clock
    #: started before the answer arrived).
    requested_at: datetime.datetime | None = None
    #: The refresh token's own lifetime in seconds, when the provider says it.
    refresh_token_expires_in: int | None = None
    #: ``expires_in`` was 0 and the profile reads that as "never expires".
    never_expires: bool = False
    #: Values kept with the token (``token_values``, ``callback_values``); not secret.
    provider_values: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"TokenSet(access_token={mask(self.access_token)!r}, "
            f"refresh_token={mask(self.refresh_token)!r}, expires_in={self.expires_in!r}, "
            f"scope={self.scope!r})"
        )


def client_secret(client: OAuth2Client) -> str:
    """The client secret as sent to the provider: for the rare hook that must put it
    somewhere ``apply_client_auth`` does not (Facebook's token exchange wants it in
    the query whatever the client's authentication method). A secret no configured
    key opens raises ``ConfigurationError``."""
    return reveal(
        client.client_secret,
        what=f"client secret of {client.name!r}",
        client=client.name,
    )


def apply_client_auth(config: ClientConfig, request: TokenRequest) -> TokenRequest:
    """Apply the client's token endpoint authentication (RFC 6749 §2.3.1).

    ``param_names`` applies to the ``client_id`` / ``client_secret`` sent in the body.
    """
    client = config.client
    method = config.token_auth_method
    names = config.options.param_names
    if method == "client_secret_basic":
        # §2.3.1: id and secret are form-urlencoded *before* Basic encoding, so a
        # secret with ":" or non-ASCII characters survives.
        request.auth = (
            quote_plus(client.client_id),
            quote_plus(client_secret(client)),
        )
    elif method == "client_secret_post":
        request.data[names.get("client_id", "client_id")] = client.client_id
        request.data[names.get("client_secret", "client_secret")] = client_secret(
            client
        )
    else:
        request.data[names.get("client_id", "client_id")] = client.client_id
    return request


def _base_request(
    config: ClientConfig, data: dict[str, str], *, url: str, extra: dict[str, Any]
) -> TokenRequest:
    options = config.options
    extras = _stringify({**options.token_params, **extra})
    data = {**data, **_without_protocol_params(config.client, extras, data)}
    request = TokenRequest(
        url=url,
        data=_renamed(data, options.param_names),
        headers={"Accept": "application/json", **options.token_headers},
        json_body=options.token_request_format == "json",  # noqa: S105
    )
    return apply_client_auth(config, request)


def code_exchange_request(
    client: OAuth2Client | ClientConfig,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str | None,
    token_endpoint: str | None = None,
) -> TokenRequest:
    """The code exchange (RFC 6749 §4.1.3); ``token_endpoint`` overrides the
    configured one (``token_endpoint_from_callback``)."""
    config = config_for(client)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
    }
    if code_verifier:
        data["code_verifier"] = code_verifier
    request = _base_request(
        config, data, url=token_endpoint or config.token_endpoint, extra={}
    )
    return config.profile.prepare_token_request(config, request)


def refresh_request(
    client: OAuth2Client | ClientConfig,
    *,
    refresh_token: str,
    scope: str | None = None,
    token_endpoint: str | None = None,
) -> TokenRequest:
    """A refresh (RFC 6749 §6). ``scope`` (space-separated) is sent only with
    ``scope_on_refresh``; without it, the requested scope is sent."""
    config = config_for(client)
    options = config.options
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if options.scope_on_refresh:
        scopes = (scope or "").split() or config.scopes
        if scopes:
            data["scope"] = options.scope_separator.join(scopes)
    request = _base_request(
        config,
        data,
        url=token_endpoint or config.refresh_endpoint,
        extra=options.refresh_params,
    )
    return config.profile.prepare_refresh_request(config, request)


def exchange_code(
    client: OAuth2Client | ClientConfig,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str | None,
    token_endpoint: str | None = None,
) -> TokenSet:
    """Steps D-E of RFC 6749 §4.1: trade the code for tokens."""
    config = config_for(client)
    request = code_exchange_request(
        config,
        code=code,
        redirect_uri=redirect_uri,
        code_verifier=code_verifier,
        token_endpoint=token_endpoint,
    )
    return send(config, request, config.profile.parse_token_response)


def refresh(
    client: OAuth2Client | ClientConfig,
    *,
    refresh_token: str,
    scope: str | None = None,
    token_endpoint: str | None = None,
) -> TokenSet:
    """RFC 6749 §6: a new access token for a refresh token."""
    config = config_for(client)
    request = refresh_request(
        config, refresh_token=refresh_token, scope=scope, token_endpoint=token_endpoint
    )
    return send(config, request, config.profile.parse_refresh_response)


def renew(config: ClientConfig, request: TokenRequest) -> TokenSet:
    """Send a profile's ``renewal_request`` (a token without a refresh token)."""
    return send(config, request, config.profile.parse_refresh_response)


def _host(url: str) -> str:
    """host[:port] only: an endpoint URL may carry ``user:password@`` (item 5)."""
    return url_host(url)


def clean_words(text: object, limit: int = 300) -> str:
    """Provider-supplied words, made safe to show: printable and short."""
    words = "".join(ch if ch.isprintable() else " " for ch in str(text)[: limit * 4])
    words = words.strip()
    return words if len(words) <= limit else words[: limit - 1] + "…"


#: A Retry-After further away than this is read as this (a day).
MAX_RETRY_AFTER = 86400.0


def parse_retry_after(
    value: str | None, *, now: datetime.datetime | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 §10.2.3).

    Either delay-seconds or an HTTP date; a date in the past means 0. Anything
    else (a provider's typo, a hostile value) is ignored: None. At most a day.
    """
    if not value or len(value) > 100:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 5322's unknown zone, read as UTC
        when = when.replace(tzinfo=datetime.UTC)
    seconds = (when - (now or timezone.now())).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _invalid(
    client: OAuth2Client, host: str, status: int | None, what: str
) -> TokenEndpointError:
    return TokenEndpointError(
        f"The token endpoint at {host} answered {what}. Nothing was stored; "
        "check the client's token endpoint URL, or ask the provider.",
        client=client.name,
        error="invalid_response",
        status=status,
    )


def _post(client: OAuth2Client, request: TokenRequest, host: str) -> requests.Response:
    """The HTTP exchange, every way it can fail turned into a TokenEndpointError."""
    try:
        if request.method.upper() == "GET":
            return transport.request(
                "GET",
                request.url,
                params=request.data,
                headers=request.headers,
                auth=request.auth,
            )
        if request.json_body:
            return transport.request(
                request.method.upper(),
                request.url,
                json=request.data,
                headers=request.headers,
                auth=request.auth,
            )
        return transport.request(
            request.method.upper(),
            request.url,
            data=request.data,
            headers=request.headers,
            auth=request.auth,
        )
    except transport.DeadlineExceeded as exc:
        raise TransientTokenEndpointError(
            f"The token endpoint at {host} did not answer within {exc.seconds:g} s "
            "(TOKEN_REQUEST_DEADLINE). Try again later.",
            client=client.name,
            error="timeout",
        ) from exc
    except transport.ResponseTooLarge as exc:
        raise _invalid(
            client,
            host,
            None,
            f"with more than {exc.limit} bytes (MAX_RESPONSE_BYTES), far more than a "
            "token response needs, so it was not read",
        ) from exc
    except transport.UndecodableResponse as exc:
        raise _invalid(
            client, host, None, f"with a body that cannot be read: {exc}"
        ) from exc
    except requests.Timeout as exc:
        raise TransientTokenEndpointError(
            f"The token endpoint at {host} did not answer in time. Try again later.",
            client=client.name,
            error="timeout",
        ) from exc
    except requests.RequestException as exc:
        raise TransientTokenEndpointError(
            f"Could not reach the token endpoint at {host} ({type(exc).__name__}). "
            "Check the URL and the network, then try again.",
            client=client.name,
            error="connection_error",
        ) from exc


def _parse(
    config: ClientConfig, response: requests.Response, parse: Any, host: str
) -> Any:
    """The profile's parse hook, which must not turn a hostile body into a crash."""
    client = config.client
    status = response.status_code
    try:
        body = parse(config, response)
    except OAuth2IntegratorError:
        raise
    except JSONTooDeep as exc:
        raise _invalid(
            client,
            host,
            status,
            f"HTTP {status} with JSON nested deeper than {MAX_JSON_DEPTH} levels, "
            "which no token response needs",
        ) from exc
    except Exception as exc:
        logger.warning(
            "Token endpoint %s: the %s profile could not read the answer (%s).",
            host,
            client.provider,
            type(exc).__name__,
        )
        raise _invalid(
            client, host, status, f"HTTP {status} with a body that could not be read"
        ) from exc
    if isinstance(body, dict) and _too_deep(body):
        raise _invalid(
            client,
            host,
            status,
            f"HTTP {status} with values nested deeper than {MAX_JSON_DEPTH} levels",
        )
    return body


def _too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Nesting of dicts/lists deeper than ``limit``, counted without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _reported_error(body: dict[str, Any], options: Any) -> tuple[Any, Any] | None:
    """(error, description) when the body reports an error, else None.

    RFC 6749 §5.2 ``error``; ``ok_field`` false (Slack: ``"ok": false``, the code in
    ``error``); ``errors_field`` a non-empty list (Fitbit ``errors[]``).
    """
    if body.get("error"):
        return body.get("error"), body.get("error_description")
    if options.ok_field and options.ok_field in body:
        ok = body[options.ok_field]
        if ok is False or (isinstance(ok, str) and ok.lower() == "false"):
            return "invalid_response", f"{options.ok_field} is false"
    if options.errors_field:
        errors = body.get(options.errors_field)
        if isinstance(errors, list) and errors:
            first = errors[0]
            if isinstance(first, dict):
                code = first.get("errorType") or first.get("error") or first.get("code")
                description = first.get("message") or first.get("error_description")
                return (code if isinstance(code, str) and code else "error"), (
                    description if isinstance(description, str) else ""
                )
            return "error", first if isinstance(first, str) else ""
    return None


def _at_path(body: Any, path: str) -> Any:
    """``body["authed_user"]["access_token"]`` for ``"authed_user.access_token"``."""
    for part in path.split("."):
        if not isinstance(body, dict) or part not in body:
            return None
        body = body[part]
    return body


def send(config: ClientConfig, request: TokenRequest, parse: Any) -> TokenSet:
    """Send a token request and read the answer with the client's vocabulary."""
    client = config.client
    options = config.options
    host = _host(request.url)
    grant = request.data.get("grant_type", "?")
    requested_at = timezone.now()
    response = _post(client, request, host)
    status = response.status_code
    body = _parse(config, response, parse, host)
    logger.debug("Token endpoint %s answered HTTP %s to %s", host, status, grant)

    reported = _reported_error(body, options) if isinstance(body, dict) else None
    if reported is not None:
        # RFC 6749 §5.2: a string of printable ASCII; anything else is malformed.
        raw_error, raw_description = reported
        error = (
            clean_words(raw_error, 100)
            if isinstance(raw_error, str)
            else "invalid_response"
        )
        description = clean_words(raw_description or "", 300)
        detail = f": {description}" if description else ""
        exc_class = (
            TransientTokenEndpointError
            if status >= 500 or status == 429
            else TokenEndpointError
        )
        refused = exc_class(
            f"The token endpoint at {host} refused the request "
            f"(HTTP {status}, error {error!r}){detail}.",
            client=client.name,
            error=error,
            description=description or None,
            status=status,
        )
        if isinstance(refused, TransientTokenEndpointError):
            refused.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise refused
    if status >= 500 or status == 429:
        unavailable = TransientTokenEndpointError(
            f"The token endpoint at {host} is unavailable (HTTP {status}). "
            "Try again later.",
            client=client.name,
            error="server_error" if status >= 500 else "rate_limited",
            status=status,
        )
        unavailable.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise unavailable
    if 300 <= status < 400:
        location = response.headers.get("Location")
        target = f" to {_host(location)}" if location else ""
        raise TokenEndpointError(
            f"The token endpoint at {host} answered with a redirect (HTTP {status})"
            f"{target}. Token requests are never redirected: they carry the code and "
            "the client's credentials. Set the client's token endpoint to the final URL.",
            client=client.name,
            error="invalid_response",
            status=status,
        )
    if not isinstance(body, dict):
        content_type = clean_words(
            response.headers.get("Content-Type", "unknown").split(";")[0], 60
        )
        kind = "an HTML page" if "html" in content_type else f"a {content_type} body"
        raise _invalid(
            client, host, status, f"HTTP {status} with {kind}, not a token response"
        )
    if not 200 <= status < 300:
        raise _invalid(
            client, host, status, f"HTTP {status} without an OAuth error code"
        )
    token_body = body
    # A refresh may answer at the top level where the code exchange nested the
    # token: Slack's rotated user token (https://docs.slack.dev/authentication/
    # using-token-rotation; token_type "user" next to access_token).
    at_top = (
        grant != "authorization_code"
        and "access_token" in body
        and _at_path(body, options.token_path) is None
    )
    if options.token_path and not at_top:
        token_body = _at_path(body, options.token_path)
        if not isinstance(token_body, dict):
            raise _invalid(
                client,
                host,
                status,
                f"HTTP {status} without the object {options.token_path!r} that holds "
                "the token (token_path)",
            )
        # The rest of the answer (Slack's team, bot fields) is kept as extras,
        # without the other object's secrets.
        root = options.token_path.split(".")[0]
        outer = {
            k: v for k, v in body.items() if k != root and k not in STANDARD_FIELDS
        }
        token_body = {**outer, **token_body}
    try:
        token_set = token_set_from(token_body, options, requested_at=requested_at)
        kept = _kept_values(options.token_values, body, token_body)
    except UnusableValue as exc:
        problem = _invalid(client, host, status, f"HTTP {status} {exc.what}")
        problem.error = exc.error
        raise problem from exc
    return dataclasses.replace(
        token_set, requested_at=requested_at, provider_values=kept
    )


_send = send

#: A kept value (``token_values``, ``callback_values``) longer than this is cut.
MAX_KEPT_VALUE_LENGTH = 2000


def kept_value(value: Any) -> str | int | float | bool | None:
    """A value fit to keep with the token: a scalar, strings printable and capped."""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return clean_words(value, MAX_KEPT_VALUE_LENGTH)
    return None


def _kept_values(
    names: list[str], body: dict[str, Any], token_body: dict[str, Any]
) -> dict[str, Any]:
    """``token_values``: fields of the answer kept with the token (dotted paths)."""
    kept = {}
    for name in names:
        value = _at_path(body, name)
        if value is None:
            value = _at_path(token_body, name)
        fitted = kept_value(value)
        if fitted is not None:
            kept[name] = fitted
    return kept


def parse_expires_in(value: Any) -> int | None:
    """Seconds until expiry, or None when unknown.

    Numeric strings are accepted (several providers send them). Zero, negative or
    unreadable values mean "not said": treating them as "already expired" would
    refresh on every call. So do absurdly large ones (some servers say "never" that
    way): an expiry past the year 9999 cannot be stored and would fail the login.
    """
    if isinstance(value, bool) or value is None:
        return None
    try:
        seconds = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if 0 < seconds <= MAX_EXPIRES_IN else None


class UnusableValue(ValueError):
    """A value in a token response that cannot be used or stored as it is."""

    def __init__(self, what: str, *, error: str = "invalid_response") -> None:
        super().__init__(what)
        self.what = what
        self.error = error


#: A granted scope longer than this is not stored: no real grant comes near it, and
#: it is shown in the admin.
MAX_SCOPE_LENGTH = 10_000

#: C0 controls and DEL: a token with them cannot go into an Authorization header, and
#: PostgreSQL refuses NUL in a text column.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def _token(value: Any, name: str, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise UnusableValue(f"without an {name}")
        return None
    if not isinstance(value, str):
        raise UnusableValue(f"with an {name} that is not a string")
    if _CONTROL_CHARACTERS.search(value):
        raise UnusableValue(f"with an {name} that contains control characters")
    return value


#: Names providers give their Bearer tokens (RFC 6750 use, documented as such):
#: Slack's ``"user"`` and ``"bot"`` (https://docs.slack.dev/reference/methods/oauth.v2.access),
#: eBay's ``"User Access Token"``.
def _token_type(value: Any, also_bearer: list[str]) -> str:
    """RFC 6749 §7.1: only Bearer (RFC 6750) is used, compared case-insensitively.

    A missing type is read as Bearer, as most providers mean it, and so are the
    names a profile lists in ``bearer_token_types`` (Slack's "user" and "bot",
    eBay's "User Access Token"). Any other type
    (DPoP, MAC, N_A, ...) would be sent as Bearer by this app and fail or, worse,
    work without the proof the provider asked for, so it is refused.
    """
    if value is None or value == "":
        return "Bearer"
    names = {"bearer", *(name.lower() for name in also_bearer)}
    if isinstance(value, str) and value.strip().lower() in names:
        return "Bearer"
    shown = repr(clean_words(value, 40)) if isinstance(value, str) else "a non-string"
    raise UnusableValue(
        f"with a token of type {shown}; this app can only use Bearer tokens "
        "(RFC 6750), so it was not used. Configure the client at the provider to "
        "issue Bearer tokens",
        error="unsupported_token_type",
    )


def _scope(value: Any, separator: str = " ") -> str | None:
    """The granted scope as one string, or None ("not said") when unusable.

    A string, or a list of strings (joined with spaces); control characters become
    spaces, and a provider's own separator (Strava's or Shopify's comma) becomes a
    space too, so granted scopes are stored as RFC 6749 §3.3 writes them. Anything
    else (a number, an object, a list with other items, or more
    than MAX_SCOPE_LENGTH characters) is ignored with a warning rather than
    refused: the token itself is good, and refusing it at a refresh would throw
    away a rotated refresh token for a field that is only informational.
    """
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = " ".join(value)
    if not isinstance(value, str) or len(value) > MAX_SCOPE_LENGTH:
        logger.warning(
            "A token response's scope was ignored: it is %s.",
            "too long"
            if isinstance(value, str)
            else f"a {type(value).__name__}, not a string or a list of strings",
        )
        return None
    cleaned = "".join(ch if ch.isprintable() else " " for ch in value)
    if separator.strip():
        cleaned = cleaned.replace(separator, " ")
    return " ".join(cleaned.split()) or None


def _extra(body: dict[str, Any]) -> dict[str, Any]:
    extra = {k: v for k, v in body.items() if k not in STANDARD_FIELDS}
    try:
        json.dumps(extra, sort_keys=True)
    except (TypeError, ValueError, RecursionError) as exc:
        raise UnusableValue("with values that cannot be stored as JSON") from exc
    return extra


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _lifetime(
    body: dict[str, Any], options: Any, requested_at: datetime.datetime | None
) -> tuple[int | None, bool]:
    """(seconds until expiry or None, never_expires) from the vocabulary's fields.

    The lifetime field first, then the absolute ``expires_at_field`` (epoch), in
    ``expires_unit``; a ``0`` is "never" with ``zero_expires_means_never``, else
    "not said", which falls back to ``default_expires_in``.
    """
    scale = 1000 if options.expires_unit == "milliseconds" else 1
    raw = body.get(options.expires_in_field)
    number = _number(raw)
    if number is not None and number == 0 and options.zero_expires_means_never:
        return None, True
    seconds = parse_expires_in(number / scale) if number is not None else None
    if seconds is None and options.expires_at_field:
        at = _number(body.get(options.expires_at_field))
        if at is not None and at > 0:
            start = (requested_at or timezone.now()).timestamp()
            seconds = parse_expires_in(at / scale - start)
    if seconds is None and options.default_expires_in:
        seconds = parse_expires_in(options.default_expires_in)
    return seconds, False


def token_set_from(
    body: dict[str, Any],
    options: Any = None,
    *,
    requested_at: datetime.datetime | None = None,
) -> TokenSet:
    """A TokenSet from a token response, every value checked and fitted to its column.

    Everything here came from the provider and is untrusted (issue #5, item 2):
    ``UnusableValue`` says what cannot be used. ``options`` (the client's merged
    vocabulary) says where the expiry fields are; without it, RFC 6749's names.
    """
    if options is None:
        options = STANDARD_OPTIONS
    expires_in, never = _lifetime(body, options, requested_at)
    refresh_lifetime = _number(body.get(options.refresh_token_expires_in_field))
    scale = 1000 if options.expires_unit == "milliseconds" else 1
    extra = _extra(body)
    return TokenSet(
        access_token=str(
            _token(body.get("access_token"), "access_token", required=True)
        ),
        token_type=_token_type(body.get("token_type"), options.bearer_token_types),
        refresh_token=_token(
            body.get("refresh_token"), "refresh_token", required=False
        ),
        expires_in=expires_in,
        scope=_scope(body.get("scope"), options.scope_separator),
        extra=extra,
        refresh_token_expires_in=(
            parse_expires_in(refresh_lifetime / scale)
            if refresh_lifetime is not None
            else None
        ),
        never_expires=never,
    )
