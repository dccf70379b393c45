"""The admin's form for a client registration: the secret is write-only.

The stored client secret never goes back to the browser, not even into a
``value`` attribute of a password input after a validation error: the page shows
its masked form (``mask()``) and an empty field, and an empty field means "keep".
A secret no configured key can decrypt (``fields.Undecryptable``) is said so on the
page; an empty field keeps its ciphertext untouched (restoring the key restores
it), a typed secret replaces it.

A URL stored with credentials in it (``https://user:password@host``, refused since)
is shown without them, so the page never prints them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import models
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .exceptions import ConfigurationError
from .fields import Undecryptable
from .masking import mask
from .models import OAuth2Client, TokenAuthMethod
from .providers import registry
from .validators import has_userinfo, strip_userinfo

#: Fields that hold a URL, shown without their credentials (``user:pass@``).
URL_FIELDS = (
    "authorization_endpoint",
    "token_endpoint",
    "revocation_endpoint",
    "issuer",
    "redirect_uri",
)


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
            "provider_options",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The stored value is never an initial value: nothing can render it, and a
        # typed secret shows up as a change in the history ("Changed Client secret").
        self.initial["client_secret"] = ""
        stored = self.stored_secret
        if self.secret_is_undecryptable:
            hint = gettext(
                "The stored secret cannot be decrypted with any key in "
                "OAUTH2_INTEGRATOR['ENCRYPTION_KEYS'] (a key was removed or the value "
                "is damaged), so logins and refreshes fail. Type the secret again to "
                "replace it, or restore the key. Leaving this blank keeps the stored "
                "value as it is."
            )
        elif stored:
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
        if "provider" in self.fields:
            self.fields["provider"].help_text = self._provider_help()
        self._hide_stored_credentials()

    @property
    def stored_secret(self) -> str:
        """The stored secret in clear, or ``""`` (also when it cannot be decrypted)."""
        return (self.instance.client_secret or "") if self.instance.pk else ""

    @property
    def secret_is_undecryptable(self) -> bool:
        return bool(self.instance.pk) and isinstance(
            self.instance.client_secret, Undecryptable
        )

    def _hide_stored_credentials(self) -> None:
        """Stored URLs with ``user:password@`` are shown, and saved, without it."""
        self.stripped_urls: list[str] = []
        if not self.instance.pk:
            return
        for name in URL_FIELDS:
            value = self.initial.get(name)
            if name in self.fields and isinstance(value, str) and has_userinfo(value):
                self.initial[name] = strip_userinfo(value)
                self.stripped_urls.append(name)
                self.fields[name].help_text = gettext(
                    "The stored URL contained a user name and password, which are "
                    "not shown and no longer accepted: saving stores the URL without "
                    "them. Authenticate with the client ID and secret instead."
                )

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]  # the model's validators run here
        # A refused URL with credentials is shown again without them.
        refused = [
            name
            for name in URL_FIELDS
            if name in self.errors and has_userinfo(str(self.data.get(name, "")))
        ]
        if refused:
            data: Any = self.data
            data = data.copy()  # a QueryDict from a request is immutable
            for name in refused:
                data[name] = strip_userinfo(str(data[name]))
            self.data = data

    @property
    def changed_data(self) -> list[str]:
        # A URL shown without its stored credentials is a change when saved,
        # so the history records it.
        changed = list(super().changed_data)
        return changed + [n for n in self.stripped_urls if n not in changed]

    def _provider_help(self) -> str:
        """The chosen profile's notes and documentation link; on the add page also
        links that reload the form pre-filled from a profile (the provider select
        does the same with a small script, see the change_form template)."""
        parts: list[str] = []
        key = (
            self.instance.provider if self.instance.pk else self.initial.get("provider")
        )
        profile = None
        if key:
            try:
                profile = registry.get(str(key))
            except ConfigurationError:
                profile = None
        if profile is not None:
            notes = getattr(profile, "notes", "")
            docs = getattr(profile, "docs", "")
            if notes:
                parts.append(
                    format_html('<span class="oauth2-provider-notes">{}</span>', notes)
                )
            if docs:
                parts.append(
                    format_html(
                        '<a class="oauth2-provider-docs" href="{}" target="_blank" '
                        'rel="noopener noreferrer">{}</a>',
                        docs,
                        gettext("%(provider)s documentation")
                        % {"provider": profile.name},
                    )
                )
        if not self.instance.pk:
            parts.append(self._provider_links())
        return format_html_join(" ", "{}", ((part,) for part in parts))

    @staticmethod
    def _provider_links() -> str:
        """Links that reload the add form pre-filled from a provider profile."""
        links = format_html_join(
            ", ",
            '<a href="?provider={}">{}</a>',
            ((key, label) for key, label in registry.choices()),
        )
        return format_html(
            "<details><summary>{}</summary>{}</details>",
            _("Pre-fill the endpoints from a profile:"),
            links,
        )

    def _json_object(self, name: str) -> Any:
        # An emptied textarea means "no extra parameters", not NULL in the database.
        value = self.cleaned_data.get(name)
        return {} if value in (None, "") else value

    def clean_extra_authorize_params(self) -> Any:
        return self._json_object("extra_authorize_params")

    def clean_extra_token_params(self) -> Any:
        return self._json_object("extra_token_params")

    def clean_provider_options(self) -> Any:
        return self._json_object("provider_options")

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
        secret: str = "" if clear else typed or self.stored_secret
        if not secret and not clear and self.secret_is_undecryptable:
            # Kept as it is (its ciphertext is written back), not taken for a
            # usable secret: the admin warns after saving.
            cleaned["client_secret"] = self.instance.client_secret
            return cleaned
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
