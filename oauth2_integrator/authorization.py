"""Starting and finishing a login in a Django request: the state machine around ``flow``.

``begin`` records a pending ``AuthorizationRequest`` and returns the provider URL;
``complete`` checks the callback against it (state first), exchanges the code and
stores the tokens. Every way a callback can fail raises ``CallbackError`` with an
operator's explanation; an existing working token is never touched by a failure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
from typing import TYPE_CHECKING

from django.db import transaction
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from . import flow, providers
from .exceptions import (
    CallbackError,
    ConfigurationError,
    OAuth2IntegratorError,
    TokenEndpointError,
)
from .fields import reveal
from .models import AuthorizationRequest, OAuth2Client, OAuth2Token, TokenAuthMethod
from .tokens import TOKEN_ENDPOINT_VALUE, store_token_set

if TYPE_CHECKING:
    from django.http import QueryDict

logger = logging.getLogger("oauth2_integrator")

SESSION_KEY = "oauth2_integrator_binding"


def _session_hash(request: HttpRequest, *, create: bool) -> str:
    """A per-browser-session secret, so a callback only completes where it started.

    Kept in the session (any backend works, signed cookies included) and stored
    only as a hash next to the pending login.
    """
    binding = request.session.get(SESSION_KEY)
    if not binding and create:
        binding = secrets.token_urlsafe(32)
        request.session[SESSION_KEY] = binding
    return hashlib.sha256(binding.encode()).hexdigest() if binding else ""


def admin_url(client: OAuth2Client) -> str:
    try:
        return reverse("admin:oauth2_integrator_oauth2client_change", args=[client.pk])
    except NoReverseMatch:
        return "/"


def _fits_return_url_column(candidate: str) -> bool:
    """The pending login stores the return URL; a value its column cannot hold must
    not cost the login (PostgreSQL refuses overlong values and NUL characters)."""
    max_length = AuthorizationRequest._meta.get_field("return_url").max_length
    if max_length is not None and len(candidate) > max_length:
        return False
    return candidate.isprintable()


def safe_return_url(
    request: HttpRequest, candidate: str | None, client: OAuth2Client
) -> str:
    """Only same-site return URLs are honoured (no open redirect); on an https
    request only https ones. Anything else, or a URL too long or odd to store, falls
    back to the client's admin page: the login itself goes on."""
    if (
        candidate
        and url_has_allowed_host_and_scheme(
            candidate,
            allowed_hosts={request.get_host()},
            require_https=request.is_secure(),
        )
        and _fits_return_url_column(candidate)
    ):
        return candidate
    if candidate:
        logger.info(
            "Not returning to the requested page after authorizing OAuth2 client %r "
            "(another site, plain http on an https site, or too long); the client's "
            "admin page is used instead.",
            client.name,
        )
    return admin_url(client)


def redirect_uri_for(request: HttpRequest, client: OAuth2Client) -> str:
    """The client's override, or this site's absolute callback URL (Django's host rules)."""
    if client.redirect_uri:
        return client.redirect_uri
    return request.build_absolute_uri(
        reverse("oauth2_integrator:callback", args=[client.name])
    )


def purge_stale_requests() -> int:
    deleted, _ = AuthorizationRequest.objects.stale().delete()
    return deleted


def begin(
    request: HttpRequest, client: OAuth2Client, *, return_url: str | None = None
) -> str:
    """Record a pending login and return the authorization endpoint URL to redirect to."""
    purge_stale_requests()
    config = providers.configure(client)
    if config.token_auth_method != TokenAuthMethod.NONE:
        # An undecryptable secret would fail the code exchange after the operator
        # signed in at the provider: say so now, before sending them there.
        reveal(
            client.client_secret,
            what=f"client secret of {client.name!r}",
            client=client.name,
        )
    state = flow.new_state()
    verifier = flow.new_code_verifier() if config.use_pkce else ""
    nonce = flow.new_nonce()
    redirect_uri = redirect_uri_for(request, client)
    max_length = AuthorizationRequest._meta.get_field("redirect_uri").max_length
    if max_length is not None and len(redirect_uri) > max_length:
        raise ConfigurationError(
            f"The redirect URI of {client.label} is longer than {max_length} "
            "characters (is this site reached under an unusually long host name?). "
            "Set a shorter redirect URI on the client.",
            client=client.name,
        )
    AuthorizationRequest.objects.create(
        state_hash=flow.hash_state(state),
        client=client,
        user=request.user if request.user.is_authenticated else None,
        session_hash=_session_hash(request, create=True),
        code_verifier=verifier,
        nonce=nonce,
        redirect_uri=redirect_uri,
        return_url=safe_return_url(request, return_url, client),
    )
    logger.info("Starting authorization of OAuth2 client %r.", client.name)
    return flow.authorization_url(
        config,
        redirect_uri=redirect_uri,
        state=state,
        code_verifier=verifier or None,
        nonce=nonce,
    )


