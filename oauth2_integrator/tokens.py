"""Handing out valid access tokens, refreshing them single-flight, and the failure policy.

The refresh holds a row lock (``select_for_update``) around the call to the
token endpoint and re-reads the row once it has the lock, so two processes never
spend the same refresh token (providers that rotate refresh tokens revoke the
whole chain when one is replayed).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from typing import Any

from django.db import connections, router, transaction
from django.utils import timezone

from . import flow, signals
from .conf import app_settings
from .exceptions import (
    AuthorizationRequired,
    ConfigurationError,
    OAuth2IntegratorError,
    TokenEndpointError,
    TokenRefreshError,
)
from .models import OAuth2Client, OAuth2Token, TokenStatus

logger = logging.getLogger("oauth2_integrator")

__all__ = ["get_access_token", "refresh_access_token", "store_token_set"]


def _client(name: str) -> OAuth2Client:
    try:
        client = OAuth2Client.objects.get(name=name)
    except OAuth2Client.DoesNotExist:
        raise ConfigurationError(
            f"There is no OAuth2 client named {name!r}. Register it in the Django admin "
            "(OAuth2 clients) or with `manage.py oauth2_import_clients`.",
            client=name,
        ) from None
    return client


def _load(name: str, account: str) -> tuple[OAuth2Client, OAuth2Token]:
    """The client and its usable token, in one query on the hot path.

    The client secret is left encrypted (deferred) until a refresh needs it.
    """
    token = (
        OAuth2Token.objects.select_related("client")
        .defer("client__client_secret")
        .filter(client__name=name, account=account)
        .first()
    )
    client = token.client if token else _client(name)
    if not client.enabled:
        raise AuthorizationRequired(
            f"OAuth2 client {name!r} is disabled. Enable it in the Django admin.",
            client=name,
        )
    if token is None:
        raise AuthorizationRequired(
            f"OAuth2 client {name!r} is not authorized yet: an operator must press "
            "Authorize on its page in the Django admin.",
            client=name,
        )
    if token.status != TokenStatus.ACTIVE:
        reason = f" ({token.last_error})" if token.last_error else ""
        raise AuthorizationRequired(
            f"OAuth2 client {name!r} needs re-authorization{reason}: an operator "
            "must press Re-authorize on its page in the Django admin.",
            client=name,
        )
    return client, token


def get_access_token(name: str, *, account: str = "") -> str:
    """A valid access token for the client ``name``, refreshed first when it expires soon.

    Raises ``AuthorizationRequired`` when an operator must act, and
    ``TokenRefreshError`` when a needed refresh failed for a passing reason and the
    stored token has already expired.
    """
    client, token = _load(name, account)
    if not token.needs_refresh(app_settings.REFRESH_MARGIN):
        return token.access_token
    if not token.refresh_token:
        if token.is_expired:
            raise AuthorizationRequired(
                f"The access token of OAuth2 client {name!r} has expired and the provider "
                "gave no refresh token: an operator must re-authorize it in the Django admin.",
                client=name,
            )
        return token.access_token
    try:
        return _refresh(client, token, force=False)
    except TokenRefreshError as exc:
        if token.is_expired:
            raise
        logger.warning(
            "Refreshing OAuth2 client %r failed (%s); its current access token is still "
            "valid until %s and is used meanwhile.",
            name,
            exc,
            token.expires_at,
        )
        return token.access_token


def refresh_access_token(name: str, *, account: str = "") -> str:
    """Refresh now, whatever the expiry; returns the new access token."""
    client, token = _load(name, account)
    if not token.refresh_token:
        raise AuthorizationRequired(
            f"OAuth2 client {name!r} has no refresh token (the provider did not issue one): "
            "an operator must re-authorize it in the Django admin.",
            client=name,
        )
    return _refresh(client, token, force=True)


def _refresh_lock() -> Any:
    """The transaction that holds the row lock for the whole refresh.

    On databases without row locks (SQLite) a transaction open across the HTTP call
    would lock the whole file instead, and a provider sharing that file (the demo)
    could not commit: there the refresh runs without one, and single-flight is not
    guaranteed (SQLite is for development).
    """
    alias = router.db_for_write(OAuth2Token)
    if connections[alias].features.has_select_for_update:
        return transaction.atomic(using=alias)
    return contextlib.nullcontext()


def _refresh(client: OAuth2Client, seen: OAuth2Token, *, force: bool) -> str:
    failure: OAuth2IntegratorError | None = None
    with _refresh_lock():
        token = OAuth2Token.objects.select_for_update().get(pk=seen.pk)
        if token.status != TokenStatus.ACTIVE:
            raise AuthorizationRequired(
                f"OAuth2 client {client.name!r} needs re-authorization: an operator must "
                "press Re-authorize on its page in the Django admin.",
                client=client.name,
            )
        refreshed_meanwhile = (
            token.refreshed_at != seen.refreshed_at
            or token.obtained_at != seen.obtained_at
        )
        if refreshed_meanwhile or (
            not force and not token.needs_refresh(app_settings.REFRESH_MARGIN)
        ):
            # Another process refreshed while this one waited for the lock.
            return token.access_token
        if not token.refresh_token:
            raise AuthorizationRequired(
                f"OAuth2 client {client.name!r} has no refresh token any more: an "
                "operator must re-authorize it in the Django admin.",
                client=client.name,
            )
        try:
            token_set = flow.refresh(client, refresh_token=token.refresh_token)
        except TokenEndpointError as exc:
            failure = _record_failure(client, token, exc)
        else:
            _apply(token, token_set, keep_refresh_token=True)
            token.refreshed_at = timezone.now()
            token.save()
    if failure is not None:
        signals.token_refresh_failed.send(
            sender=OAuth2Client,
            client=client,
            error=failure,
            reauthorization_required=isinstance(failure, AuthorizationRequired),
        )
        raise failure
    logger.info("Refreshed the access token of OAuth2 client %r.", client.name)
    signals.token_refreshed.send(sender=OAuth2Client, client=client, token=token)
    return token.access_token


def _record_failure(
    client: OAuth2Client, token: OAuth2Token, exc: TokenEndpointError
) -> OAuth2IntegratorError:
    """Write down what went wrong; only ``invalid_grant`` changes the token's status."""
    token.last_error = str(exc)
    token.last_error_at = timezone.now()
    fields = ["last_error", "last_error_at"]
    if exc.error == "invalid_grant":
        token.status = TokenStatus.REAUTHORIZATION_REQUIRED
        fields.append("status")
        failure: OAuth2IntegratorError = AuthorizationRequired(
            f"The provider no longer accepts the refresh token of OAuth2 client "
            f"{client.name!r} (invalid_grant): an operator must re-authorize it in the "
            "Django admin.",
            client=client.name,
            error=exc.error,
            description=exc.description,
            status=exc.status,
        )
    else:
        failure = TokenRefreshError(
            f"Refreshing OAuth2 client {client.name!r} failed: {exc}",
            client=client.name,
            error=exc.error,
            description=exc.description,
            status=exc.status,
        )
    OAuth2Token.objects.filter(pk=token.pk).update(
        **{f: getattr(token, f) for f in fields}
    )
    logger.warning("Refreshing OAuth2 client %r failed: %s", client.name, exc)
    return failure


