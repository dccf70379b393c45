"""The standard behaviour (RFC 6749 defaults) that every provider profile starts from.

A profile overrides only what its provider does differently: class attributes for
what data can say, and the named hooks below for what it cannot. Profiles never
read or write models; they receive a ``ClientConfig`` and return data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl

from .options import VOCABULARY

if TYPE_CHECKING:
    import requests

    from ..flow import TokenRequest, TokenSet
    from ..models import OAuth2Token
    from .config import ClientConfig

#: Deepest nesting of arrays and objects accepted in a token endpoint's JSON. Real
#: token responses nest two or three levels; Python's parser (and every later
#: ``json.dumps`` of ``TokenSet.extra``) raises RecursionError at about a thousand
#: (issue #5, item 8).
MAX_JSON_DEPTH = 32

#: What the depth scan looks at: brackets, and what starts or escapes a string.
_JSON_SPECIAL = re.compile(r'[\[\]{}"\\]')


class JSONTooDeep(ValueError):
    """JSON nested deeper than ``MAX_JSON_DEPTH``; refused before it is parsed."""


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``text`` opens more than ``limit`` arrays/objects at once.

    A linear scan of the text (brackets inside strings do not count), without
    parsing it, so the check itself can neither recurse nor backtrack. A text with
    no more brackets than ``limit`` in all cannot nest deeper: counting them (in C)
    spares the scan for a usual token response, where it cost more than parsing.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = False
    escaped_until = -1
    for match in _JSON_SPECIAL.finditer(text):
        position = match.start()
        if position < escaped_until:
            continue
        char = match.group()
        if in_string:
            if char == "\\":
                escaped_until = position + 2
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def load_json(text: str) -> Any:
    """``json.loads`` for untrusted text: JSONTooDeep or ValueError, never RecursionError."""
    if json_too_deep(text):
        raise JSONTooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except RecursionError as exc:  # pragma: no cover - the scan above prevents it
        raise JSONTooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from exc


def response_text(response: requests.Response) -> str:
    """The body as text: the declared charset, else UTF-8, bad bytes replaced.

    Not ``response.text``: without a charset it guesses the encoding from the
    whole body, which is slow on a large hostile answer, and an unknown or
    non-text codec name in the header must not raise.
    """
    content = response.content or b""
    try:
        text = content.decode(response.encoding or "utf-8", errors="replace")
    except (LookupError, UnicodeError, TypeError):
        text = content.decode("utf-8", errors="replace")
    return text.removeprefix("\ufeff")


def _default(name: str) -> Any:
    """A vocabulary option's default (``options.VOCABULARY``, the single source)."""
    return VOCABULARY[name].default


