"""The demo's two sides: a host page that needs a token, and an API of the provider."""

from __future__ import annotations

import logging
from typing import Any

import requests
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from oauth2_provider.views.generic import ScopedProtectedResourceView

from oauth2_integrator import get_access_token, refresh_access_token
from oauth2_integrator.exceptions import TokenRefreshError
from oauth2_integrator.masking import mask
from oauth2_integrator.models import OAuth2Client

from .setup import DEMO_CLIENT_NAME

logger = logging.getLogger(__name__)


def _ask_provider(client: OAuth2Client, access_token: str) -> dict[str, Any]:
    """Use the token the way host code would: call an API protected by it."""
    url = f"{client.issuer}/api/me/"
    try:
        response = requests.get(
            url, headers={"Authorization": f"Bearer {access_token}"}, timeout=(5, 15)
        )
    except requests.RequestException as exc:
        return {"error": f"The demo provider did not answer ({type(exc).__name__})."}
    if response.status_code != 200:
        return {"error": f"The demo provider answered HTTP {response.status_code}."}
    try:
        answer: dict[str, Any] = response.json()
    except ValueError:
        return {"error": "The demo provider did not answer with JSON."}
    return answer


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Shows the demo client's token, masked, and what the provider says with it.

    No token yet? ``get_access_token`` raises ``AuthorizationRequired`` and the
    middleware sends the operator to the Authorize page, then back here: the
    one-click promise. A POST refreshes the token now.
    """
    client = OAuth2Client.objects.filter(name=DEMO_CLIENT_NAME).first()
    if client is None:
        return render(
            request,
            "demo/home.html",
            {"title": "Demo not set up", "client": None},
            status=503,
        )
    if request.method == "POST":
        try:
            refresh_access_token(DEMO_CLIENT_NAME)
        except TokenRefreshError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "The access token was refreshed.")
        return HttpResponseRedirect(reverse("demo:home"))

    try:
        access_token = get_access_token(DEMO_CLIENT_NAME)
    except TokenRefreshError as exc:
        # The token has expired and the provider could not refresh it just now: say
        # so (AuthorizationRequired, by contrast, goes to the middleware).
        messages.error(request, str(exc))
        return render(
            request,
            "demo/home.html",
            {"title": "Demo: the token could not be refreshed", "client": client},
            status=503,
        )
    token = client.current_token()
    return render(
        request,
        "demo/home.html",
        {
            "title": "Demo: a page that needs a token",
            "client": client,
            "token": token,
            "masked_access_token": mask(access_token),
            "masked_refresh_token": mask(token.refresh_token if token else ""),
            "provider_answer": _ask_provider(client, access_token),
            "admin_url": _admin_url(client),
        },
    )


def _admin_url(client: OAuth2Client) -> str | None:
    try:
        return reverse("admin:oauth2_integrator_oauth2client_change", args=[client.pk])
    except NoReverseMatch:  # the client's admin is not registered
        return None


class ProviderMeView(ScopedProtectedResourceView):
    """An API of the demo provider, protected by its access tokens (scope ``read``)."""

    required_scopes = ["read"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        owner = getattr(request, "resource_owner", None)
        return JsonResponse(
            {"username": owner.get_username() if owner is not None else None}
        )
