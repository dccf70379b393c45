"""A host view that uses a token, for the middleware tests."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from oauth2_integrator import get_access_token


def needs_token(request: HttpRequest, name: str) -> HttpResponse:
    token = get_access_token(name)
    return HttpResponse(f"token length {len(token)}")
