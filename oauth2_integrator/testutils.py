"""Helpers for host projects' own tests: a connected client without a provider.

from oauth2_integrator.testutils import connect_client

def test_sync(db):
    connect_client("crm", access_token="test-token")
    assert my_code_that_calls_get_access_token() == ...
"""

from __future__ import annotations

import datetime
from typing import Any

from django.utils import timezone

from .models import OAuth2Client, OAuth2Token, TokenStatus


def connect_client(
    name: str,
    *,
    access_token: str = "test-access-token",  # noqa: S107
    refresh_token: str = "",
    expires_in: int | None = 3600,
    **client_fields: Any,
) -> OAuth2Token:
    """Create (or update) client ``name`` with an active token, as if an operator had authorized it."""
    defaults: dict[str, Any] = {
        "client_id": f"{name}-client-id",
        "authorization_endpoint": "https://provider.invalid/authorize",
        "token_endpoint": "https://provider.invalid/token",
        "token_auth_method": "none",
        **client_fields,
    }
    client, _ = OAuth2Client.objects.update_or_create(name=name, defaults=defaults)
    expires_at = (
        timezone.now() + datetime.timedelta(seconds=expires_in) if expires_in else None
    )
    token, _ = OAuth2Token.objects.update_or_create(
        client=client,
        account="",
        defaults={
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_at": expires_at,
            "status": TokenStatus.ACTIVE,
            "last_error": "",
            "scope": client.scope,
        },
    )
    return token
