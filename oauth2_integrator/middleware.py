"""Opt-in: turn an ``AuthorizationRequired`` escaping a view into one click for the operator.

Add ``"oauth2_integrator.middleware.AuthorizationRequiredMiddleware"`` to
``MIDDLEWARE`` (after the authentication middleware).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from .exceptions import AuthorizationRequired
from .models import OAuth2Client
from .views import can_authorize


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "json" in accept and "text/html" not in accept


class AuthorizationRequiredMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponse | None:
        if not isinstance(exception, AuthorizationRequired) or not exception.client:
            return None
        name = exception.client
        login_url = None
        if OAuth2Client.objects.filter(name=name).exists():
            login_url = reverse("oauth2_integrator:login", args=[name])
            login_url += "?" + urlencode({"next": request.get_full_path()})
        if _wants_json(request):
            return JsonResponse(
                {
                    "authorization_required": name,
                    "login_url": request.build_absolute_uri(login_url)
                    if login_url
                    else None,
                    "detail": str(exception),
                },
                status=401,
            )
        if login_url and can_authorize(request):
            return HttpResponseRedirect(login_url)
        return render(
            request,
            "oauth2_integrator/unavailable.html",
            {"title": "Temporarily unavailable", "message": str(exception)},
            status=503,
        )
