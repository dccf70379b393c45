"""OpenID Connect: discovery, the provider's key set, and ID token validation.

- Discovery (OpenID Connect Discovery 1.0 §4): ``{issuer}/.well-known/openid-configuration``,
  whose ``issuer`` must equal the configured one exactly (§4.3), plus RFC 8414
  ``/.well-known/oauth-authorization-server`` for a revocation endpoint the first
  document does not list. Cached with Django's cache framework for
  ``DISCOVERY_CACHE_SECONDS``; a copy that has aged is used only while a new fetch
  fails (a provider's hiccup must not stop refreshes), and ``forget()`` drops it
  after a failure that a stale copy may explain.
- The key set (``jwks_uri``), cached the same way, fetched once more when an ID
  token names a key it does not hold (the provider rotated its keys).
- ID token validation (OpenID Connect Core 1.0 §3.1.3.7) with PyJWT: signature with
  a key from the key set and an algorithm the provider announced (never ``none``,
  never a shared-secret HS* algorithm), ``iss``, ``aud``, ``azp``, ``exp``/``iat``
  with ``LEEWAY_SECONDS`` of clock skew, and the login's ``nonce``.

Every document is fetched with ``transport.get``: the deadline and the size cap
apply, redirects are not followed. Nothing here logs or shows a token.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
import requests
from django.core.cache import cache
from django.core.exceptions import ValidationError

from . import transport
from .exceptions import (
    ConfigurationError,
    TokenEndpointError,
    TransientTokenEndpointError,
)
from .masking import url_host
from .providers.base import load_json, response_text
from .validators import validate_endpoint_url

logger = logging.getLogger("oauth2_integrator")

#: How long a discovery document or key set is used before it is fetched again.
DISCOVERY_CACHE_SECONDS = 3600
#: How long an aged copy is kept to fall back on while the provider cannot be reached.
STALE_CACHE_SECONDS = 7 * 24 * 3600
#: Clock skew accepted on ``exp``, ``iat`` and ``nbf`` (OIDC Core §3.1.3.7 items 9-10).
LEEWAY_SECONDS = 120

#: Public-key algorithms an ID token may be signed with. ``none`` and the HS*
#: family are never accepted: HS* would need the client secret as the key, and a
#: public key misused as an HMAC secret is the classic forgery.
ASYMMETRIC_ALGORITHMS = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
    }
)
#: What a provider must support when discovery says nothing (OIDC Discovery §3).
DEFAULT_ALGORITHMS = ("RS256",)

_CACHE_PREFIX = "oauth2_integrator:oidc"


@dataclasses.dataclass(frozen=True)
class ProviderMetadata:
    """What this app uses of an OpenID provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    revocation_endpoint: str = ""
    userinfo_endpoint: str = ""
    id_token_signing_alg_values_supported: tuple[str, ...] = DEFAULT_ALGORITHMS
    authorization_response_iss_parameter_supported: bool = False


# --- discovery -----------------------------------------------------------------------


def discovery_url(issuer: str) -> str:
    """OIDC Discovery §4.1: the issuer, without a trailing slash, + the well-known path."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def authorization_server_metadata_url(issuer: str) -> str:
    """RFC 8414 §3.1: the well-known path goes between the host and the issuer's path."""
    parts = urlsplit(issuer)
    path = "/.well-known/oauth-authorization-server" + parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _key(kind: str, url: str) -> str:
    return f"{_CACHE_PREFIX}:{kind}:{hashlib.sha256(url.encode()).hexdigest()}"


def forget(issuer: str) -> None:
    """Drop the cached discovery document (and its key set): the next use fetches anew."""
    entry = cache.get(_key("discovery", issuer))
    if isinstance(entry, dict) and isinstance(entry.get("metadata"), dict):
        cache.delete(_key("jwks", str(entry["metadata"].get("jwks_uri", ""))))
    cache.delete(_key("discovery", issuer))


class _FetchFailed(Exception):
    """A document could not be fetched; ``transient`` when trying later may help."""

    def __init__(self, why: str, *, transient: bool) -> None:
        super().__init__(why)
        self.why = why
        self.transient = transient


