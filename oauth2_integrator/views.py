"""The two endpoints of the flow: start a login (POST) and receive the callback."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from . import authorization
from .conf import app_settings
from .exceptions import CallbackError, OAuth2IntegratorError
from .models import OAuth2Client

logger = logging.getLogger("oauth2_integrator")


def can_authorize(request: HttpRequest) -> bool:
    user = request.user
    return bool(
        user.is_authenticated
        and user.is_staff
        and user.has_perm(app_settings.AUTHORIZE_PERMISSION)
    )


def is_operator(request: HttpRequest) -> bool:
    """May this user read what went wrong (provider's words, host names, clients)?

    Staff who can authorize clients or see them in the admin, where the same
    details (``last_error``) are shown anyway. Everybody else gets a generic page.
    """
    user = request.user
    return bool(
        user.is_authenticated
        and user.is_staff
        and (
            user.has_perm(app_settings.AUTHORIZE_PERMISSION)
            or user.has_perm("oauth2_integrator.view_oauth2client")
            or user.has_perm("oauth2_integrator.change_oauth2client")
        )
    )


#: What a visitor who is not an operator reads when a callback fails.
GENERIC_CALLBACK_PROBLEM = (
    "This sign-in could not be completed here. If you are an administrator, sign in "
    "to the admin of this site and start the authorization again from there."
)


def _problem(
    request: HttpRequest,
    title: str,
    message: str,
    *,
    status: int,
    client: OAuth2Client | None = None,
) -> HttpResponse:
    context = {
        "title": title,
        "message": message,
        "client": client,
        "admin_url": authorization.admin_url(client) if client else None,
        "login_url": (
            reverse("oauth2_integrator:login", args=[client.name])
            if client and can_authorize(request)
            else None
        ),
    }
    return render(request, "oauth2_integrator/problem.html", context, status=status)


def _admin_login_url() -> str | None:
    try:
        return reverse("admin:login")
    except NoReverseMatch:
        return None


@never_cache
@csrf_protect
def login(request: HttpRequest, name: str) -> HttpResponse:
    """GET shows a confirmation form; only its POST (with a CSRF token) starts a login,
    so a third-party page cannot send an operator to a provider."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), _admin_login_url())
    if not can_authorize(request):
        return _problem(
            request,
            "Not allowed",
            "Only staff users with the permission “Can authorize OAuth2 clients” can "
            "connect a client. Ask an administrator to grant it.",
            status=403,
        )
    client = OAuth2Client.objects.filter(name=name).first()
    if client is None:
        return _problem(
            request,
            "Unknown client",
            f"There is no OAuth2 client named “{name}”.",
            status=404,
        )
    if not client.enabled:
        return _problem(
            request,
            "Client disabled",
            f"{client.label} is disabled. Enable it in the admin before authorizing it.",
            status=400,
            client=client,
        )
    next_url = request.POST.get("next") or request.GET.get("next")
    if request.method == "POST":
        try:
            url = authorization.begin(request, client, return_url=next_url)
        except OAuth2IntegratorError as exc:
            logger.warning("Starting authorization of %r failed: %s", name, exc)
            return _problem(
                request, "Cannot start the login", str(exc), status=503, client=client
            )
        return HttpResponseRedirect(url)
    return render(
        request,
        "oauth2_integrator/confirm.html",
        {
            "client": client,
            "next": authorization.safe_return_url(request, next_url, client),
            "admin_url": authorization.admin_url(client),
            "title": f"Authorize {client.label}",
        },
    )


def _callback_problem(
    request: HttpRequest, message: str, *, status: int, client_name: str
) -> HttpResponse:
    """The failed callback's page: the full story for operators, a generic one
    (no client names, admin links or provider words) for everybody else."""
    if is_operator(request):
        known = (
            OAuth2Client.objects.defer("client_secret").filter(name=client_name).first()
        )
        response = _problem(
            request, "Authorization failed", message, status=status, client=known
        )
    else:
        response = _problem(
            request, "Authorization failed", GENERIC_CALLBACK_PROBLEM, status=status
        )
    # The caller logged what failed. Django's own "Bad Request" record
    # would carry the request, whose query holds the state and the code.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


@never_cache
@transaction.non_atomic_requests
def callback(request: HttpRequest, name: str) -> HttpResponse:
    """The redirection endpoint (RFC 6749 §3.1.2). Failures are pages, never HTTP 500.

    Not wrapped in ``ATOMIC_REQUESTS``: claiming the state and storing the tokens
    commit on their own, so the pending login is not held locked (and its use
    invisible) across the call to the token endpoint.
    """
    try:
        client, _token, return_url = authorization.complete(request, name)
    except CallbackError as exc:
        logger.warning("Authorization callback for %r failed: %s", name, exc)
        return _callback_problem(
            request, str(exc), status=exc.http_status, client_name=exc.client or name
        )
    except OAuth2IntegratorError as exc:
        # The site's own set-up is at fault (a missing encryption key, an
        # undecryptable client secret, a removed provider profile): nothing the
        # operator's browser sent, and nothing stored.
        logger.warning("Authorization callback for %r failed: %s", name, exc)
        return _callback_problem(
            request, f"{exc} Nothing was changed.", status=503, client_name=name
        )
    messages.success(request, f"{client.label} is connected.")
    return HttpResponseRedirect(return_url)
