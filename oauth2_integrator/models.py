"""What the app stores: client registrations, their tokens and pending logins."""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .conf import app_settings
from .fields import EncryptedJSONField, EncryptedTextField
from .validators import validate_endpoint_url, validate_no_userinfo


def provider_choices() -> list[tuple[str, str]]:
    """Choices come from the provider registry, so adding one needs no migration."""
    from .providers import registry

    return registry.choices()


#: Parameters the flow sets itself; an extra parameter may not replace them.
AUTHORIZE_PROTOCOL_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "code_challenge",
        "code_challenge_method",
    }
)
TOKEN_PROTOCOL_PARAMS = frozenset(
    {
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "refresh_token",
        "client_id",
        "client_secret",
    }
)


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL, without credentials, lower-cased."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url
    return f"{parts.scheme.lower()}://{host}{port}"


def _validate_params(value: Any, reserved: frozenset[str]) -> None:
    if not isinstance(value, dict):
        raise ValidationError(
            _('Enter a JSON object, e.g. {"access_type": "offline"}.')
        )
    clashes = sorted(set(value) & reserved)
    if clashes:
        raise ValidationError(
            _("%(names)s cannot be set here: the flow sets it itself."),
            params={"names": ", ".join(clashes)},
        )
    for key, item in value.items():
        if not isinstance(item, str | int | float | bool):
            raise ValidationError(
                _("The value of %(key)s must be a string, number or boolean."),
                params={"key": key},
            )


def validate_authorize_params(value: Any) -> None:
    """Extra authorization request parameters: a flat JSON object, no protocol names."""
    _validate_params(value, AUTHORIZE_PROTOCOL_PARAMS)


def validate_token_params(value: Any) -> None:
    """Extra token request parameters: a flat JSON object, no protocol names."""
    _validate_params(value, TOKEN_PROTOCOL_PARAMS)


def validate_provider_options(value: Any) -> None:
    """Per-client quirks: known vocabulary keys only, each of the right type."""
    from .providers.options import OptionError, validate_options

    try:
        validate_options(value)
    except OptionError as exc:
        raise ValidationError(str(exc)) from None


class TokenAuthMethod(models.TextChoices):
    """How the client authenticates at the token endpoint (RFC 6749 §2.3.1)."""

    CLIENT_SECRET_BASIC = "client_secret_basic", _("HTTP Basic (client_secret_basic)")
    CLIENT_SECRET_POST = (
        "client_secret_post",
        _("In the request body (client_secret_post)"),
    )
    NONE = "none", _("None: public client")


def _token_server(client: OAuth2Client) -> str:
    """Origin of the token endpoint the client resolves to (its own, else its
    profile's, templates filled), or of its own field when it does not resolve."""
    from .exceptions import OAuth2IntegratorError
    from .providers.config import configure

    try:
        return _origin(configure(client, hooks=False).token_endpoint)
    except (OAuth2IntegratorError, ValueError, TypeError):
        return _origin(client.token_endpoint)