def _claim(request: HttpRequest, name: str, state: str) -> AuthorizationRequest:
    """Validate the state and mark the pending login used, in one locked step."""
    with transaction.atomic():
        pending = (
            AuthorizationRequest.objects.select_for_update()
            .select_related("client")
            .filter(state_hash=flow.hash_state(state))
            .first()
        )
        if pending is None:
            raise CallbackError(
                "This authorization answer does not match any login started here (unknown "
                "state). It may have been cleaned up, or the link was not made by this "
                "site. Start again with Authorize in the admin."
            )
        if pending.used_at is not None:
            raise CallbackError(
                "This authorization answer was already used. Each login can complete only "
                "once; start again with Authorize in the admin."
            )
        if pending.expires_at < timezone.now():
            raise CallbackError(
                "This login took too long and has expired. Start again with Authorize in "
                "the admin."
            )
        if pending.client.name != name:
            raise CallbackError(
                f"This authorization answer belongs to another client "
                f"({pending.client.name!r}), not {name!r}. Check the client's redirect URI "
                "at the provider."
            )
        user_pk = request.user.pk if request.user.is_authenticated else None
        if pending.user_id != user_pk or pending.session_hash != _session_hash(
            request, create=False
        ):
            raise CallbackError(
                "This login was started by another user or in another browser session. "
                "Finish it in the browser where you pressed Authorize, signed in as the "
                "same user."
            )
        pending.used_at = timezone.now()
        pending.save(update_fields=["used_at"])
    return pending


#: Parameters of an authorization response that must appear at most once
#: (RFC 6749 §3.1: "MUST NOT be included more than once").
SINGLE_PARAMS = ("state", "code", "error", "error_description", "error_uri", "iss")


def _check_issuer(
    config: providers.ClientConfig, params: QueryDict, *, is_error: bool
) -> None:
    """RFC 9207 mix-up protection, applied before anything in the answer is used.

    With the client's issuer set, an ``iss`` that differs is refused; a missing one
    is refused too when the provider profile says the provider always sends it
    (the ``sends_iss`` option of its profile or provider options; discovery's
    ``authorization_response_iss_parameter_supported`` may set it). The issuer is
    the client's, else its profile's. An error answer from an unexpected issuer is
    not shown: its words are untrusted.
    """
    client = config.client
    issuer = config.issuer
    if not issuer:
        return
    iss = params.get("iss")
    if iss is None:
        if not config.options.sends_iss:
            return
        problem = (
            f"The answer carries no issuer (iss), but the provider of {client.label} "
            f"always sends one and the client is registered with issuer "
            f"{issuer!r}, so it may come from an unexpected issuer (RFC 9207 "
            "mix-up protection)."
        )
    elif iss != issuer:
        problem = (
            f"The answer came from an unexpected issuer, "
            f"{flow.clean_words(iss, 200)!r}, but {client.label} is registered with "
            f"issuer {issuer!r} (RFC 9207 mix-up protection)."
        )
    else:
        return
    if is_error:
        problem += " Its error message is not shown."
    raise CallbackError(
        f"{problem} Nothing was changed; start again with Authorize in the admin.",
        client=client.name,
        error="invalid_issuer",
    )


def _callback_values(
    config: providers.ClientConfig, params: QueryDict
) -> dict[str, object]:
    """``callback_values``: callback parameters kept with the token (``realmId``)."""
    kept: dict[str, object] = {}
    for name in config.options.callback_values:
        value = flow.kept_value(params.get(name))
        if value is not None:
            kept[name] = value
    return kept


def _chosen_token_endpoint(
    config: providers.ClientConfig, params: QueryDict
) -> str | None:
    """The profile's ``token_endpoint_from_callback`` (Zoho's data centers)."""
    try:
        chosen = config.profile.token_endpoint_from_callback(config, params)
    except OAuth2IntegratorError:
        raise
    except Exception as exc:
        logger.warning(
            "OAuth2 client %r: the %s profile could not read the callback (%s).",
            config.client.name,
            config.profile.key,
            type(exc).__name__,
        )
        chosen = ""
    if chosen is not None and (
        not isinstance(chosen, str) or not chosen.startswith("https://")
    ):
        raise CallbackError(
            f"The provider's answer for {config.client.label} names a token endpoint "
            "this app does not send credentials to. Nothing was changed; start again "
            "with Authorize.",
            client=config.client.name,
            error="invalid_token_endpoint",
        )
    return chosen or None


