"""The protocol: authorization URL, state, PKCE, and requests to the token endpoint.

No views and no models are written here: the callback view and ``tokens`` decide
what to store; this module only speaks OAuth 2.0 (RFC 6749 §4.1, RFC 7636).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import json
import logging
import re
import secrets
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

if TYPE_CHECKING:
    from .models import OAuth2Client

logger = logging.getLogger("oauth2_integrator")

#: Token responses keep these; everything else goes to ``TokenSet.extra``.
STANDARD_FIELDS = {"access_token", "token_type", "refresh_token", "expires_in", "scope"}

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


def authorization_url(
    client: OAuth2Client,
    *,
    redirect_uri: str,
    state: str,
    code_verifier: str | None = None,
    nonce: str | None = None,
) -> str:
    """The URL the browser is sent to (RFC 6749 §4.1.1), every value URL-encoded.

    A query the endpoint already has (``?tenant=x``) is kept.
    """
    profile = providers.get(client.provider)
    params: dict[str, str] = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
    }
    if client.scopes:
        params["scope"] = profile.scope_separator.join(client.scopes)
    params["state"] = state
    if code_verifier:
        params["code_challenge"] = code_challenge(code_verifier)
        params["code_challenge_method"] = "S256"
    if nonce and "openid" in client.scopes:
        params["nonce"] = nonce
    extras = {
        **_stringify(profile.extra_authorize_params),
        **_stringify(client.extra_authorize_params or {}),
    }
    params.update(_without_protocol_params(client, extras, params))
    params = profile.authorization_params(client, params)

    parts = urlsplit(client.authorization_endpoint)
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

    def __repr__(self) -> str:
        shown = {
            k: (mask(v) if k not in {"grant_type", "redirect_uri", "scope"} else v)
            for k, v in self.data.items()
        }
        return f"TokenRequest(host={url_host(self.url)!r}, data={shown!r})"


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

    def __repr__(self) -> str:
        return (
            f"TokenSet(access_token={mask(self.access_token)!r}, "
            f"refresh_token={mask(self.refresh_token)!r}, expires_in={self.expires_in!r}, "
            f"scope={self.scope!r})"
        )


def _secret(client: OAuth2Client) -> str:
    return reveal(
        client.client_secret,
        what=f"client secret of {client.name!r}",
        client=client.name,
    )


def _client_auth(client: OAuth2Client, request: TokenRequest) -> TokenRequest:
    """Apply the client's token endpoint authentication (RFC 6749 §2.3.1)."""
    method = client.token_auth_method
    if method == "client_secret_basic":
        # §2.3.1: id and secret are form-urlencoded *before* Basic encoding, so a
        # secret with ":" or non-ASCII characters survives.
        request.auth = (
            quote_plus(client.client_id),
            quote_plus(_secret(client)),
        )
    elif method == "client_secret_post":
        request.data["client_id"] = client.client_id
        request.data["client_secret"] = _secret(client)
    else:
        request.data["client_id"] = client.client_id
    return request


def _base_request(client: OAuth2Client, data: dict[str, str]) -> TokenRequest:
    profile = providers.get(client.provider)
    extras = {
        **_stringify(profile.extra_token_params),
        **_stringify(client.extra_token_params or {}),
    }
    data = {**data, **_without_protocol_params(client, extras, data)}
    request = TokenRequest(
        url=client.token_endpoint,
        data=data,
        headers={"Accept": "application/json"},
    )
    return _client_auth(client, request)


def code_exchange_request(
    client: OAuth2Client, *, code: str, redirect_uri: str, code_verifier: str | None
) -> TokenRequest:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
    }
    if code_verifier:
        data["code_verifier"] = code_verifier
    request = _base_request(client, data)
    return providers.get(client.provider).prepare_token_request(client, request)


def refresh_request(client: OAuth2Client, *, refresh_token: str) -> TokenRequest:
    request = _base_request(
        client, {"grant_type": "refresh_token", "refresh_token": refresh_token}
    )
    return providers.get(client.provider).prepare_refresh_request(client, request)


def exchange_code(
    client: OAuth2Client, *, code: str, redirect_uri: str, code_verifier: str | None
) -> TokenSet:
    """Steps D-E of RFC 6749 §4.1: trade the code for tokens."""
    request = code_exchange_request(
        client, code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
    )
    profile = providers.get(client.provider)
    return _send(client, request, profile.parse_token_response)


def refresh(client: OAuth2Client, *, refresh_token: str) -> TokenSet:
    """RFC 6749 §6: a new access token for a refresh token."""
    request = refresh_request(client, refresh_token=refresh_token)
    profile = providers.get(client.provider)
    return _send(client, request, profile.parse_refresh_response)


def _host(url: str) -> str:
    """host[:port] only: an endpoint URL may carry ``user:password@`` (item 5)."""
    return url_host(url)