class OAuth2Client(models.Model):
    """One registration of this site at an authorization server."""

    name = models.SlugField(
        unique=True,
        help_text=_("The key host code passes to get_access_token()."),
    )
    display_name = models.CharField(max_length=200, blank=True)
    provider = models.CharField(
        max_length=50,
        choices=provider_choices,
        default="generic",
        help_text=_(
            "Provider profile: fills endpoints and handles the provider's quirks."
        ),
    )
    client_id = models.CharField(max_length=500)
    client_secret = EncryptedTextField(blank=True, tolerate_undecryptable=True)
    # validators.py: no credentials in a URL, no plain http:// outside loopback.
    # Blank: from the provider profile (or OpenID Connect discovery).
    authorization_endpoint = models.URLField(
        max_length=2000, blank=True, validators=[validate_endpoint_url]
    )
    token_endpoint = models.URLField(
        max_length=2000, blank=True, validators=[validate_endpoint_url]
    )
    revocation_endpoint = models.URLField(
        max_length=2000, blank=True, validators=[validate_endpoint_url]
    )
    issuer = models.CharField(
        max_length=2000,
        blank=True,
        validators=[validate_no_userinfo],
        help_text=_("When set, the callback's iss parameter must match it (RFC 9207)."),
    )
    redirect_uri = models.URLField(
        max_length=2000,
        blank=True,
        validators=[validate_endpoint_url],
        help_text=_("Leave blank to use this site's callback URL for the client."),
    )
    scope = models.TextField(
        blank=True, help_text=_("Space-separated scopes to request.")
    )
    token_auth_method = models.CharField(
        max_length=32,
        choices=TokenAuthMethod.choices,
        default=TokenAuthMethod.CLIENT_SECRET_BASIC,
    )
    use_pkce = models.BooleanField(
        default=True, help_text=_("Send a PKCE S256 code challenge (RFC 7636).")
    )
    extra_authorize_params = models.JSONField(
        default=dict, blank=True, validators=[validate_authorize_params]
    )
    extra_token_params = models.JSONField(
        default=dict, blank=True, validators=[validate_token_params]
    )
    provider_options = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_provider_options],
        help_text=_(
            "Quirks of the provider for this client, overriding the profile's "
            '(e.g. {"url_values": {"tenant": "contoso"}}); see docs/providers.md.'
        ),
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("OAuth2 client")
        verbose_name_plural = _("OAuth2 clients")
        ordering = ["name"]
        permissions = [("authorize", _("Can authorize OAuth2 clients (start a login)"))]

    def __str__(self) -> str:
        return self.display_name or self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        moved_from = self._token_server_moved_from()
        super().save(*args, **kwargs)
        if moved_from:
            self._retire_tokens(moved_from)

    def clean(self) -> None:
        """Rules across fields, shared by the admin form and the import.

        A public client (no secret) without PKCE lets anyone who intercepts the
        authorization code redeem it: RFC 9700 §2.1.1 requires PKCE for it.
        """
        super().clean()
        if self.token_auth_method == TokenAuthMethod.NONE and not self.use_pkce:
            raise ValidationError(
                {
                    "use_pkce": _(
                        "PKCE is required for a public client (token endpoint "
                        "authentication “None”, RFC 9700): without a secret, PKCE "
                        "is what stops an intercepted code from being redeemed. "
                        "Turn PKCE on, or give the client a secret."
                    )
                }
            )
        from .providers.config import validate_client
        from .providers.options import OptionError, validate_options

        try:
            validate_options(self.provider_options)
        except OptionError:
            return  # the field's own validator says why

        validate_client(self)

    def _token_server_moved_from(self) -> str:
        """The old token server (scheme://host:port) when this save changes it.

        Tokens belong to the server that issued them: sending a refresh token (and
        the client secret) to another one would hand them to whoever runs it, for
        instance after a mistyped or malicious endpoint change in the admin.
        """
        if self.pk is None:
            return ""
        stored = OAuth2Client.objects.defer("client_secret").filter(pk=self.pk).first()
        if stored is None:
            return ""
        before, after = _token_server(stored), _token_server(self)
        return "" if before == after else before

    def _retire_tokens(self, old_server: str) -> None:
        message = (
            f"The token endpoint moved from {old_server} to "
            f"{_token_server(self)}: tokens issued by the old server are "
            "never sent to the new one. Re-authorize the client."
        )
        self.tokens.filter(status=TokenStatus.ACTIVE).update(
            status=TokenStatus.REAUTHORIZATION_REQUIRED,
            last_error=message,
            last_error_at=timezone.now(),
            last_error_code="token_endpoint_changed",
            next_attempt_at=None,
        )

    @property
    def label(self) -> str:
        return f"{self.display_name} ({self.name})" if self.display_name else self.name

    @property
    def scopes(self) -> list[str]:
        return self.scope.split()

    def current_token(self) -> OAuth2Token | None:
        return self.tokens.filter(account="").first()


class TokenStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    REAUTHORIZATION_REQUIRED = "reauthorization_required", _("Needs re-authorization")
    REVOKED = "revoked", _("Revoked")


