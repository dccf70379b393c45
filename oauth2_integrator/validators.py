"""Rules for the URLs of a client registration, shared by the admin form, the
import and the system checks (through ``OAuth2Client.clean()`` and its field
validators), plus helpers that show a URL without its credentials.

Two rules:

- No credentials in a URL (``https://user:password@host/token``). They would be
  printed wherever the URL is: log lines, error messages, the admin page. A client
  authenticates with its client ID and secret, which are kept encrypted.
- No plain ``http://`` outside loopback (``localhost``, ``127.0.0.0/8``, ``::1``):
  the authorization code, tokens and the client secret would cross the network in
  clear (RFC 6749 §3.1 and §3.2 require TLS; RFC 9700 §2.6 allows loopback only).
  ``OAUTH2_INTEGRATOR["ALLOW_INSECURE_HTTP"] = True`` lifts the rule for
  development against a server without TLS.

Error messages name the rule, never the URL: the URL may hold a password.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from .conf import app_settings

__all__ = [
    "has_userinfo",
    "insecure_http",
    "is_loopback_host",
    "redact_urls",
    "strip_userinfo",
    "validate_endpoint_url",
    "validate_no_userinfo",
]

#: ``scheme://userinfo@`` inside free text (a stored error message, a log line).
_USERINFO_IN_TEXT = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@]*@")


def _split(url: str) -> tuple[str, str, str, str, str] | None:
    try:
        return urlsplit(url.strip())
    except ValueError:  # e.g. an unbalanced "[" in the host
        return None


def has_userinfo(url: str) -> bool:
    """True when the URL names a user (and maybe a password) before its host."""
    parts = _split(url)
    return parts is not None and "@" in parts[1]


def strip_userinfo(url: str) -> str:
    """The URL without ``user:password@``; other URLs are returned as they are."""
    parts = _split(url)
    if parts is None or "@" not in parts[1]:
        return url
    host = parts[1].rpartition("@")[2]
    return urlunsplit((parts[0], host, parts[2], parts[3], parts[4]))


def redact_urls(text: str) -> str:
    """Free text with the credentials of every URL in it replaced by ``***``.

    For values stored before URLs with credentials were refused (``last_error``
    may quote such a URL): ``https://u:p@host/x`` shows as ``https://***@host/x``.
    """
    return _USERINFO_IN_TEXT.sub(r"\1***@", text) if text else text


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` (and its subdomains), ``127.0.0.0/8`` and ``::1``."""
    if not host:
        return False
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_http(url: str) -> bool:
    """True for an ``http://`` URL whose host is not loopback (setting ignored)."""
    parts = _split(url)
    if parts is None or parts[0].lower() != "http":
        return False
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return True
    return not is_loopback_host(host)


def validate_no_userinfo(value: str) -> None:
    if value and has_userinfo(value):
        raise ValidationError(
            _(
                "Remove the user name and password from this URL (the part before "
                "“@”): credentials in a URL end up in logs and error messages. "
                "The client authenticates with its client ID and secret instead."
            ),
            code="userinfo",
        )


def validate_endpoint_url(value: str) -> None:
    """Field validator for endpoint and redirect URLs: both rules above."""
    validate_no_userinfo(value)
    if value and insecure_http(value) and not app_settings.ALLOW_INSECURE_HTTP:
        raise ValidationError(
            _(
                "Use https:// for this URL: over plain http:// codes, tokens and the "
                "client secret cross the network unencrypted. http:// is accepted "
                "only for localhost, 127.0.0.1 and ::1, unless "
                "OAUTH2_INTEGRATOR['ALLOW_INSECURE_HTTP'] is True (development only)."
            ),
            code="insecure_http",
        )
