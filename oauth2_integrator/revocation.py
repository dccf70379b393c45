"""Disconnecting a client: token revocation (RFC 7009) and the local ``revoked`` status.

``revoke(name)`` first claims the token row (waiting for a refresh in flight) and
marks it ``revoked``, so no refresh can start (or rotate the refresh token) while the provider is being told; then it
sends the refresh token (RFC 7009 §2.1, ``token_type_hint=refresh_token``: revoking
it also ends the access tokens issued from it at most servers, §2.1 last paragraph)
and then the access token to the client's revocation endpoint, with the client's
own authentication as at the token endpoint (§2.1: "the client also includes its
authentication credentials as described in Section 2.3 of [RFC6749]"). Each call
goes through ``transport`` (deadline, size cap), outside any lock.

The token stays revoked locally whatever the provider says; the result says what
the provider confirmed. When the provider confirmed, the stored secrets are wiped;
when it failed they are kept, so pressing Disconnect again retries it there.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

import requests
from django.db import router, transaction
from django.utils import timezone

from . import cache, flow, providers, signals, transport
from .conf import app_settings
from .events import record
from .exceptions import ConfigurationError, OAuth2IntegratorError
from .masking import url_host
from .models import EventKind, EventOutcome, OAuth2Client, OAuth2Token, TokenStatus

logger = logging.getLogger("oauth2_integrator")

__all__ = ["RevokeResult", "revoke", "revoke_replaced_refresh_token"]

#: ``RevokeResult.provider`` values.
CONFIRMED = "confirmed"
FAILED = "failed"
NO_ENDPOINT = "no_endpoint"
NOTHING = "nothing_to_revoke"

#: Providers whose revocation ends the user's whole grant to the client, not only
#: the token sent: revoking a refresh token replaced by a new authorization would
#: end the new tokens too, so it is not revoked there (Google:
#: https://developers.google.com/identity/protocols/oauth2/web-server#tokenrevoke).
#: A profile says the same with a class attribute ``revocation_revokes_grant = True``.
GRANT_WIDE_REVOCATION = frozenset({"google"})


@dataclasses.dataclass(frozen=True)
class RevokeResult:
    """What ``revoke`` did. The token is revoked locally in every case but
    ``nothing_to_revoke``; ``provider`` says what the provider confirmed:
    ``"confirmed"`` (every token sent was accepted, HTTP 200), ``"failed"``,
    ``"no_endpoint"`` (the client has no revocation endpoint: the tokens stay valid
    there until they expire) or ``"nothing_to_revoke"`` (no token was stored)."""

    name: str
    account: str
    provider: str
    #: A sentence for the operator (no secret).
    detail: str

    @property
    def confirmed(self) -> bool:
        return self.provider == CONFIRMED

    @property
    def failed(self) -> bool:
        return self.provider == FAILED


@dataclasses.dataclass
class _Secrets:
    refresh_token: str
    access_token: str
    obtained_at: Any
    undecryptable: bool = False


def _client(name: str) -> OAuth2Client:
    try:
        return OAuth2Client.objects.get(name=name)
    except OAuth2Client.DoesNotExist:
        raise ConfigurationError(
            f"There is no OAuth2 client named {name!r}.", client=name
        ) from None


def revoke(name: str, *, account: str = "", actor: Any = None) -> RevokeResult:
    """Disconnect the client ``name``: revoke its token at the provider (RFC 7009)
    and mark it ``revoked`` here; ``get_access_token`` then raises
    ``AuthorizationRequired`` until an operator authorizes the client again.

    Never raises because the provider failed (the result says so); raises
    ``ConfigurationError`` for an unknown client, and ``TokenRefreshError`` when
    another worker has been refreshing the token for longer than
    ``LOCK_WAIT_TIMEOUT``.
    ``actor``: the user who asked (for the audit trail), None for the system.
    """
    client = _client(name)
    secrets = _mark_revoked(client, account, actor=actor)
    if secrets is None:
        result = RevokeResult(
            name, account, NOTHING, f"{client.label} had no token to revoke."
        )
        record(
            client, EventKind.REVOKED, actor=actor, detail=result.detail, detached=True
        )
        return result
    # This process's cached access token (TOKEN_CACHE_TTL) goes now, not after the
    # provider's answer: the token is revoked here from this point on.
    cache.forget(name, account)
    result = _revoke_at_provider(client, account, secrets)
    if result.confirmed:
        _wipe(client, account, secrets)
    signals.token_revoked.send(
        sender=OAuth2Client, client=client, account=account, token=None, result=result
    )
    if result.failed:
        logger.warning("Revoking OAuth2 client %r: %s", name, result.detail)
    else:
        logger.info(
            "Revoked the token of OAuth2 client %r (%s).", name, result.provider
        )
    record(
        client,
        EventKind.REVOKED,
        actor=actor,
        outcome=EventOutcome.FAILED if result.failed else EventOutcome.OK,
        detail=result.detail,
        detached=True,
    )
    return result


def _mark_revoked(client: OAuth2Client, account: str, *, actor: Any) -> _Secrets | None:
    """Claim the row (waiting for a refresh in flight, so that its new refresh token
    is the one revoked), read the secrets and set the status; committed on its own."""
    from .tokens import _claim, _on_own_connection

    pk = (
        OAuth2Token.objects.filter(client=client, account=account)
        .values_list("pk", flat=True)
        .first()
    )
    if pk is None:
        return None
    alias = router.db_for_write(OAuth2Token)
    who = getattr(actor, "get_username", lambda: "")() if actor is not None else ""
    note = (
        "Disconnected"
        + (f" by {who}" if who else "")
        + ": authorize the client again to use it."
    )

    def revoked() -> dict[str, Any]:
        now = timezone.now()
        return {
            "status": TokenStatus.REVOKED,
            "last_error": note[:2000],
            "last_error_at": now,
            "last_error_code": "revoked",
            "next_attempt_at": None,
            # A refresh in flight stores nothing over it (``tokens._store_claimed``).
            "refresh_claim": "",
            "refresh_claimed_until": None,
            "updated_at": now,
        }

    def mark() -> _Secrets:
        # Reading decrypts the secrets; a value no key opens raises there, and the
        # row is revoked without them (below).
        seen = OAuth2Token.objects.using(alias).get(pk=pk)
        token = _claim(
            seen,
            alias,
            name=client.name,
            wait=float(app_settings.LOCK_WAIT_TIMEOUT),
            active_only=False,
            follow=True,
        )
        secrets = _Secrets(
            refresh_token=token.refresh_token or "",
            access_token=token.access_token or "",
            obtained_at=token.obtained_at,
        )
        OAuth2Token.objects.using(alias).filter(pk=pk).update(**revoked())
        return secrets

    try:
        return _on_own_connection(alias, mark)
    except ConfigurationError:
        # A secret no configured key decrypts: it cannot be sent to the provider,
        # but the token is still revoked here.
        def mark_blind() -> _Secrets:
            with transaction.atomic(using=alias):
                obtained = (
                    OAuth2Token.objects.using(alias)
                    .filter(pk=pk)
                    .values_list("obtained_at", flat=True)
                    .first()
                )
                OAuth2Token.objects.using(alias).filter(pk=pk).update(**revoked())
            return _Secrets("", "", obtained, undecryptable=True)

        return _on_own_connection(alias, mark_blind)


def _wipe(client: OAuth2Client, account: str, secrets: _Secrets) -> None:
    """Forget tokens the provider confirmed dead, unless a new login replaced them
    meanwhile (``obtained_at`` changed)."""
    from .tokens import _on_own_connection

    alias = router.db_for_write(OAuth2Token)

    def wipe() -> None:
        with transaction.atomic(using=alias):
            OAuth2Token.objects.using(alias).filter(
                client=client,
                account=account,
                status=TokenStatus.REVOKED,
                obtained_at=secrets.obtained_at,
            ).update(access_token="", refresh_token="", extra={})

    try:
        _on_own_connection(alias, wipe)
    except Exception as exc:  # the token is revoked; forgetting it is a bonus
        logger.warning(
            "Could not forget the revoked tokens of OAuth2 client %r (%s).",
            client.name,
            type(exc).__name__,
        )


# --- RFC 7009 -------------------------------------------------------------------------


def _revoke_at_provider(
    client: OAuth2Client, account: str, secrets: _Secrets
) -> RevokeResult:
    label = client.label
    if secrets.undecryptable:
        return RevokeResult(
            client.name,
            account,
            FAILED,
            f"{label} is disconnected here, but its stored tokens cannot be decrypted "
            "with any key in OAUTH2_INTEGRATOR['ENCRYPTION_KEYS'], so they could not "
            "be revoked at the provider: revoke the app's access in the provider's "
            "console if that matters.",
        )
    tokens = [
        (value, hint)
        for value, hint in (
            (secrets.refresh_token, "refresh_token"),
            (secrets.access_token, "access_token"),
        )
        if value
    ]
    if not tokens:
        return RevokeResult(
            client.name,
            account,
            CONFIRMED,
            f"{label} is disconnected; no token was left to revoke at the provider.",
        )
    try:
        config = providers.configure(client)
    except OAuth2IntegratorError as exc:
        return RevokeResult(
            client.name,
            account,
            FAILED,
            f"{label} is disconnected here, but could not be revoked at the provider: "
            f"{exc}",
        )
    if not config.revocation_endpoint:
        return RevokeResult(
            client.name,
            account,
            NO_ENDPOINT,
            f"{label} is disconnected here. It has no revocation endpoint, so the "
            "provider was not told: its tokens stay valid there until they expire "
            "(revoke the app's access in the provider's console to end them now).",
        )
    problems = []
    for value, hint in tokens:
        problem = send_revocation(config, value, hint)
        if problem:
            problems.append(f"{hint.replace('_', ' ')}: {problem}")
    host = url_host(config.revocation_endpoint)
    if problems:
        return RevokeResult(
            client.name,
            account,
            FAILED,
            f"{label} is disconnected here, but the provider at {host} did not "
            f"confirm the revocation ({'; '.join(problems)}). Press Disconnect again "
            "later to retry, or revoke the app's access in the provider's console.",
        )
    return RevokeResult(
        client.name,
        account,
        CONFIRMED,
        f"{label} is disconnected; the provider at {host} confirmed the revocation.",
    )


def send_revocation(config: providers.ClientConfig, token: str, hint: str) -> str:
    """POST one token to the revocation endpoint; "" when the provider confirmed
    (HTTP 200, RFC 7009 §2.2, which an unknown or already revoked token gets too),
    else what went wrong, in words without the token."""
    request = flow.TokenRequest(
        url=config.revocation_endpoint,
        data={"token": token, "token_type_hint": hint},
        headers={"Accept": "application/json", **config.options.token_headers},
    )
    try:
        request = flow.apply_client_auth(config, request)
        response = transport.request(
            "POST",
            request.url,
            data=request.data,
            headers=request.headers,
            auth=request.auth,
        )
    except OAuth2IntegratorError as exc:  # e.g. an undecryptable client secret
        return str(exc)
    except transport.DeadlineExceeded as exc:
        return f"no answer within {exc.seconds:g} s (TOKEN_REQUEST_DEADLINE)"
    except transport.ResponseTooLarge as exc:
        return f"an answer larger than {exc.limit} bytes (MAX_RESPONSE_BYTES)"
    except transport.UndecodableResponse:
        return "an answer that could not be read"
    except requests.Timeout:
        return "no answer in time"
    except requests.RequestException as exc:
        return f"could not connect ({type(exc).__name__})"
    if response.status_code == 200:
        return ""
    return _refusal(response)


_ERROR_CODE = re.compile(r"[a-z][a-z0-9_.-]{0,63}", re.IGNORECASE)


def _refusal(response: requests.Response) -> str:
    """HTTP status and the OAuth error code (§2.2.1), never the body as a whole."""
    words = f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        body = None
    code = body.get("error") if isinstance(body, dict) else None
    # Only a word that looks like an OAuth error code (RFC 7009 §2.2.1 names
    # unsupported_token_type): free text from a provider might quote a token.
    if isinstance(code, str) and _ERROR_CODE.fullmatch(code):
        words += f", {code}"
    if response.status_code == 503:
        words += ", try again later"
    return words


# --- a token replaced by a new authorization ---------------------------------------


def revoke_replaced_refresh_token(
    client: OAuth2Client, refresh_token: str, *, actor: Any = None
) -> None:
    """Revoke a refresh token that a new authorization replaced (``store_token_set``).

    Called after the new tokens are committed, outside any lock; it never fails the
    login: every problem is logged and written to the audit trail.
    """
    try:
        config = providers.configure(client)
        if not config.revocation_endpoint:
            return
        if config.profile.key in GRANT_WIDE_REVOCATION or getattr(
            config.profile, "revocation_revokes_grant", False
        ):
            return
        problem = send_revocation(config, refresh_token, "refresh_token")
    except Exception as exc:  # never fail the login that replaced it
        problem = f"an unexpected {type(exc).__name__}"
    if problem:
        logger.warning(
            "OAuth2 client %r: the refresh token replaced by the new authorization "
            "could not be revoked at the provider (%s).",
            client.name,
            problem,
        )
        record(
            client,
            EventKind.REVOKED,
            actor=actor,
            outcome=EventOutcome.FAILED,
            detail="The refresh token replaced by the new authorization could not "
            f"be revoked at the provider ({problem}).",
        )
    else:
        record(
            client,
            EventKind.REVOKED,
            actor=actor,
            detail="The refresh token replaced by the new authorization was revoked "
            "at the provider.",
        )


# --- deleting a client -----------------------------------------------------------------


def _on_client_delete(sender: Any, *, instance: OAuth2Client, **kwargs: Any) -> None:
    """Before a client is deleted (admin, ``delete()``, a queryset delete): revoke its
    tokens at the provider once the deletion is committed, outside its transaction.

    The tokens are read now (the rows go with the deletion); nothing here can
    block or fail the delete.
    """
    try:
        rows = list(
            OAuth2Token.objects.filter(client=instance).values_list(
                "refresh_token", "access_token"
            )
        )
    except ConfigurationError:
        logger.warning(
            "OAuth2 client %r is deleted; its stored tokens cannot be decrypted, so "
            "they are not revoked at the provider.",
            instance.name,
        )
        return
    except Exception as exc:
        logger.warning(
            "OAuth2 client %r is deleted; its tokens could not be read for revocation "
            "(%s).",
            instance.name,
            type(exc).__name__,
        )
        return
    pending = [(r, a) for r, a in rows if r or a]
    if not pending:
        return
    try:
        # The admin loads clients with the secret deferred: read it while the row
        # is still there, for the client authentication after the delete.
        deferred = instance.get_deferred_fields()
        if deferred:
            instance.refresh_from_db(fields=list(deferred))
    except Exception as exc:
        logger.warning(
            "OAuth2 client %r is deleted; its registration could not be read for "
            "revocation (%s).",
            instance.name,
            type(exc).__name__,
        )
        return

    def after_delete() -> None:
        try:
            config = providers.configure(instance)
            if not config.revocation_endpoint:
                return
            problems = [
                problem
                for refresh_token, access_token in pending
                for value, hint in (
                    (refresh_token, "refresh_token"),
                    (access_token, "access_token"),
                )
                if value
                for problem in [send_revocation(config, value, hint)]
                if problem
            ]
        except Exception as exc:
            problems = [f"an unexpected {type(exc).__name__}"]
        if problems:
            logger.warning(
                "OAuth2 client %r was deleted, but its tokens could not all be revoked "
                "at the provider (%s): revoke the app's access in the provider's "
                "console.",
                instance.name,
                "; ".join(problems),
            )
        else:
            logger.info(
                "OAuth2 client %r was deleted and its tokens revoked at the provider.",
                instance.name,
            )

    using = kwargs.get("using") or router.db_for_write(OAuth2Token)
    transaction.on_commit(after_delete, using=using)


def connect_receivers() -> None:
    from django.db.models.signals import pre_delete

    pre_delete.connect(
        _on_client_delete,
        sender=OAuth2Client,
        dispatch_uid="oauth2_integrator.revocation.client_delete",
    )
