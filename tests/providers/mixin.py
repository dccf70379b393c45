"""One suite for every built-in provider: login -> callback -> code exchange -> refresh.

Each provider's test module is this mixin plus the provider's documented formats
as class attributes (allauth's ``OAuth2TestsMixin`` idea): the exact authorization
URL parameters, the token and refresh requests (method, URL, headers, body,
client authentication) and what the app stores from the documented answers. The
login and the callback go through the real views with Django's test client; only
the provider's endpoints are mocked (``responses``).
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses
from django.test import Client
from django.utils import timezone

from oauth2_integrator import get_access_token, get_token_values
from oauth2_integrator.models import OAuth2Client, OAuth2Token, TokenStatus

CLIENT_ID = "documented-client-id-1234"
CLIENT_SECRET = "documented-client-secret-5678-abcd"
CODE = "documented-authorization-code-9999"
STORED_REFRESH = "stored-refresh-token-for-provider-0000"
CALLBACK = "http://testserver/oauth2/acme/callback/"

#: Placeholders a test may put in its expected bodies, filled in by the mixin.
PLACEHOLDERS = {
    "<client_id>": CLIENT_ID,
    "<client_secret>": CLIENT_SECRET,
    "<code>": CODE,
    "<redirect_uri>": CALLBACK,
    "<refresh_token>": STORED_REFRESH,
}


def _fill(value: Any) -> Any:
    if isinstance(value, str):
        return PLACEHOLDERS.get(value, value)
    if isinstance(value, dict):
        return {k: _fill(v) for k, v in value.items()}
    return value


class ProviderFlowTests:
    """Subclass as ``class TestGoogle(ProviderFlowTests)`` and fill the attributes."""

    #: The catalog key.
    provider: ClassVar[str]
    #: Extra fields of the client registration (``provider_options``, scope, ...).
    client_fields: ClassVar[dict[str, Any]] = {}

    # --- the authorization request -------------------------------------------------
    #: The authorization endpoint, without the query.
    authorization_endpoint: ClassVar[str]
    #: Every query parameter except ``state``, ``code_challenge`` and
    #: ``code_challenge_method``, ``nonce`` (checked separately), exactly.
    authorize_params: ClassVar[dict[str, str]]
    #: The documented answer of the profile's userinfo endpoint, when it has one.
    userinfo_response: ClassVar[dict[str, Any]] = {}
    #: The account name stored from it ("" when the answer names none).
    stored_account_name: ClassVar[str] = ""
    #: Whether a PKCE S256 challenge is sent.
    pkce: ClassVar[bool] = True
    #: Extra callback parameters the provider adds next to code and state.
    callback_params: ClassVar[dict[str, str]] = {}
    #: The callback parameter that carries the code.
    code_param: ClassVar[str] = "code"

    # --- the code exchange -----------------------------------------------------------
    token_method: ClassVar[str] = "POST"
    token_url: ClassVar[str]
    #: The request body (form or JSON, see ``token_body_format``) without
    #: ``code_verifier``; placeholders such as ``<code>`` are filled in.
    token_body: ClassVar[dict[str, Any]]
    token_body_format: ClassVar[str] = "form"
    #: "basic" (HTTP Basic with the client id and secret) or "body"/"none".
    token_auth: ClassVar[str] = "body"
    #: Headers that must be on the token request (name -> value).
    token_headers: ClassVar[dict[str, str]] = {}
    #: The documented answer: a dict (JSON) or a string (form-encoded).
    token_response: ClassVar[dict[str, Any] | str]
    token_response_status: ClassVar[int] = 200
    #: Further documented answers the exchange leads to, as (method, URL, answer):
    #: Instagram trades the short-lived token for a long-lived one at once.
    follow_up_answers: ClassVar[list[tuple[str, str, Any]]] = []
    #: What is stored after the exchange.
    stored_access_token: ClassVar[str]
    stored_refresh_token: ClassVar[str]  # "" when the provider gives none
    #: Seconds until expiry, or None when the token has no expiry.
    stored_expires_in: ClassVar[int | None]
    stored_scope: ClassVar[str | None] = None
    stored_values: ClassVar[dict[str, Any]] = {}

    # --- the refresh (None: the provider has no refresh tokens) --------------------
    refresh_method: ClassVar[str] = "POST"
    refresh_url: ClassVar[str | None] = None
    refresh_body: ClassVar[dict[str, Any]] = {}
    refresh_auth: ClassVar[str] = "body"
    #: Headers that must be on the refresh request (name -> value).
    refresh_headers: ClassVar[dict[str, str]] = {}
    refresh_response: ClassVar[dict[str, Any] | str | None] = None
    #: True when the access token itself is renewed (no refresh token: Facebook).
    renewal: ClassVar[bool] = False
    #: The refresh token kept after the refresh ("": the stored one stays).
    refreshed_refresh_token: ClassVar[str] = ""
    refreshed_access_token: ClassVar[str] = ""

    # --- a documented error answer to the code exchange ----------------------------
    error_status: ClassVar[int] = 400
    error_response: ClassVar[dict[str, Any] | str | None] = None

    # ---------------------------------------------------------------- fixtures

    @pytest.fixture
    def endpoint(self, secret_values: Any) -> Iterator[responses.RequestsMock]:
        for value, label in (
            (CLIENT_SECRET, "client secret"),
            (CODE, "code"),
            (STORED_REFRESH, "refresh token"),
        ):
            secret_values.add(value, label)
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            yield mock

    @pytest.fixture
    def client(self, db: Any) -> OAuth2Client:
        fields = {
            "name": "acme",
            "provider": self.provider,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            **self.client_fields,
        }
        from oauth2_integrator import providers

        profile = providers.get(self.provider)
        fields.setdefault("token_auth_method", profile.token_auth_method)
        fields.setdefault("use_pkce", profile.use_pkce)
        return OAuth2Client.objects.create(**fields)

    @pytest.fixture
    def browser(self, operator_client: Client, client: OAuth2Client) -> Client:
        return operator_client

    # ---------------------------------------------------------------- helpers

    def login(self, browser: Client) -> dict[str, str]:
        response = browser.post("/oauth2/acme/login/")
        assert response.status_code == 302, response.content
        location = response["Location"]
        parts = urlsplit(location)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
            self.authorization_endpoint
        )
        return dict(parse_qsl(parts.query, keep_blank_values=True))

    def answer(
        self,
        mock: responses.RequestsMock,
        method: str,
        url: str,
        body: Any,
        status: int = 200,
    ) -> None:
        if isinstance(body, str):
            mock.add(
                method,
                url,
                body=body,
                status=status,
                content_type="application/x-www-form-urlencoded",
            )
        else:
            mock.add(method, url, json=body, status=status)

    def call_back(self, browser: Client, query: dict[str, str]) -> Any:
        params = {
            "state": query["state"],
            self.code_param: CODE,
            **self.callback_params,
        }
        return browser.get("/oauth2/acme/callback/", params)

    @staticmethod
    def sent_body(call: Any, body_format: str, method: str) -> dict[str, Any]:
        request = call.request
        if method == "GET":
            return dict(parse_qsl(urlsplit(request.url).query))
        body = request.body or b""
        if isinstance(body, bytes):
            body = body.decode()
        if body_format == "json":
            assert request.headers["Content-Type"].startswith("application/json")
            return dict(json.loads(body))
        return dict(parse_qsl(body))

    @staticmethod
    def check_auth(call: Any, kind: str) -> None:
        header = call.request.headers.get("Authorization")
        if kind == "basic":
            assert header and header.startswith("Basic ")
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            assert (user, password) == (CLIENT_ID, CLIENT_SECRET)
        else:
            assert header is None

    def connect(self, browser: Client, endpoint: responses.RequestsMock) -> OAuth2Token:
        query = self.login(browser)
        self.answer(endpoint, self.token_method, self.token_url, self.token_response)
        for method, url, answer in self.follow_up_answers:
            self.answer(endpoint, method, url, answer)
        userinfo = self.userinfo_url()
        if userinfo:
            self.answer(endpoint, "GET", userinfo, self.userinfo_response)
        response = self.call_back(browser, query)
        assert response.status_code == 302, response.content
        return OAuth2Token.objects.get()

    def userinfo_url(self) -> str:
        """The profile's userinfo endpoint, when a login asks it for the account."""
        from oauth2_integrator import providers

        profile = providers.get(self.provider)
        if profile.account_fields and profile.userinfo_endpoint:
            return str(profile.userinfo_endpoint)
        return ""

    def provider_calls(self, endpoint: responses.RequestsMock) -> list[Any]:
        """The calls to the token endpoints, without the userinfo lookup."""
        userinfo = self.userinfo_url()
        return [
            call
            for call in endpoint.calls
            if not (userinfo and call.request.url.split("?")[0] == userinfo)
        ]

    # ------------------------------------------------------------------- tests

    def test_authorization_url(self, browser: Client) -> None:
        query = self.login(browser)
        assert query.pop("state")
        challenge = query.pop("code_challenge", None)
        method = query.pop("code_challenge_method", None)
        query.pop("nonce", None)
        if self.pkce:
            assert challenge and method == "S256"
        else:
            assert challenge is None and method is None
        assert query == _fill(self.authorize_params)

    def test_code_exchange_request_and_what_is_stored(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        before = timezone.now()
        token = self.connect(browser, endpoint)
        calls = self.provider_calls(endpoint)
        assert len(calls) == 1 + len(self.follow_up_answers)
        call = calls[0]
        assert call.request.method == self.token_method
        assert call.request.url.split("?")[0] == self.token_url
        body = self.sent_body(call, self.token_body_format, self.token_method)
        assert bool(body.pop("code_verifier", None)) == self.pkce
        assert body == _fill(self.token_body)
        self.check_auth(call, self.token_auth)
        for name, value in self.token_headers.items():
            assert call.request.headers.get(name) == value

        assert token.status == TokenStatus.ACTIVE
        assert token.access_token == self.stored_access_token
        assert token.refresh_token == self.stored_refresh_token
        assert token.token_type == "Bearer"
        if self.stored_expires_in is None:
            assert token.expires_at is None
        else:
            expected = before + datetime.timedelta(seconds=self.stored_expires_in)
            assert abs((token.expires_at - expected).total_seconds()) < 5
        if self.stored_scope is not None:
            assert token.scope == self.stored_scope
        assert get_token_values("acme") == self.stored_values
        assert token.account_name == self.stored_account_name
        assert get_access_token("acme") == self.stored_access_token

    def test_refresh_request_and_what_is_stored(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        if self.refresh_response is None:
            pytest.skip(f"{self.provider} has no refresh or renewal")
        token = self.connect(browser, endpoint)
        if self.renewal:
            # Renewed with the access token itself, while it is still valid: a
            # long-lived token a minute before it dies.
            token.expires_at = timezone.now() + datetime.timedelta(seconds=60)
            token.obtained_at = timezone.now() - datetime.timedelta(days=59)
        else:
            token.refresh_token = STORED_REFRESH
            token.expires_at = timezone.now() - datetime.timedelta(seconds=5)
        token.save()
        endpoint.calls.reset()
        assert self.refresh_url
        self.answer(
            endpoint, self.refresh_method, self.refresh_url, self.refresh_response
        )

        assert get_access_token("acme") == self.refreshed_access_token

        [call] = endpoint.calls
        assert call.request.method == self.refresh_method
        assert call.request.url.split("?")[0] == self.refresh_url
        body = self.sent_body(call, self.token_body_format, self.refresh_method)
        assert body == _fill({**self.refresh_body})
        self.check_auth(call, self.refresh_auth)
        for name, value in self.refresh_headers.items():
            assert call.request.headers.get(name) == value
        fresh = OAuth2Token.objects.get()
        assert fresh.status == TokenStatus.ACTIVE
        assert fresh.access_token == self.refreshed_access_token
        assert fresh.refresh_token == (
            self.refreshed_refresh_token or token.refresh_token
        )

    def test_a_documented_error_stores_nothing(
        self, browser: Client, endpoint: responses.RequestsMock
    ) -> None:
        if self.error_response is None:
            pytest.skip("no documented error format")
        query = self.login(browser)
        self.answer(
            endpoint,
            self.token_method,
            self.token_url,
            self.error_response,
            status=self.error_status,
        )
        response = self.call_back(browser, query)
        assert response.status_code == 400
        assert not OAuth2Token.objects.exists()
