"""Showing a secret without showing it: at most its first and last four characters."""

from __future__ import annotations


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
