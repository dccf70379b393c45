"""The standard behaviour (RFC 6749 defaults) that every provider profile starts from.

A profile overrides only what its provider does differently: class attributes for
what data can say, and the named hooks below for what it cannot. Profiles never
read or write models; they receive a client and return data.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    import requests

    from ..flow import TokenRequest
    from ..models import OAuth2Client

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
    parsing it, so the check itself can neither recurse nor backtrack.
    """
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


class ProviderProfile:
    #: Registry key, stored in ``OAuth2Client.provider``.
    key: ClassVar[str] = ""
    #: Name shown in the admin.
    name: ClassVar[str] = ""

    # Pre-filled values for a new client registration.
    authorization_endpoint: ClassVar[str] = ""
    token_endpoint: ClassVar[str] = ""
    revocation_endpoint: ClassVar[str] = ""
    issuer: ClassVar[str] = ""
    default_scope: ClassVar[str] = ""
    token_auth_method: ClassVar[str] = "client_secret_basic"  # noqa: S105
    use_pkce: ClassVar[bool] = True
    #: The provider always puts ``iss`` in its authorization responses (RFC 9207
    #: §2.4), so a callback without one is refused when the client's issuer is set.
    sends_iss: ClassVar[bool] = False

    #: How scopes are joined in the authorization request (RFC 6749 §3.3: a space).
    scope_separator: ClassVar[str] = " "
    #: Always added to the authorization request, before the client's own extras.
    extra_authorize_params: ClassVar[dict[str, str]] = {}
    #: Always added to token requests, before the client's own extras.
    extra_token_params: ClassVar[dict[str, str]] = {}

    def authorization_params(
        self, client: OAuth2Client, params: dict[str, str]
    ) -> dict[str, str]:
        """Last look at the authorization request's query parameters."""
        return params

    def prepare_token_request(
        self, client: OAuth2Client, request: TokenRequest
    ) -> TokenRequest:
        """Last look at the code-exchange request before it is sent."""
        return request

    def prepare_refresh_request(
        self, client: OAuth2Client, request: TokenRequest
    ) -> TokenRequest:
        """Last look at the refresh request before it is sent (defaults to the above)."""
        return self.prepare_token_request(client, request)

    def parse_token_response(
        self, client: OAuth2Client, response: requests.Response
    ) -> dict[str, Any] | None:
        """The token endpoint's answer as a dict, or None when it is not one.

        RFC 6749 §5.1 says JSON; some providers answer form-encoded (GitHub without
        ``Accept: application/json``), so both are read. JSON nested too deeply raises
        ``JSONTooDeep``, which ``flow`` turns into a clear error.
        """
        content_type = (
            response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        )
        text = response_text(response).strip()
        if content_type.endswith("json") or text.startswith("{"):
            try:
                body = load_json(text)
            except JSONTooDeep:
                raise
            except ValueError:
                return None
            return body if isinstance(body, dict) else None
        if (
            content_type in {"application/x-www-form-urlencoded", "text/plain"}
            and "=" in text
        ):
            pairs = parse_qsl(text, keep_blank_values=True)
            return dict(pairs) if pairs else None
        return None

    def parse_refresh_response(
        self, client: OAuth2Client, response: requests.Response
    ) -> dict[str, Any] | None:
        return self.parse_token_response(client, response)

    def initial_values(self) -> dict[str, Any]:
        """Field values the admin pre-fills when an operator picks this provider."""
        return {
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "revocation_endpoint": self.revocation_endpoint,
            "issuer": self.issuer,
            "scope": self.default_scope,
            "token_auth_method": self.token_auth_method,
            "use_pkce": self.use_pkce,
        }