def _fetch_json(url: str) -> dict[str, Any]:
    """GET a JSON object through ``transport`` (deadline, size cap, no redirects)."""
    try:
        response = transport.get(url, headers={"Accept": "application/json"})
    except transport.DeadlineExceeded as exc:
        raise _FetchFailed(
            f"no answer within {exc.seconds:g} s", transient=True
        ) from exc
    except transport.ResponseTooLarge as exc:
        raise _FetchFailed(
            f"an answer longer than {exc.limit} bytes", transient=False
        ) from exc
    except transport.UndecodableResponse as exc:
        raise _FetchFailed(f"an unreadable answer ({exc})", transient=False) from exc
    except requests.RequestException as exc:
        raise _FetchFailed(
            f"could not connect ({type(exc).__name__})", transient=True
        ) from exc
    status = response.status_code
    if status != 200:
        raise _FetchFailed(f"HTTP {status}", transient=status >= 500 or status == 429)
    try:
        body = load_json(response_text(response))
    except ValueError as exc:
        raise _FetchFailed("an answer that is not JSON", transient=False) from exc
    if not isinstance(body, dict):
        raise _FetchFailed("JSON that is not an object", transient=False)
    return body


def _endpoint(document: dict[str, Any], name: str, *, required: bool) -> str:
    value = document.get(name)
    if value is None or value == "":
        if required:
            raise ValueError(f"it has no {name}")
        return ""
    if not isinstance(value, str) or len(value) > 2000:
        raise ValueError(f"its {name} is not a URL")
    try:
        validate_endpoint_url(value)
    except ValidationError as exc:
        rule = "has a user name or password in it"
        if exc.code == "insecure_http":
            rule = "uses plain http:// outside loopback"
        raise ValueError(f"its {name} {rule}") from exc
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"its {name} is not an http(s) URL")
    return value


def _metadata_from(document: dict[str, Any]) -> ProviderMetadata:
    """The document's values, each checked (URLs under the same rules as a client's)."""
    algorithms = document.get("id_token_signing_alg_values_supported")
    if isinstance(algorithms, list) and all(isinstance(a, str) for a in algorithms):
        announced = tuple(a for a in algorithms if a in ASYMMETRIC_ALGORITHMS)
    else:
        announced = DEFAULT_ALGORITHMS
    return ProviderMetadata(
        issuer=str(document["issuer"]),
        authorization_endpoint=_endpoint(
            document, "authorization_endpoint", required=True
        ),
        token_endpoint=_endpoint(document, "token_endpoint", required=True),
        jwks_uri=_endpoint(document, "jwks_uri", required=True),
        revocation_endpoint=_endpoint(document, "revocation_endpoint", required=False),
        userinfo_endpoint=_endpoint(document, "userinfo_endpoint", required=False),
        id_token_signing_alg_values_supported=announced,
        authorization_response_iss_parameter_supported=(
            document.get("authorization_response_iss_parameter_supported") is True
        ),
    )


def _revocation_from_rfc8414(issuer: str) -> str:
    """RFC 8414 metadata's revocation endpoint, or "" (it is optional: never fatal)."""
    try:
        document = _fetch_json(authorization_server_metadata_url(issuer))
    except _FetchFailed:
        return ""
    if document.get("issuer") != issuer:  # RFC 8414 §3.3
        return ""
    try:
        return _endpoint(document, "revocation_endpoint", required=False)
    except ValueError:
        return ""


def _fetch_metadata(issuer: str, *, client: str | None) -> ProviderMetadata:
    url = discovery_url(issuer)
    host = url_host(url)
    document = _fetch_json(url)
    found = document.get("issuer")
    if found != issuer:
        shown = repr(str(found)[:200]) if isinstance(found, str) else "no issuer"
        raise ConfigurationError(
            f"The OpenID Connect discovery document at {host} names {shown} as its "
            f"issuer, not {issuer!r} (they must be identical, OpenID Connect "
            "Discovery §4.3). Set the client's issuer to the provider's exact issuer "
            "URL.",
            client=client,
            error="invalid_issuer",
        )
    try:
        metadata = _metadata_from(document)
    except ValueError as exc:
        raise ConfigurationError(
            f"The OpenID Connect discovery document at {host} cannot be used: {exc}. "
            "Enter the client's endpoints yourself, or ask the provider.",
            client=client,
            error="invalid_discovery",
        ) from exc
    if not metadata.revocation_endpoint:
        metadata = dataclasses.replace(
            metadata, revocation_endpoint=_revocation_from_rfc8414(issuer)
        )
    return metadata