def _validate(
    config: providers.ClientConfig, token_set: flow.TokenSet, *, nonce: str
) -> None:
    """The profile's ``validate_token_set``; a crash there refuses the answer."""
    try:
        config.profile.validate_token_set(config, token_set, nonce=nonce)
    except OAuth2IntegratorError:
        raise
    except Exception as exc:
        logger.warning(
            "OAuth2 client %r: the %s profile could not validate the token response "
            "(%s).",
            config.client.name,
            config.profile.key,
            type(exc).__name__,
        )
        raise TokenEndpointError(
            "The token response could not be validated (the server log has the "
            "details), so it was not used.",
            client=config.client.name,
            error="invalid_response",
        ) from exc


def _account_name(config: providers.ClientConfig, token_set: flow.TokenSet) -> str:
    """The profile's ``account_name``; a failure there never costs the login."""
    try:
        name = config.profile.account_name(config, token_set)
    except Exception as exc:
        logger.warning(
            "OAuth2 client %r: could not tell which account was connected (%s).",
            config.client.name,
            type(exc).__name__,
        )
        return ""
    return flow.clean_words(name, 300) if isinstance(name, str) else ""


def complete(request: HttpRequest, name: str) -> tuple[OAuth2Client, OAuth2Token, str]:
    """Finish a login from the provider's redirect (RFC 6749 §4.1.2)."""
    params: QueryDict = request.GET
    repeated = [key for key in SINGLE_PARAMS if len(params.getlist(key)) > 1]
    if repeated:
        raise CallbackError(
            f"The provider's answer repeats the parameter(s) {', '.join(repeated)}, "
            "which may appear only once (RFC 6749 §3.1), so it was not used. Start "
            "again with Authorize in the admin."
        )
    state = params.get("state")
    if not state:
        raise CallbackError(
            "The provider's answer has no state parameter, so it cannot be matched to a "
            "login started here. Start again with Authorize in the admin."
        )
    pending = _claim(request, name, state)
    client = pending.client
    if not client.enabled:
        raise CallbackError(
            f"{client.label} was disabled while this login was in progress, so its "
            "answer was not used. Nothing was changed; enable the client and "
            "authorize it again.",
            client=client.name,
        )
    config = providers.configure(client)

    error = params.get("error")
    _check_issuer(config, params, is_error=error is not None)
    if error:
        description = flow.clean_words(params.get("error_description", ""))
        if error == "access_denied":
            message = (
                f"Authorization of {client.label} was denied at the provider "
                "(access_denied). Nothing was changed."
            )
        else:
            message = (
                f"The provider refused the authorization of {client.label} "
                f"(error {flow.clean_words(error, 100)!r}). Nothing was changed."
            )
        if description:
            message += f" The provider said: {description}"
        raise CallbackError(
            message, client=client.name, error=error, description=description
        )

    code_param = config.options.code_param or "code"
    if len(params.getlist(code_param)) > 1:
        raise CallbackError(
            f"The provider's answer repeats the parameter {code_param}, which may "
            "appear only once (RFC 6749 §3.1), so it was not used. Start again with "
            "Authorize in the admin."
        )
    code = params.get(code_param)
    if not code:
        raise CallbackError(
            f"The provider's answer for {client.label} has neither a code nor an error. "
            "Nothing was changed; start again with Authorize.",
            client=client.name,
        )

    chosen_endpoint = _chosen_token_endpoint(config, params)
    try:
        token_set = flow.exchange_code(
            config,
            code=code,
            # The value sent in the authorization request, not one recomputed now:
            # RFC 6749 §4.1.3 requires them to be identical.
            redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier or None,
            token_endpoint=chosen_endpoint,
        )
        _validate(config, token_set, nonce=pending.nonce)
    except TokenEndpointError as exc:
        raise CallbackError(
            f"Could not obtain tokens for {client.label}: {exc} Nothing was changed; "
            "start again with Authorize.",
            client=client.name,
            error=exc.error,
            description=exc.description,
            http_status=502 if exc.transient else 400,
        ) from exc

    kept = {**_callback_values(config, params), **token_set.provider_values}
    if chosen_endpoint:
        kept[TOKEN_ENDPOINT_VALUE] = chosen_endpoint
    token_set = dataclasses.replace(token_set, provider_values=kept)
    token = store_token_set(
        client,
        token_set,
        account_name=_account_name(config, token_set),
        actor=pending.user,
    )
    logger.info("OAuth2 client %r is authorized.", client.name)
    return client, token, pending.return_url or admin_url(client)
