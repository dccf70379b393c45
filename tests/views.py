"""Host views for the middleware tests: they use a token, or fail in a chosen way."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from oauth2_integrator import get_access_token
from oauth2_integrator.exceptions import AuthorizationRequired, CallbackError


def needs_token(request: HttpRequest, name: str) -> HttpResponse:
    token = get_access_token(name)
    return HttpResponse(f"token length {len(token)}")


#: Exceptions a host view may raise that the middleware must leave alone, and one
#: it handles although it names no client.
RAISED = {
    "value-error": lambda: ValueError("a host bug, not an OAuth2 matter"),
    "callback-error": lambda: CallbackError("never raised by get_access_token"),
    "nameless-authorization-required": lambda: AuthorizationRequired(
        "host code raised this without naming a client"
    ),
}


def raises(request: HttpRequest, kind: str) -> HttpResponse:
    raise RAISED[kind]()
