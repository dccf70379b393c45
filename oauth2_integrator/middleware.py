"""Opt-in: turn the app's errors escaping a host view into answers, never HTTP 500.

Add ``"oauth2_integrator.middleware.AuthorizationRequiredMiddleware"`` to
``MIDDLEWARE`` (after the authentication middleware). It handles exactly these
exceptions, and lets every other one through untouched:

- ``AuthorizationRequired``: an operator allowed to authorize the client is sent
  to its login page (and back afterwards); an API request (``Accept: ...json``)
  gets a 401 JSON answer with the login URL; everybody else a 503 page.
- ``TokenRefreshError`` (the provider failed and the stored token has expired) and
  ``ConfigurationError`` (the site or a client is set up in a way that cannot work:
  an undecryptable client secret, a removed key, an unknown client name): a 503
  page, or a 503 JSON answer for an API request.

Only operators (see ``views.is_operator``) read the exception's text, which can
carry the provider's words and internal host names; others get a generic sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from .exceptions import (
    AuthorizationRequired,
    ConfigurationError,
    OAuth2IntegratorError,
    TokenRefreshError,
)
from .models import OAuth2Client
from .views import can_authorize, is_operator

logger = logging.getLogger("oauth2_integrator")

#: What a visitor who is not an operator reads instead of the exception's text.
GENERIC_DETAIL = (
    "This page needs a connection to an outside service that is not available right "
    "now. An administrator has to reconnect it; please try again later."
)


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
        if isinstance(exception, AuthorizationRequired) and exception.client:
            return self._authorization_required(request, exception, exception.client)
        if isinstance(
            exception, AuthorizationRequired | TokenRefreshError | ConfigurationError
        ):
            return self._unavailable(request, exception)
        return None

    def _authorization_required(
        self, request: HttpRequest, exception: AuthorizationRequired, name: str
    ) -> HttpResponse:
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
                    "detail": self._detail(request, exception),
                },
                status=401,
            )
        if login_url and can_authorize(request):
            return HttpResponseRedirect(login_url)
        return self._page(request, exception)

    def _unavailable(
        self, request: HttpRequest, exception: OAuth2IntegratorError
    ) -> HttpResponse:
        # Without the middleware Django would log this as a server error; an
        # operator still has to find it in the log.
        logger.error(
            "A page at %s could not get an OAuth2 token (%s): %s",
            request.path,
            type(exception).__name__,
            exception,
        )
        if _wants_json(request):
            return JsonResponse(
                {
                    "unavailable": exception.client,
                    "detail": self._detail(request, exception),
                },
                status=503,
            )
        return self._page(request, exception)

    @staticmethod
    def _detail(request: HttpRequest, exception: Exception) -> str:
        return str(exception) if is_operator(request) else GENERIC_DETAIL

    def _page(self, request: HttpRequest, exception: Exception) -> HttpResponse:
        context: dict[str, Any] = {
            "title": "Temporarily unavailable",
            "message": GENERIC_DETAIL,
            "detail": str(exception) if is_operator(request) else None,
        }
        return render(
            request, "oauth2_integrator/unavailable.html", context, status=503
        )