def _apply(
    token: OAuth2Token, token_set: flow.TokenSet, *, keep_refresh_token: bool
) -> None:
    now = timezone.now()
    token.access_token = token_set.access_token
    token.token_type = token_set.token_type
    if token_set.refresh_token:
        token.refresh_token = token_set.refresh_token
    elif not keep_refresh_token:
        token.refresh_token = ""
    if token_set.scope is not None:
        token.scope = token_set.scope
    token.expires_at = (
        now + datetime.timedelta(seconds=token_set.expires_in)
        if token_set.expires_in
        else None
    )
    token.extra = {**(token.extra or {}), **token_set.extra}
    token.status = TokenStatus.ACTIVE
    token.last_error = ""
    token.last_error_at = None


def store_token_set(
    client: OAuth2Client, token_set: flow.TokenSet, *, account: str = ""
) -> OAuth2Token:
    """Save the tokens of a completed authorization.

    A response without a refresh token keeps the stored one while it is still
    believed to work (Google issues one only on the first consent).
    """
    with transaction.atomic():
        token = (
            OAuth2Token.objects.select_for_update()
            .filter(client=client, account=account)
            .first()
        )
        if token is None:
            token = OAuth2Token(client=client, account=account, scope=client.scope)
        keep = token.pk is not None and token.status == TokenStatus.ACTIVE
        token.extra = {}
        _apply(token, token_set, keep_refresh_token=keep)
        if token_set.scope is None:
            token.scope = client.scope
        token.obtained_at = timezone.now()
        token.refreshed_at = None
        token.save()
    signals.token_obtained.send(sender=OAuth2Client, client=client, token=token)
    return token