def discover(
    issuer: str, *, client: str | None = None, refresh: bool = False
) -> ProviderMetadata:
    """The provider's metadata: from the cache when fresh, else fetched.

    Raises ``ConfigurationError`` for a document that cannot be used (wrong issuer,
    missing endpoints) and ``TransientTokenEndpointError`` when it cannot be fetched
    and no earlier copy exists.
    """
    if not issuer:
        raise ConfigurationError(
            "An OpenID Connect client needs its issuer URL (for example "
            "https://accounts.example.com) to find its endpoints and check its ID "
            "tokens. Enter it on the client.",
            client=client,
        )
    try:
        # Discovery fetches the issuer URL: it decides every endpoint and key, so it
        # follows the endpoints' rules (https or loopback, no credentials).
        validate_endpoint_url(issuer)
    except ValidationError as exc:
        raise ConfigurationError(
            "The issuer URL of an OpenID Connect client must use https:// (http:// "
            "only for loopback) and carry no user name or password: its discovery "
            "document decides the client's endpoints and keys.",
            client=client,
            error="insecure_issuer",
        ) from exc
    key = _key("discovery", issuer)
    entry = cache.get(key)
    cached = entry if isinstance(entry, dict) else None
    if (
        cached is not None
        and not refresh
        and time.time() - float(cached.get("fetched", 0)) < DISCOVERY_CACHE_SECONDS
    ):
        return _metadata_from_cache(cached)
    try:
        metadata = _fetch_metadata(issuer, client=client)
    except _FetchFailed as exc:
        if cached is not None and exc.transient:
            logger.warning(
                "OpenID Connect discovery at %s failed (%s); using the copy fetched "
                "earlier.",
                url_host(issuer),
                exc.why,
            )
            return _metadata_from_cache(cached)
        error_class = (
            TransientTokenEndpointError if exc.transient else ConfigurationError
        )
        raise error_class(
            f"OpenID Connect discovery at {url_host(discovery_url(issuer))} failed: "
            f"{exc.why}. Check the client's issuer URL"
            + (", or try again later." if exc.transient else ", or ask the provider."),
            client=client,
            error="discovery_failed",
        ) from exc
    cache.set(
        key,
        {"fetched": time.time(), "metadata": dataclasses.asdict(metadata)},
        STALE_CACHE_SECONDS,
    )
    return metadata


def _metadata_from_cache(entry: dict[str, Any]) -> ProviderMetadata:
    values = dict(entry["metadata"])
    values["id_token_signing_alg_values_supported"] = tuple(
        values.get("id_token_signing_alg_values_supported") or DEFAULT_ALGORITHMS
    )
    return ProviderMetadata(**values)


# --- the key set -----------------------------------------------------------------------


def _key_set(jwks_uri: str, *, refresh: bool) -> list[tuple[jwt.PyJWK, str]]:
    """The provider's signing keys (with the algorithm each declares, or ""), from
    the cache unless ``refresh``."""
    key = _key("jwks", jwks_uri)
    entry = cache.get(key)
    cached = entry if isinstance(entry, dict) else None
    fresh = (
        cached is not None
        and time.time() - float(cached.get("fetched", 0)) < DISCOVERY_CACHE_SECONDS
    )
    document: Any = cached["keys"] if cached is not None and fresh else None
    if document is None or refresh:
        try:
            document = _fetch_json(jwks_uri)
        except _FetchFailed as exc:
            if cached is None or not exc.transient:
                raise IDTokenRejected(
                    f"the provider's key set at {url_host(jwks_uri)} could not be "
                    f"fetched ({exc.why})",
                    transient=exc.transient,
                ) from exc
            document = cached["keys"]
        else:
            cache.set(
                key, {"fetched": time.time(), "keys": document}, STALE_CACHE_SECONDS
            )
    items = document.get("keys") if isinstance(document, dict) else None
    keys = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("use", "sig") != "sig":
            continue
        try:
            keys.append((jwt.PyJWK(item), str(item.get("alg") or "")))
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue  # a key type this app does not use (or a malformed one)
    return keys


# --- ID token validation ---------------------------------------------------------------


