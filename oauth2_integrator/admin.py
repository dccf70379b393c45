"""The operator's console: register clients, authorize them, watch and refresh tokens.

Secrets stay write-only here: the client secret is typed, never shown back, and
tokens appear only masked (``masking.mask``: at most the first and last four
characters). That holds for every permission: a staff user who may only *view*
clients gets Django's read-only rendering, which would print the decrypted secret
and stored URLs as they are, so for them those fields are replaced by display
methods that mask the secret and drop a URL's ``user:password@``. A secret or
token no configured key decrypts is said so, never a 500. Pending logins
(``AuthorizationRequest``) are deliberately not registered: they hold nothing an
operator should edit.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Prefetch, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import events, providers
from .authorization import redirect_uri_for
from .exceptions import ConfigurationError, OAuth2IntegratorError
from .fields import Undecryptable
from .forms import URL_FIELDS, OAuth2ClientAdminForm
from .masking import mask
from .models import OAuth2Client, OAuth2Event, OAuth2Token, TokenStatus
from .revocation import RevokeResult, revoke
from .status import describe, token_queryset
from .tokens import refresh_access_token
from .validators import redact_urls, strip_userinfo
from .views import can_authorize

logger = logging.getLogger("oauth2_integrator")

if TYPE_CHECKING:
    ClientAdminBase = admin.ModelAdmin[OAuth2Client]
    EventAdminBase = admin.ModelAdmin[OAuth2Event]
else:  # ModelAdmin is generic only in django-stubs, not at run time.
    ClientAdminBase = admin.ModelAdmin
    EventAdminBase = admin.ModelAdmin

#: Events shown on a client's page (read-only, newest first); the event list has
#: them all. A table in the template rather than an inline: an inline's formset
#: would be posted back with every save of the client.
INLINE_EVENTS = 20

#: Attribute the prefetch stores a client's tokens in (one query for a whole page).
_TOKENS_ATTR = "admin_current_tokens"


def current_token(client: OAuth2Client) -> OAuth2Token | None:
    """The client's token, from the admin's prefetch when there is one."""
    prefetched = getattr(client, _TOKENS_ATTR, None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return client.current_token()


def when(moment: datetime.datetime, *, now: datetime.datetime | None = None) -> str:
    """A time as the admin formats it, with how far away it is."""
    now = now or timezone.now()
    shown = formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")
    if moment > now:
        relative = _("in %(time)s") % {"time": timeuntil(moment, now)}
    else:
        relative = _("%(time)s ago") % {"time": timesince(moment, now)}
    return f"{shown} ({relative})"


UNDECRYPTABLE_SECRET = gettext_lazy(
    "The stored client secret of %(client)s cannot be decrypted with any key in "
    "OAUTH2_INTEGRATOR['ENCRYPTION_KEYS'] (a key was removed, or the value is "
    "damaged): logins and refreshes fail until it is fixed. Type the secret again "
    "in “Client secret”, import it with `manage.py oauth2_import_clients`, or "
    "restore the key."
)
UNDECRYPTABLE_TOKEN = gettext_lazy(
    "cannot be decrypted with any key in OAUTH2_INTEGRATOR['ENCRYPTION_KEYS']: "
    "restore the key, or authorize the client again"
)


def _secret_token_field(token: OAuth2Token, name: str) -> str:
    """A token column masked, or a note when no key decrypts it (never a 500)."""
    try:
        return mask(getattr(token, name))
    except ConfigurationError:
        return str(UNDECRYPTABLE_TOKEN)


def _shown_url(name: str) -> Any:
    """A read-only display of a URL field without its ``user:password@``."""
    label = str(getattr(OAuth2Client._meta.get_field(name), "verbose_name", name))

    @admin.display(description=label[:1].upper() + label[1:])
    def show(self: Any, obj: OAuth2Client) -> str:
        return strip_userinfo(getattr(obj, name) or "")

    return show


def _may_view_clients(request: HttpRequest) -> bool:
    """Who may read the audit trail: whoever may see the clients it is about."""
    user = request.user
    return bool(
        user.is_active
        and user.is_staff
        and (
            user.has_perm("oauth2_integrator.view_oauth2event")
            or user.has_perm("oauth2_integrator.view_oauth2client")
            or user.has_perm("oauth2_integrator.change_oauth2client")
        )
    )


def _actor_label(event: OAuth2Event) -> str:
    if event.actor_id is None and not event.actor_name:
        return _("system")
    if event.actor is not None:
        return event.actor.get_username()
    return _("%(name)s (deleted user)") % {"name": event.actor_name}


@admin.register(OAuth2Event)
class OAuth2EventAdmin(EventAdminBase):
    """Every event, filterable; nobody adds, changes or deletes one here (pruning
    after ``EVENT_RETENTION_DAYS`` does)."""

    list_display = ("created_at", "client", "kind", "outcome", "actor_shown", "detail")
    list_filter = (
        ("client", admin.RelatedOnlyFieldListFilter),
        "kind",
        "outcome",
        "created_at",
    )
    list_select_related = ("client", "actor")
    search_fields = ("client__name", "client__display_name", "detail", "actor_name")
    date_hierarchy = "created_at"
    fields = ("created_at", "client", "kind", "outcome", "actor_shown", "detail")
    readonly_fields = fields
    actions = None

    @admin.display(description=gettext_lazy("Actor"))
    def actor_shown(self, obj: OAuth2Event) -> str:
        return _actor_label(obj)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _may_view_clients(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may_view_clients(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Whoever may delete a client deletes its events with it (the admin checks
        this for the cascade); an event alone is never deleted here."""
        return request.user.has_perm("oauth2_integrator.delete_oauth2client")

    def delete_view(
        self,
        request: HttpRequest,
        object_id: str,
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        raise PermissionDenied

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {**(extra_context or {}), "show_delete": False}
        return super().change_view(request, object_id, form_url, context)


@admin.register(OAuth2Client)
class OAuth2ClientAdmin(ClientAdminBase):
    form = OAuth2ClientAdminForm
    list_display = ("name", "display_name", "provider", "status", "enabled")
    list_display_links = ("name", "display_name")
    # Only the providers in use: the catalog offers well over a hundred.
    list_filter = (("provider", admin.AllValuesFieldListFilter), "enabled")
    search_fields = ("name", "display_name")
    actions = ["refresh_now", "disconnect"]
    # Endpoints are https in practice; also Django 6's default for scheme-less input.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    readonly_fields = (
        "token_status",
        "token_access_token",
        "token_refresh_token",
        "token_type",
        "token_scope",
        "token_expires_at",
        "token_refresh_token_expires_at",
        "token_provider_values",
        "token_obtained_at",
        "token_refreshed_at",
        "token_last_error",
    )

    _main = (None, {"fields": ("name", "display_name", "provider", "enabled")})
    _endpoints = (
        gettext_lazy("Endpoints"),
        {
            "fields": (
                "authorization_endpoint",
                "token_endpoint",
                "revocation_endpoint",
                "issuer",
                "redirect_uri",
            )
        },
    )
    _advanced = (
        gettext_lazy("Extra request parameters and provider options"),
        {
            "classes": ("collapse",),
            "fields": (
                "extra_authorize_params",
                "extra_token_params",
                "provider_options",
            ),
        },
    )
    _token = (
        gettext_lazy("Token (read-only)"),
        {"fields": readonly_fields},
    )
    #: For users who may only view: field -> display method that hides secrets.
    _view_only_fields = {
        "client_secret": "client_secret_shown",
        "clear_client_secret": None,
        **{name: f"{name}_shown" for name in URL_FIELDS},
    }

    def get_fieldsets(
        self, request: HttpRequest, obj: OAuth2Client | None = None
    ) -> Any:
        credentials: tuple[str, ...] = ("client_id", "client_secret")
        if obj is not None:
            credentials += ("clear_client_secret",)
        credentials += ("token_auth_method", "use_pkce", "scope")
        fieldsets: list[tuple[Any, dict[str, Any]]] = [
            self._main,
            (gettext_lazy("Credentials"), {"fields": credentials}),
            self._endpoints,
            self._advanced,
        ]
        if obj is not None:
            fieldsets.append(self._token)
        if obj is not None and not self.has_change_permission(request, obj):
            # Django renders every field of a view-only page from the model
            # attribute: the decrypted secret and the stored URLs as they are.
            fieldsets = [
                (title, {**options, "fields": self._shown(options["fields"])})
                for title, options in fieldsets
            ]
        return fieldsets

    def _shown(self, fields: tuple[str, ...]) -> tuple[str, ...]:
        shown = (self._view_only_fields.get(name, name) for name in fields)
        return tuple(name for name in shown if name)

    # ------------------------------------------------- view-only rendering

    @admin.display(description=gettext_lazy("Client secret"))
    def client_secret_shown(self, obj: OAuth2Client) -> str:
        secret = obj.client_secret
        if isinstance(secret, Undecryptable):
            return _("stored, but cannot be decrypted with any configured key")
        return mask(secret) or _("not set")

    authorization_endpoint_shown = _shown_url("authorization_endpoint")
    token_endpoint_shown = _shown_url("token_endpoint")
    revocation_endpoint_shown = _shown_url("revocation_endpoint")
    issuer_shown = _shown_url("issuer")
    redirect_uri_shown = _shown_url("redirect_uri")

    def get_queryset(self, request: HttpRequest) -> QuerySet[OAuth2Client]:
        return (
            super()
            .get_queryset(request)
            # Secrets stay encrypted in the list; the change page loads them.
            .defer("client_secret")
            .prefetch_related(
                Prefetch(
                    "tokens",
                    queryset=token_queryset(),
                    to_attr=_TOKENS_ATTR,
                )
            )
        )

    # ------------------------------------------------------------------ list

    @admin.display(description=gettext_lazy("Status"))
    def status(self, obj: OAuth2Client) -> str:
        return describe(obj, token=current_token(obj))

    # ------------------------------------------------------- token, read-only

    @admin.display(description=gettext_lazy("Status"))
    def token_status(self, obj: OAuth2Client) -> str:
        return describe(obj, token=current_token(obj))

    @admin.display(description=gettext_lazy("Access token"))
    def token_access_token(self, obj: OAuth2Client) -> str:
        token = current_token(obj)
        return _secret_token_field(token, "access_token") if token else _("none")

    @admin.display(description=gettext_lazy("Refresh token"))
    def token_refresh_token(self, obj: OAuth2Client) -> str:
        token = current_token(obj)
        return (_secret_token_field(token, "refresh_token") if token else "") or _(
            "none"
        )

    @admin.display(description=gettext_lazy("Token type"))
    def token_type(self, obj: OAuth2Client) -> str:
        token = current_token(obj)
        return token.token_type if token else ""

    @admin.display(description=gettext_lazy("Granted scope"))
    def token_scope(self, obj: OAuth2Client) -> str:
        token = current_token(obj)
        return token.scope if token else ""

    @admin.display(description=gettext_lazy("Expires at"))
    def token_expires_at(self, obj: OAuth2Client) -> str:
        token = current_token(obj)
        if token is None:
            return ""
        if token.expires_at is None:
            return _("no expiry given by the provider")
        return when(token.expires_at)

    @admin.display(description=gettext_lazy("Refresh token expires at"))
    def token_refresh_token_expires_at(self, obj: OAuth2Client) -> str:
        token = current_token(obj)
        moment = getattr(token, "refresh_token_expires_at", None) if token else None
        return when(moment) if moment else ""

    @admin.display(description=gettext_lazy("Values kept from the provider"))
    def token_provider_values(self, obj: OAuth2Client) -> str:
        """``callback_values`` / ``token_values`` (realmId, instance_url, ...): not
        secret, shown so an operator can see which company or site is connected."""
        token = current_token(obj)
        values = getattr(token, "provider_values", None) if token else None
        if not isinstance(values, dict) or not values:
            return ""
        return "; ".join(
            f"{key} = {redact_urls(str(value))[:200]}"
            for key, value in sorted(values.items())
        )

    @admin.display(description=gettext_lazy("Obtained at"))
    def token_obtained_at(self, obj: OAuth2Client) -> str:
        token = current_token(obj)
        return when(token.obtained_at) if token else ""

    @admin.display(description=gettext_lazy("Refreshed at"))
    def token_refreshed_at(self, obj: OAuth2Client) -> str:
        token = current_token(obj)
        if token is None:
            return ""
        return when(token.refreshed_at) if token.refreshed_at else _("not yet")

    @admin.display(description=gettext_lazy("Last error"))
    def token_last_error(self, obj: OAuth2Client) -> str:
        token = current_token(obj)
        if token is None or not token.last_error:
            return ""
        # Errors stored before URLs with credentials were refused may quote one.
        error = redact_urls(token.last_error)
        if token.last_error_at is None:
            return error
        return f"{error} ({when(token.last_error_at)})"

    # ------------------------------------------------- add form pre-filling

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """``?provider=<key>`` on the add URL pre-fills the profile's endpoints.

        Other query parameters still win, as in Django's own pre-filling.
        """
        initial = super().get_changeform_initial_data(request)
        key = request.GET.get("provider")
        if not key:
            return initial
        try:
            profile = providers.get(key)
        except ConfigurationError as exc:
            messages.warning(request, str(exc))
            initial.pop("provider", None)
            return initial
        return {**profile.initial_values(), **initial}

    # ------------------------------------------------- the Authorize button

    def has_authorize_permission(self, request: HttpRequest) -> bool:
        """Checked by Django for actions declared with ``permissions=["authorize"]``."""
        return can_authorize(request)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        obj = self.get_object(request, unquote(object_id))
        if (
            obj is not None
            and request.method != "POST"
            and isinstance(obj.client_secret, Undecryptable)
        ):
            messages.warning(request, UNDECRYPTABLE_SECRET % {"client": obj.label})
        if obj is not None:
            context["oauth2_callback"] = {
                "url": redirect_uri_for(request, obj),
                "override": bool(obj.redirect_uri),
            }
        if obj is not None and obj.enabled and can_authorize(request):
            token = current_token(obj)
            context["oauth2_authorize"] = {
                "url": reverse("oauth2_integrator:login", args=[obj.name]),
                "next": reverse(
                    f"{self.admin_site.name}:oauth2_integrator_oauth2client_change",
                    args=[quote(obj.pk)],
                ),
                "label": _("Re-authorize") if token is not None else _("Authorize"),
            }
        if obj is not None and can_authorize(request) and _has_connection(obj):
            context["oauth2_disconnect"] = {
                "url": reverse(
                    f"{self.admin_site.name}:oauth2_integrator_oauth2client_disconnect",
                    args=[quote(obj.pk)],
                ),
            }
            context["oauth2_disconnect_confirm"] = _(
                "Disconnect %(client)s? Its tokens are revoked at the provider and "
                "API calls fail until it is authorized again."
            ) % {"client": obj.label}
        if obj is not None and _may_view_clients(request):
            context["oauth2_events"] = [
                {
                    "created_at": event.created_at,
                    "kind": event.get_kind_display(),
                    "outcome": event.get_outcome_display(),
                    "failed": event.outcome == "failed",
                    "actor": _actor_label(event),
                    "detail": event.detail,
                }
                for event in OAuth2Event.objects.filter(client=obj)
                .select_related("actor")
                .order_by("-created_at", "-pk")[:INLINE_EVENTS]
            ]
            context["oauth2_events_url"] = (
                reverse(
                    f"{self.admin_site.name}:oauth2_integrator_oauth2event_changelist"
                )
                + f"?client__id__exact={quote(obj.pk)}"
            )
        return super().change_view(request, object_id, form_url, context)

    # ------------------------------------------------- the Disconnect button

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/disconnect/",
                self.admin_site.admin_view(self.disconnect_view),
                name=f"{info[0]}_{info[1]}_disconnect",
            ),
            *super().get_urls(),
        ]

    def disconnect_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST only (the admin's CSRF check applies), permission ``authorize``."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not can_authorize(request):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            messages.warning(request, _("That OAuth2 client does not exist any more."))
            return HttpResponseRedirect(
                reverse(
                    f"{self.admin_site.name}:oauth2_integrator_oauth2client_changelist"
                )
            )
        self._disconnect(request, obj)
        return HttpResponseRedirect(
            reverse(
                f"{self.admin_site.name}:oauth2_integrator_oauth2client_change",
                args=[quote(obj.pk)],
            )
        )

    @admin.action(
        permissions=["authorize"],
        description=gettext_lazy("Disconnect: revoke the tokens at the provider"),
    )
    def disconnect(
        self, request: HttpRequest, queryset: QuerySet[OAuth2Client]
    ) -> None:
        for client in queryset.order_by("name"):
            self._disconnect(request, client)

    def _disconnect(self, request: HttpRequest, client: OAuth2Client) -> None:
        """Revoke, tell the operator what the provider said, write the history.

        ``revoke`` writes the audit event; a failure is a message, never a 500.
        """
        result, reason = _operator_attempt(
            lambda: revoke(client.name, actor=request.user),
            doing="Disconnecting",
            client=client,
        )
        if reason is None:
            self.log_change(request, client, _("Disconnected: %s") % result.detail)
            messages.add_message(request, _disconnect_level(result), result.detail)
            return
        self._operator_failed(
            request,
            client,
            _("Disconnect failed: %(reason)s"),
            _("Could not disconnect %(client)s: %(reason)s"),
            reason,
        )

    def _operator_failed(
        self,
        request: HttpRequest,
        client: OAuth2Client,
        history: str,
        message: str,
        reason: str,
    ) -> None:
        """A failed button: a history entry and an error message, in words."""
        self.log_change(request, client, history % {"reason": reason})
        messages.error(request, message % {"client": client.label, "reason": reason})

    def save_model(
        self, request: HttpRequest, obj: OAuth2Client, form: Any, change: bool
    ) -> None:
        # Read by the audit trail's post_save receiver (events.py): who, and the
        # names of the fields changed (never their values).
        obj.__dict__[events.ACTOR_ATTR] = request.user
        obj.__dict__[events.CHANGED_ATTR] = list(form.changed_data) if change else None
        super().save_model(request, obj, form, change)
        if isinstance(obj.client_secret, Undecryptable):
            # Kept as stored (the operator left the field blank): say it still fails.
            messages.warning(request, UNDECRYPTABLE_SECRET % {"client": obj.label})

    # ------------------------------------------------------ Refresh now

    @admin.action(
        permissions=["authorize"],
        description=gettext_lazy("Refresh the access token now"),
    )
    def refresh_now(
        self, request: HttpRequest, queryset: QuerySet[OAuth2Client]
    ) -> None:
        """Refresh each selected client; a failure is a message and a history entry.

        ``refresh_access_token`` keeps the stored token on every failure (and marks
        it for re-authorization on ``invalid_grant``), so nothing is lost here.
        """
        refreshed: list[str] = []
        for client in queryset.order_by("name"):
            reason = _operator_attempt(
                lambda name=client.name: refresh_access_token(name),
                doing="Refreshing",
                client=client,
                unchanged=_(" The stored token was not changed."),
            )[1]
            if reason is None:
                refreshed.append(client.label)
                self.log_change(request, client, _("Refreshed the access token"))
                continue
            self._operator_failed(
                request,
                client,
                _("Refresh failed: %(reason)s"),
                _("Could not refresh %(client)s: %(reason)s"),
                reason,
            )
        if refreshed:
            messages.success(
                request,
                _("Refreshed the access token of %(clients)s.")
                % {"clients": ", ".join(refreshed)},
            )


def _has_connection(client: OAuth2Client) -> bool:
    """Is there something to disconnect: a token not yet revoked, or a revoked one
    whose tokens the provider did not confirm (Disconnect retries it)?"""
    return (
        OAuth2Token.objects.filter(client=client, account="")
        .exclude(status=TokenStatus.REVOKED, access_token="", refresh_token="")
        .exists()
    )


def _operator_attempt(
    func: Any, *, doing: str, client: OAuth2Client, unchanged: str = ""
) -> tuple[Any, str | None]:
    """Run an operator's button: ``(result, None)``, or ``(None, reason)`` in words.

    Never raises: an unexpected exception is logged with its traceback and named
    by its kind only, never a 500 for an operator's button.
    """
    try:
        return func(), None
    except OAuth2IntegratorError as exc:
        return None, str(exc)
    except Exception as exc:
        logger.exception("%s OAuth2 client %r failed unexpectedly.", doing, client.name)
        reason = _(
            "an unexpected %(kind)s happened; the server log has the details."
        ) % {"kind": type(exc).__name__}
        return None, reason + unchanged


def _disconnect_level(result: RevokeResult) -> int:
    if result.confirmed:
        return messages.SUCCESS
    if result.failed:
        return messages.ERROR
    return messages.WARNING if result.provider == "no_endpoint" else messages.INFO
