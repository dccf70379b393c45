"""The one place that talks HTTP to providers: timeouts, User-Agent, TLS checks."""

from __future__ import annotations

from typing import Any

import requests

from .conf import app_settings


def user_agent() -> str:
    from . import __version__

    configured = app_settings.USER_AGENT
    return str(configured) if configured else f"django-oauth2-integrator/{__version__}"


def post(
    url: str,
    *,
    data: dict[str, str],
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> requests.Response:
    merged: dict[str, Any] = {"User-Agent": user_agent(), **(headers or {})}
    return requests.post(
        url,
        data=data,
        headers=merged,
        auth=auth,
        timeout=(float(app_settings.CONNECT_TIMEOUT), float(app_settings.READ_TIMEOUT)),
        verify=app_settings.VERIFY_TLS,
        allow_redirects=False,
    )