class OAuth2Token(models.Model):
    """A client's token set.

    ``account`` is empty for the one token a client has today; it is the seam for
    several accounts per client later, without a rewrite.
    """

    #: The encrypted columns: deferred wherever they are not needed, so that no
    #: key is used (nor needed) to list, scan or describe tokens.
    SECRET_FIELDS = ("access_token", "refresh_token", "extra")

    client = models.ForeignKey(
        OAuth2Client, on_delete=models.CASCADE, related_name="tokens"
    )
    account = models.CharField(max_length=200, blank=True, default="")
    access_token = EncryptedTextField()
    refresh_token = EncryptedTextField(blank=True)
    token_type = models.CharField(max_length=40, blank=True, default="Bearer")
    scope = models.TextField(blank=True, help_text=_("Scope the provider granted."))
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Empty when the provider did not say.")
    )
    obtained_at = models.DateTimeField(default=timezone.now)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=32, choices=TokenStatus.choices, default=TokenStatus.ACTIVE
    )
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error_code = models.CharField(
        max_length=100,
        blank=True,
        help_text=_("OAuth error code of the last failed refresh (invalid_client)."),
    )
    next_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_(
            "No refresh is attempted before this time (after a permanent error, or "
            "backing off after transient ones), unless the client registration "
            "changes or the client is re-authorized."
        ),
    )
    refresh_attempts = models.PositiveIntegerField(
        default=0,
        help_text=_(
            "Transient refresh failures in a row (timeouts, 5xx, 429); each one "
            "doubles the wait before the next attempt. 0 after a success."
        ),
    )
    incident_notified_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_(
            "When the operator was told that this token needs them; cleared when "
            "it works again, so each incident is told once."
        ),
    )
    extra = EncryptedJSONField(
        help_text=_("The rest of the token response (id_token, extras).")
    )
    refresh_token_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When the refresh token dies, when the provider said."),
    )
    provider_values = models.JSONField(
        default=dict,
        blank=True,
        help_text=_(
            "Values kept from the callback and the token response (realmId, "
            "instance_url); not secret."
        ),
    )
    account_name = models.CharField(
        max_length=300,
        blank=True,
        help_text=_("Who the token belongs to, when the provider says."),
    )
    refresh_claim = models.CharField(
        max_length=32,
        blank=True,
        default="",
        editable=False,
        help_text=_(
            "Set while one process refreshes the token (tokens._claim); the others "
            "wait or serve the current token. Empty when nobody refreshes it."
        ),
    )
    refresh_claimed_until = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "A claim older than this was left by a process that died: another may "
            "take it over."
        ),
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("OAuth2 token")
        verbose_name_plural = _("OAuth2 tokens")
        constraints = [
            models.UniqueConstraint(
                fields=["client", "account"], name="oauth2_token_one_per_account"
            )
        ]

    def __str__(self) -> str:
        return f"Token for {self.client_id_label()}"

    def __repr__(self) -> str:
        return f"<OAuth2Token client={self.client_id_label()} status={self.status}>"

    def client_id_label(self) -> str:
        return self.client.name if self.client_id else "?"

    def expires_within(
        self, seconds: float, *, now: datetime.datetime | None = None
    ) -> bool:
        if self.expires_at is None:
            return False
        now = now or timezone.now()
        return self.expires_at <= now + datetime.timedelta(seconds=seconds)

    def needs_refresh(
        self, margin: float, *, now: datetime.datetime | None = None
    ) -> bool:
        """True when the token expires within ``margin`` seconds.

        The margin is capped at half the token's lifetime: with tokens that live five
        minutes (Keycloak's default) and the default five-minute margin, every call
        would otherwise refresh.
        """
        if self.expires_at is None:
            return False
        issued = self.refreshed_at or self.obtained_at
        lifetime = (self.expires_at - issued).total_seconds()
        if lifetime > 0:
            margin = min(margin, lifetime / 2)
        return self.expires_within(margin, now=now)

    @property
    def is_expired(self) -> bool:
        return self.expires_within(0)


class EventKind(models.TextChoices):
    AUTHORIZED = "authorized", _("Authorized")
    REFRESHED = "refreshed", _("Refreshed")
    REFRESH_FAILED = "refresh_failed", _("Refresh failed")
    REAUTHORIZATION_REQUIRED = (
        "reauthorization_required",
        _("Re-authorization required"),
    )
    REVOKED = "revoked", _("Revoked")
    KEYS_ROTATED = "keys_rotated", _("Keys rotated")
    CLIENT_CHANGED = "client_changed", _("Client changed")


class EventOutcome(models.TextChoices):
    OK = "ok", _("OK")
    FAILED = "failed", _("Failed")


class OAuth2Event(models.Model):
    """One line of a client's audit trail (``events.record``); never a secret.

    Written when something happens to a client or its token (a login, a refresh,
    a failure, a revocation, a change of its registration), never for a plain read
    of a token. ``client`` is empty for events about the whole installation (a key
    rotation); ``actor`` is empty when the system acted (a refresh, a command).
    ``actor_name`` keeps the user's name after the user is deleted.
    """

    client = models.ForeignKey(
        OAuth2Client,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="events",
    )
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    outcome = models.CharField(
        max_length=10, choices=EventOutcome.choices, default=EventOutcome.OK
    )
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name = _("OAuth2 event")
        verbose_name_plural = _("OAuth2 events")
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(
                fields=["client", "-created_at"], name="oauth2_event_client_time"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.get_outcome_display()})"


class AuthorizationRequestQuerySet(models.QuerySet["AuthorizationRequest"]):
    def stale(self) -> AuthorizationRequestQuerySet:
        ttl = datetime.timedelta(seconds=app_settings.AUTHORIZATION_REQUEST_TTL)
        return self.filter(created_at__lt=timezone.now() - ttl)


class AuthorizationRequest(models.Model):
    """A login in flight: what the callback needs to finish it, single use.

    Only a hash of ``state`` is stored, so a database reader cannot forge a callback.
    """

    state_hash = models.CharField(max_length=64, unique=True)
    client = models.ForeignKey(OAuth2Client, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, related_name="+"
    )
    session_hash = models.CharField(max_length=64)
    code_verifier = EncryptedTextField(blank=True)
    nonce = models.CharField(max_length=200, blank=True)
    redirect_uri = models.URLField(max_length=2000)
    # 2048: the longest URL Django's url_has_allowed_host_and_scheme() accepts.
    return_url = models.CharField(max_length=2048, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    objects = AuthorizationRequestQuerySet.as_manager()

    class Meta:
        verbose_name = _("pending authorization")

    def __str__(self) -> str:
        return f"Pending authorization for {self.client_id}"

    @property
    def expires_at(self) -> datetime.datetime:
        return self.created_at + datetime.timedelta(
            seconds=app_settings.AUTHORIZATION_REQUEST_TTL
        )
