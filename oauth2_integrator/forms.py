"""The admin's form for a client registration: the secret is write-only.

The stored client secret never goes back to the browser, not even into a
``value`` attribute of a password input after a validation error: the page shows
its masked form (``mask()``) and an empty field, and an empty field means "keep".
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import models
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .masking import mask
from .models import OAuth2Client, TokenAuthMethod
from .providers import registry


def _formfield(db_field: models.Field[Any, Any], **kwargs: Any) -> forms.Field | None:
    """Endpoints are https in practice, and that is Django 6's default for bare hosts."""
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class OAuth2ClientAdminForm(forms.ModelForm):
    client_secret = forms.CharField(
        label=_("Client secret"),
        required=False,
        strip=True,
        # render_value=False: a re-rendered form (after an error) stays empty too.
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "new-password"}
        ),
    )
    clear_client_secret = forms.BooleanField(
        label=_("Clear secret"),
        required=False,
        help_text=_(
            "Remove the stored secret, for a public client (token endpoint "
            "authentication “None”)."
        ),
    )

    class Meta:
        model = OAuth2Client
        formfield_callback = _formfield
        fields = (
            "name",
            "display_name",
            "provider",
            "enabled",
            "client_id",
            "client_secret",
            "token_auth_method",
            "use_pkce",
            "scope",
            "authorization_endpoint",
            "token_endpoint",
            "revocation_endpoint",
            "issuer",
            "redirect_uri",
            "extra_authorize_params",
            "extra_token_params",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The stored value is never an initial value: nothing can render it, and a
        # typed secret shows up as a change in the history ("Changed Client secret").
        self.initial["client_secret"] = ""
        stored = self.stored_secret
        if stored:
            hint = gettext(
                "Stored (encrypted): %(masked)s. Leave blank to keep it; type a new "
                "secret to replace it."
            ) % {"masked": mask(stored)}
        elif self.instance.pk:
            hint = gettext("Stored: not set. Required unless the client is public.")
        else:
            hint = gettext(
                "Stored encrypted and never shown again. Required unless public."
            )
        self.fields["client_secret"].help_text = hint
        if "provider" in self.fields and not self.instance.pk:
            self.fields["provider"].help_text = self._provider_links()

    @property
    def stored_secret(self) -> str:
        return (self.instance.client_secret or "") if self.instance.pk else ""

    @staticmethod
    def _provider_links() -> str:
        """Links that reload the add form pre-filled from a provider profile."""
        links = format_html_join(
            ", ",
            '<a href="?provider={}">{}</a>',
            ((key, label) for key, label in registry.choices()),
        )
        return format_html("{} {}", _("Pre-fill the endpoints from a profile:"), links)

    def _json_object(self, name: str) -> Any:
        # An emptied textarea means "no extra parameters", not NULL in the database.
        value = self.cleaned_data.get(name)
        return {} if value in (None, "") else value

    def clean_extra_authorize_params(self) -> Any:
        return self._json_object("extra_authorize_params")

    def clean_extra_token_params(self) -> Any:
        return self._json_object("extra_token_params")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        typed = cleaned.get("client_secret") or ""
        clear = bool(cleaned.get("clear_client_secret"))
        if typed and clear:
            self.add_error(
                "clear_client_secret",
                _("Either type a new secret or tick “Clear secret”, not both."),
            )
            return cleaned
        secret = "" if clear else typed or self.stored_secret
        method = cleaned.get("token_auth_method")
        if method and method != TokenAuthMethod.NONE and not secret:
            label = TokenAuthMethod(method).label
            self.add_error(
                "clear_client_secret" if clear else "client_secret",
                _(
                    "A client secret is required when the token endpoint "
                    "authentication is “%(method)s”. Enter the secret the provider "
                    "issued, or choose “None: public client”."
                )
                % {"method": label},
            )
        else:
            cleaned["client_secret"] = secret
        return cleaned
