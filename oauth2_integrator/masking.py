"""Showing a secret without showing it: at most its first and last four characters,
and a URL without the credentials it may carry."""

from __future__ import annotations

from urllib.parse import urlsplit


def mask(secret: str | None) -> str:
    """``ya29…f3Qx`` for long values, ``••••`` for short ones, ``""`` for none.

    Values shorter than 16 characters show nothing: 8 of 12 characters would
    reveal most of them.
    """
    if not secret:
        return ""
    if len(secret) < 16:
        return "••••"
    return f"{secret[:4]}…{secret[-4:]}"


def url_host(url: str) -> str:
    """``host`` or ``host:port`` of a URL, for messages and log lines.

    Never the userinfo (``https://user:password@host/``), the path or the query:
    an endpoint URL typed by an operator may carry credentials, and whatever a
    message shows ends up in logs, ``last_error`` and admin pages (issue #5, item 5).
    """
    try:
        parts = urlsplit(str(url))
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "(an unreadable URL)"
    if not host:
        return "(a URL without a host)"
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port is not None else shown


def safe_url(url: str) -> str:
    """``scheme://host[:port]/path`` of a URL: no userinfo, no query, no fragment."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "(an unreadable URL)"
    host = url_host(url)
    if host.startswith("("):
        return host
    return f"{parts.scheme}://{host}{parts.path}"