class IDTokenRejected(Exception):
    """Why an ID token was not accepted; ``transient`` when the keys were unreachable."""

    def __init__(self, why: str, *, transient: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.transient = transient


_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


def _claims(
    id_token: str, *, metadata: ProviderMetadata, client_id: str, nonce: str | None
) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError as exc:
        raise IDTokenRejected("it is not a well-formed signed JWT") from exc
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm.lower() == "none":
        raise IDTokenRejected("it is not signed (alg none)")
    if algorithm.upper().startswith("HS"):
        raise IDTokenRejected(
            f"it is signed with {algorithm}, a shared-secret algorithm; only "
            "signatures with the provider's public keys (jwks_uri) are accepted"
        )
    allowed = metadata.id_token_signing_alg_values_supported
    if algorithm not in allowed or algorithm not in ASYMMETRIC_ALGORITHMS:
        raise IDTokenRejected(
            f"it is signed with {algorithm[:20]!r}, which the provider does not "
            f"announce (it announces {', '.join(allowed) or 'none usable'})"
        )
    kid = header.get("kid")
    key_type = _KEY_TYPES.get(algorithm[:2], "")

    def candidates(refresh: bool) -> list[jwt.PyJWK]:
        keys = _key_set(metadata.jwks_uri, refresh=refresh)
        return [
            k
            for k, declared in keys
            if (kid is None or k.key_id == kid)
            and k.key_type == key_type
            and declared in {"", algorithm}
        ]

    keys = candidates(refresh=False)
    if not keys:
        # A key this copy of the set does not hold: the provider may have rotated
        # its keys since it was fetched. One fetch more, never a loop.
        keys = candidates(refresh=True)
    if not keys:
        named = f"key {str(kid)[:60]!r}" if kid is not None else "a key"
        raise IDTokenRejected(
            f"it is signed with {named}, which the provider's key set at "
            f"{url_host(metadata.jwks_uri)} does not hold"
        )
    problem: IDTokenRejected | None = None
    for candidate in keys:
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=candidate.key,
                algorithms=[algorithm],
                audience=client_id,
                issuer=metadata.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.InvalidSignatureError:
            problem = IDTokenRejected(
                "its signature does not match the provider's keys (it was altered, "
                "or signed by someone else)"
            )
            continue
        except jwt.ExpiredSignatureError as exc:
            raise IDTokenRejected("it has expired (exp)") from exc
        except jwt.ImmatureSignatureError as exc:
            raise IDTokenRejected("it is dated in the future (iat or nbf)") from exc
        except jwt.InvalidAudienceError as exc:
            raise IDTokenRejected(
                "it was issued to another client (aud does not name this client's ID)"
            ) from exc
        except jwt.InvalidIssuerError as exc:
            raise IDTokenRejected(
                f"it was issued by another issuer, not {metadata.issuer!r} (iss)"
            ) from exc
        except jwt.MissingRequiredClaimError as exc:
            raise IDTokenRejected(f"it lacks the {exc.claim} claim") from exc
        except jwt.PyJWTError as exc:
            raise IDTokenRejected(
                f"it could not be verified ({type(exc).__name__})"
            ) from exc
        break
    else:
        assert problem is not None
        raise problem
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    azp = claims.get("azp")
    if azp is not None and azp != client_id:
        raise IDTokenRejected(
            "it was issued to another client (azp does not name this client's ID)"
        )
    if len(audiences) > 1 and azp is None:
        raise IDTokenRejected(
            "it names several audiences but no authorized party (azp), so it may "
            "have been issued to another client"
        )
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise IDTokenRejected("its subject (sub) is not a string")
    if nonce is not None and claims.get("nonce") != nonce:
        raise IDTokenRejected(
            "its nonce does not match the one this login sent (a replayed or "
            "injected token)"
        )
    return claims


def validate_id_token(
    id_token: Any,
    *,
    issuer: str,
    client_id: str,
    nonce: str | None,
    client: str | None = None,
) -> dict[str, Any]:
    """The claims of a valid ID token; ``TokenEndpointError`` (``invalid_id_token``)
    saying why otherwise. ``nonce=None`` skips the nonce check (refresh responses)."""
    host = url_host(issuer)
    try:
        if not isinstance(id_token, str) or not id_token:
            raise IDTokenRejected("the token response has no ID token (id_token)")
        if len(id_token) > 64 * 1024:
            raise IDTokenRejected("it is longer than 64 KiB")
        metadata = discover(issuer, client=client)
        return _claims(id_token, metadata=metadata, client_id=client_id, nonce=nonce)
    except IDTokenRejected as exc:
        if not exc.transient:
            # A stale discovery document or key set may be the cause: fetch both
            # anew next time.
            forget(issuer)
        error_class = (
            TransientTokenEndpointError if exc.transient else TokenEndpointError
        )
        logger.warning("An ID token from %s was rejected: %s.", host, exc.why)
        raise error_class(
            f"The ID token from {host} was rejected: {exc.why}. Nothing was stored.",
            client=client,
            error="invalid_id_token",
        ) from exc


def account_from_claims(claims: dict[str, Any]) -> str:
    """Who the token belongs to: ``email``, else ``preferred_username``, else ``sub``."""
    for name in ("email", "preferred_username", "sub"):
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            cleaned = "".join(ch for ch in value.strip() if ch.isprintable())
            return cleaned[:300]
    return ""
