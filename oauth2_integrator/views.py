"""The two endpoints of the flow: start a login (POST) and receive the callback."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
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


@never_cache
def callback(request: HttpRequest, name: str) -> HttpResponse:
    """The redirection endpoint (RFC 6749 §3.1.2). Failures are pages, never HTTP 500."""
    try:
        client, _token, return_url = authorization.complete(request, name)
    except CallbackError as exc:
        logger.warning("Authorization callback for %r failed: %s", name, exc)
        known = (
            OAuth2Client.objects.defer("client_secret")
            .filter(name=exc.client or name)
            .first()
        )
        return _problem(
            request,
            "Authorization failed",
            str(exc),
            status=exc.http_status,
            client=known,
        )
    except OAuth2IntegratorError as exc:
        # The site's own set-up is at fault (a missing encryption key, a removed
        # provider profile): nothing the operator's browser sent, and nothing stored.
        logger.warning("Authorization callback for %r failed: %s", name, exc)
        return _problem(
            request,
            "Authorization failed",
            f"{exc} Nothing was changed.",
            status=503,
            client=OAuth2Client.objects.defer("client_secret")
            .filter(name=name)
            .first(),
        )
    messages.success(request, f"{client.label} is connected.")
    return HttpResponseRedirect(return_url)