def clean_words(text: object, limit: int = 300) -> str:
    """Provider-supplied words, made safe to show: printable and short."""
    words = "".join(ch if ch.isprintable() else " " for ch in str(text)[: limit * 4])
    words = words.strip()
    return words if len(words) <= limit else words[: limit - 1] + "…"


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
        return transport.post(
            request.url, data=request.data, headers=request.headers, auth=request.auth
        )
    except transport.DeadlineExceeded as exc:
        raise TransientTokenEndpointError(
            f"The token endpoint at {host} did not answer within {exc.seconds:g} s "
            "(TOKEN_REQUEST_DEADLINE). Nothing was changed; try again later.",
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
            f"The token endpoint at {host} did not answer in time. "
            "Nothing was changed; try again later.",
            client=client.name,
            error="timeout",
        ) from exc
    except requests.RequestException as exc:
        raise TransientTokenEndpointError(
            f"Could not reach the token endpoint at {host} ({type(exc).__name__}). "
            "Nothing was changed; check the URL and the network, then try again.",
            client=client.name,
            error="connection_error",
        ) from exc


def _parse(
    client: OAuth2Client, response: requests.Response, parse: Any, host: str
) -> Any:
    """The profile's parse hook, which must not turn a hostile body into a crash."""
    status = response.status_code
    try:
        body = parse(client, response)
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


def _send(client: OAuth2Client, request: TokenRequest, parse: Any) -> TokenSet:
    host = _host(request.url)
    grant = request.data.get("grant_type", "?")
    requested_at = timezone.now()
    response = _post(client, request, host)
    status = response.status_code
    body = _parse(client, response, parse, host)
    logger.debug("Token endpoint %s answered HTTP %s to %s", host, status, grant)

    if isinstance(body, dict) and body.get("error"):
        # RFC 6749 §5.2: a string of printable ASCII; anything else is malformed.
        raw_error = body.get("error")
        error = (
            clean_words(raw_error, 100)
            if isinstance(raw_error, str)
            else "invalid_response"
        )
        description = clean_words(body.get("error_description") or "", 300)
        detail = f": {description}" if description else ""
        exc_class = (
            TransientTokenEndpointError
            if status >= 500 or status == 429
            else TokenEndpointError
        )
        raise exc_class(
            f"The token endpoint at {host} refused the request "
            f"(HTTP {status}, error {error!r}){detail}.",
            client=client.name,
            error=error,
            description=description or None,
            status=status,
        )
    if status >= 500 or status == 429:
        raise TransientTokenEndpointError(
            f"The token endpoint at {host} is unavailable (HTTP {status}). "
            "Nothing was changed; try again later.",
            client=client.name,
            error="server_error" if status >= 500 else "rate_limited",
            status=status,
        )
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
    try:
        token_set = token_set_from(body)
    except UnusableValue as exc:
        problem = _invalid(client, host, status, f"HTTP {status} {exc.what}")
        problem.error = exc.error
        raise problem from exc
    return dataclasses.replace(token_set, requested_at=requested_at)


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


def _token_type(value: Any) -> str:
    """RFC 6749 §7.1: only Bearer (RFC 6750) is used, compared case-insensitively.

    A missing type is read as Bearer, as most providers mean it. Any other type
    (DPoP, MAC, N_A, ...) would be sent as Bearer by this app and fail or, worse,
    work without the proof the provider asked for, so it is refused.
    """
    if value is None or value == "":
        return "Bearer"
    if isinstance(value, str) and value.strip().lower() == "bearer":
        return "Bearer"
    shown = repr(clean_words(value, 40)) if isinstance(value, str) else "a non-string"
    raise UnusableValue(
        f"with a token of type {shown}; this app can only use Bearer tokens "
        "(RFC 6750), so it was not used. Configure the client at the provider to "
        "issue Bearer tokens",
        error="unsupported_token_type",
    )


def _scope(value: Any) -> str | None:
    """The granted scope as one string, or None ("not said") when unusable.

    A string, or a list of strings (joined with spaces); control characters become
    spaces. Anything else (a number, an object, a list with other items, or more
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
    return " ".join(cleaned.split()) or None


def _extra(body: dict[str, Any]) -> dict[str, Any]:
    extra = {k: v for k, v in body.items() if k not in STANDARD_FIELDS}
    try:
        json.dumps(extra, sort_keys=True)
    except (TypeError, ValueError, RecursionError) as exc:
        raise UnusableValue("with values that cannot be stored as JSON") from exc
    return extra


def token_set_from(body: dict[str, Any]) -> TokenSet:
    """A TokenSet from a token response, every value checked and fitted to its column.

    Everything here came from the provider and is untrusted (issue #5, item 2):
    ``UnusableValue`` says what cannot be used.
    """
    return TokenSet(
        access_token=str(
            _token(body.get("access_token"), "access_token", required=True)
        ),
        token_type=_token_type(body.get("token_type")),
        refresh_token=_token(
            body.get("refresh_token"), "refresh_token", required=False
        ),
        expires_in=parse_expires_in(body.get("expires_in")),
        scope=_scope(body.get("scope")),
        extra=_extra(body),
    )