class ProviderProfile:
    """One provider's deviations from RFC 6749: data (class attributes) and hooks.

    Every key of the quirk vocabulary (``providers/options.py``) is a class
    attribute with the vocabulary's default; a catalog entry or subclass sets only
    what differs, and a client's ``provider_options`` override them per client.
    Hooks receive the resolved ``ClientConfig`` (``providers.configure``).
    """

    #: Registry key, stored in ``OAuth2Client.provider``.
    key: ClassVar[str] = ""
    #: Name shown in the admin.
    name: ClassVar[str] = ""
    #: The provider's documentation page the facts came from, and notes for operators.
    docs: ClassVar[str] = ""
    notes: ClassVar[str] = ""

    # Endpoints may hold templates ({tenant}, {subdomain}, ...) filled from url_values.
    authorization_endpoint: ClassVar[str] = ""
    token_endpoint: ClassVar[str] = ""
    revocation_endpoint: ClassVar[str] = ""
    issuer: ClassVar[str] = ""
    userinfo_endpoint: ClassVar[str] = ""
    #: Fields of the userinfo answer that name the account, first found wins.
    account_fields: ClassVar[list[str]] = []
    #: The client's scope when it sets none (stored space-separated on the client).
    default_scopes: ClassVar[list[str]] = []
    #: Older spelling of ``default_scopes``, one space-separated string.
    default_scope: ClassVar[str] = ""
    token_auth_method: ClassVar[str] = "client_secret_basic"  # noqa: S105
    use_pkce: ClassVar[bool] = True

    # --- the quirk vocabulary (defaults: RFC 6749) ---------------------------------
    authorize_params: ClassVar[dict[str, Any]] = _default("authorize_params")
    token_params: ClassVar[dict[str, Any]] = _default("token_params")
    refresh_params: ClassVar[dict[str, Any]] = _default("refresh_params")
    param_names: ClassVar[dict[str, str]] = _default("param_names")
    #: How scopes are joined in requests (RFC 6749 §3.3: a space).
    scope_separator: ClassVar[str] = _default("scope_separator")
    required_scopes: ClassVar[list[str]] = _default("required_scopes")
    scope_on_refresh: ClassVar[bool] = _default("scope_on_refresh")
    token_request_format: ClassVar[str] = _default("token_request_format")
    token_headers: ClassVar[dict[str, str]] = _default("token_headers")
    refresh_endpoint: ClassVar[str] = _default("refresh_endpoint")
    url_values: ClassVar[dict[str, str]] = _default("url_values")
    token_response_format: ClassVar[str] = _default("token_response_format")
    token_path: ClassVar[str] = _default("token_path")
    bearer_token_types: ClassVar[list[str]] = _default("bearer_token_types")
    ok_field: ClassVar[str] = _default("ok_field")
    errors_field: ClassVar[str] = _default("errors_field")
    expires_in_field: ClassVar[str] = _default("expires_in_field")
    expires_at_field: ClassVar[str] = _default("expires_at_field")
    expires_unit: ClassVar[str] = _default("expires_unit")
    default_expires_in: ClassVar[int | None] = _default("default_expires_in")
    zero_expires_means_never: ClassVar[bool] = _default("zero_expires_means_never")
    refresh_token_expires_in_field: ClassVar[str] = _default(
        "refresh_token_expires_in_field"
    )
    code_param: ClassVar[str] = _default("code_param")
    callback_values: ClassVar[list[str]] = _default("callback_values")
    token_values: ClassVar[list[str]] = _default("token_values")
    #: The provider always puts ``iss`` in its authorization responses (RFC 9207
    #: §2.4), so a callback without one is refused when the client's issuer is set.
    sends_iss: ClassVar[bool] = _default("sends_iss")

    def vocabulary(self) -> dict[str, Any]:
        """This profile's value for every vocabulary key."""
        return {name: getattr(self, name) for name in VOCABULARY}

    @property
    def scopes(self) -> list[str]:
        return list(self.default_scopes) or self.default_scope.split()

    # --- hooks: the base is the standard behaviour ---------------------------------

    def configure(self, config: ClientConfig) -> ClientConfig:
        """Last look at the resolved client configuration (OIDC: discovery)."""
        return config

    def authorization_params(
        self, config: ClientConfig, params: dict[str, str]
    ) -> dict[str, str]:
        """Last look at the authorization request's query parameters."""
        return params

    def prepare_token_request(
        self, config: ClientConfig, request: TokenRequest
    ) -> TokenRequest:
        """Last look at the code-exchange request before it is sent."""
        return request

    def prepare_refresh_request(
        self, config: ClientConfig, request: TokenRequest
    ) -> TokenRequest:
        """Last look at the refresh request before it is sent (defaults to the above)."""
        return self.prepare_token_request(config, request)

    def renewal_request(
        self, config: ClientConfig, token: OAuth2Token
    ) -> TokenRequest | None:
        """A request that renews a token the provider gave no refresh token for.

        Facebook's ``fb_exchange_token``, Instagram's ``ig_refresh_token`` (GET).
        ``None`` (the standard): it cannot be renewed, an operator re-authorizes.
        Client authentication is not added for you: call
        ``flow.apply_client_auth(config, request)`` when the provider wants it.
        """
        return None

    def token_endpoint_from_callback(
        self, config: ClientConfig, params: Mapping[str, str]
    ) -> str | None:
        """A token endpoint chosen by the callback (Zoho's ``accounts-server``).

        The result receives the code and the client secret: a profile that
        implements this must check it against an allow-list it holds. ``None``
        keeps the configured endpoint.
        """
        return None

    def parse_token_response(
        self, config: ClientConfig, response: requests.Response
    ) -> dict[str, Any] | None:
        """The token endpoint's answer as a dict, or None when it is not one.

        RFC 6749 §5.1 says JSON; some providers answer form-encoded (GitHub without
        ``Accept: application/json``), so both are read (``token_response_format``
        forces one). JSON nested too deeply raises ``JSONTooDeep``, which ``flow``
        turns into a clear error.
        """
        fmt = getattr(getattr(config, "options", None), "token_response_format", "auto")
        content_type = (
            response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        )
        text = response_text(response).strip()
        as_json = fmt == "json" or (
            fmt == "auto" and (content_type.endswith("json") or text.startswith("{"))
        )
        if as_json:
            try:
                body = load_json(text)
            except JSONTooDeep:
                raise
            except ValueError:
                return None
            return body if isinstance(body, dict) else None
        if (
            fmt == "form"
            or content_type in {"application/x-www-form-urlencoded", "text/plain"}
        ) and "=" in text:
            pairs = parse_qsl(text, keep_blank_values=True)
            return dict(pairs) if pairs else None
        return None

    def parse_refresh_response(
        self, config: ClientConfig, response: requests.Response
    ) -> dict[str, Any] | None:
        return self.parse_token_response(config, response)

    def validate_token_set(
        self, config: ClientConfig, token_set: TokenSet, *, nonce: str
    ) -> None:
        """After the code exchange, before anything is stored: raise
        ``TokenEndpointError`` to refuse the answer (OIDC: the id_token)."""

    def account_name(self, config: ClientConfig, token_set: TokenSet) -> str:
        """Who the token belongs to ("octocat", "alice@example.com"); "" when unknown.

        The first non-empty of ``account_fields`` (dotted paths: ``"team.name"``) in
        the answer of ``userinfo_endpoint``, asked with the new access token as a
        Bearer token (RFC 6750 §2.1; GitHub's ``GET /user``,
        https://docs.github.com/en/rest/users/users#get-the-authenticated-user);
        without a userinfo endpoint, in the token response itself (Slack's
        ``team.name``, https://docs.slack.dev/reference/methods/oauth.v2.access).
        A label only: every failure (network, HTTP error, bad or deep JSON, no
        such field) is logged without secrets and names nobody, never raises.
        """
        import logging

        from .. import flow, transport
        from ..masking import url_host

        fields = [f for f in self.account_fields if isinstance(f, str) and f]
        if not fields:
            return ""
        logger = logging.getLogger("oauth2_integrator")
        endpoint = config.userinfo_endpoint
        secrets = {token_set.access_token, token_set.refresh_token or ""}
        problem = ""
        answer: Any = None
        try:
            if endpoint:
                response = transport.get(
                    endpoint,
                    headers={
                        "Authorization": f"Bearer {token_set.access_token}",
                        "Accept": "application/json",
                    },
                )
                if not 200 <= response.status_code < 300:
                    problem = f"HTTP {response.status_code}"
                else:
                    answer = load_json(response_text(response).strip())
            else:
                answer = token_set.extra
        except Exception as exc:  # a label must never cost the login
            answer, problem = None, type(exc).__name__
        if isinstance(answer, dict):
            for field in fields:
                value: Any = answer
                for part in field.split("."):
                    value = value.get(part) if isinstance(value, dict) else None
                if isinstance(value, bool) or not isinstance(value, str | int | float):
                    continue
                name = flow.clean_words(value, 300)
                if name and name not in secrets:
                    return name
            problem = problem or f"no value for {', '.join(fields)}"
        else:
            problem = problem or "not a JSON object"
        logger.warning(
            "OAuth2 client %r: could not tell which account was connected: the %s "
            "gave no usable answer (%s).",
            config.client.name,
            f"userinfo endpoint at {url_host(endpoint)}"
            if endpoint
            else "token endpoint",
            problem,
        )
        return ""

    def initial_values(self) -> dict[str, Any]:
        """Field values the admin pre-fills when an operator picks this provider.

        An endpoint with a template ({tenant}) is left blank: the client resolves
        it from the profile and its ``url_values``.
        """

        def plain(url: str) -> str:
            return "" if "{" in url else url

        return {
            "authorization_endpoint": plain(self.authorization_endpoint),
            "token_endpoint": plain(self.token_endpoint),
            "revocation_endpoint": plain(self.revocation_endpoint),
            "issuer": plain(self.issuer),
            "scope": " ".join(self.scopes),
            "token_auth_method": self.token_auth_method,
            "use_pkce": self.use_pkce,
        }
