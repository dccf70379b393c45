"""Setting up both sides of the demo: the provider's user and application, our client.

Shared by ``manage.py demo`` (the one-command demo) and ``manage.py
demo_provider_setup`` (used by the end-to-end and browser tests), so the tests
exercise the same setup a newcomer runs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from oauth2_provider.models import get_application_model

from oauth2_integrator.models import OAuth2Client, TokenAuthMethod

#: The name host code uses: ``get_access_token("demo")``.
DEMO_CLIENT_NAME = "demo"
#: The client_id of the demo application at the local provider.
DEMO_CLIENT_ID = "demo-local-client"
#: Where example_project.urls mounts django-oauth-toolkit.
PROVIDER_PATH = "/demo-provider"


def ensure_user(username: str, password: str, *, superuser: bool = False) -> Any:
    """Create the user, or bring it back to the given password and staff rights.

    The password is only reset when it differs: setting it anew (new salt) would
    end the sessions of a browser that is already signed in.
    """
    user_model = get_user_model()
    lookup: dict[str, Any] = {user_model.USERNAME_FIELD: username}
    user, _ = user_model._default_manager.get_or_create(**lookup)
    user.is_active = True
    user.is_staff = True
    if superuser:
        user.is_superuser = True
    if not user.check_password(password):
        user.set_password(password)
    user.save()
    return user


def ensure_application(
    *, client_id: str, redirect_uris: Iterable[str], name: str = "Demo client"
) -> tuple[Any, str]:
    """Create or update a confidential authorization-code application at the provider.

    Returns the application and a freshly generated client secret in plain text:
    django-oauth-toolkit stores only a hash of it, so this is the one moment the
    plain value exists and can be handed to the client side.
    """
    application_model = get_application_model()
    plain_secret = secrets.token_urlsafe(48)
    application, _ = application_model.objects.update_or_create(
        client_id=client_id,
        defaults={
            "name": name,
            "client_type": application_model.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": application_model.GRANT_AUTHORIZATION_CODE,
            "redirect_uris": " ".join(redirect_uris),
            "client_secret": plain_secret,
            "hash_client_secret": True,
            "skip_authorization": False,
            "algorithm": "",
        },
    )
    return application, plain_secret


def provider_urls(base_url: str) -> dict[str, str]:
    """The demo provider's endpoints for a site served at ``base_url``."""
    issuer = base_url.rstrip("/") + PROVIDER_PATH
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize/",
        "token_endpoint": f"{issuer}/token/",
        "revocation_endpoint": f"{issuer}/revoke_token/",
        "introspection_endpoint": f"{issuer}/introspect/",
        "userinfo_endpoint": f"{issuer}/api/me/",
    }


def register_client(
    *,
    name: str,
    base_url: str,
    client_id: str,
    client_secret: str,
    token_auth_method: str = TokenAuthMethod.CLIENT_SECRET_BASIC,
) -> OAuth2Client:
    """Create or update our OAuth2Client for the demo provider served at ``base_url``."""
    urls = provider_urls(base_url)
    client, _ = OAuth2Client.objects.update_or_create(
        name=name,
        defaults={
            "display_name": "Demo provider (local)",
            "provider": "generic",
            "client_id": client_id,
            "client_secret": client_secret,
            "authorization_endpoint": urls["authorization_endpoint"],
            "token_endpoint": urls["token_endpoint"],
            "revocation_endpoint": urls["revocation_endpoint"],
            "issuer": urls["issuer"],
            "scope": "read write",
            "token_auth_method": token_auth_method,
            "use_pkce": True,
            "enabled": True,
        },
    )
    return client
