"""A real django-oauth-toolkit authorization server in its own process, for tests.

It is the example project's demo provider (``example_project``, DOT 3.x), run with
``tests.e2e.authserver_settings`` by ``manage.py runserver --noreload`` on a free
127.0.0.1 port and a temporary SQLite file. The end-to-end tests and the browser
tests share it through the ``authserver`` fixture (tests/e2e/conftest.py).

The provider side of a login (a resource owner signing in and pressing
"Authorize" on DOT's consent page) is driven with a ``requests.Session``; the
browser tests do the same with chromium.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS_MODULE = "tests.e2e.authserver_settings"
PROVIDER_PATH = "/demo-provider"


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server process, killing it if it does not stop within 10 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Application:
    """An application registered at the server, with the plain secret DOT only hashes."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]


@dataclass
class AuthServer:
    """The running server: its URLs, and helpers to register applications and users."""

    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    #: Signs the server's RS256 ID tokens (OIDC_RSA_PRIVATE_KEY), made per session.
    oidc_private_key: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "authserver.log"
        self.oidc_private_key = _rsa_private_key_pem()

    # --- URLs -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        """What DOT sends as RFC 9207 ``iss`` (its metadata issuer: the mount point)."""
        return self.base_url + PROVIDER_PATH

    def url(self, endpoint: str) -> str:
        """``url("token")`` -> http://127.0.0.1:<port>/demo-provider/token/."""
        return f"{self.issuer}/{endpoint}/"

    def client_fields(self, application: Application) -> dict[str, str]:
        """OAuth2Client fields for a client of ``application`` at this server."""
        return {
            "client_id": application.client_id,
            "client_secret": application.client_secret,
            "authorization_endpoint": self.url("authorize"),
            "token_endpoint": self.url("token"),
            "revocation_endpoint": self.url("revoke_token"),
            "issuer": self.issuer,
            "scope": "read write",
        }

    # --- process ----------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE=SETTINGS_MODULE,
            E2E_AUTHSERVER_DB=str(self.workdir / "authserver.sqlite3"),
            PYTHONPATH=os.pathsep.join(
                filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])
            ),
            PYTHONUNBUFFERED="1",
            E2E_OIDC_RSA_PRIVATE_KEY=self.oidc_private_key,
        )
        env.pop("DATABASE_URL", None)
        return env

    def manage(self, *args: str, timeout: float = 120) -> str:
        """Run ``manage.py <args>`` against the server's database; return stdout."""
        result = subprocess.run(
            [sys.executable, str(REPO_ROOT / "manage.py"), *args],
            cwd=REPO_ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"manage.py {args[0]} failed ({result.returncode}):\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def start(self, *, attempts: int = 3, timeout: float = 30) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--noinput", "--verbosity", "0")
        last_error = ""
        for _ in range(attempts):
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [
                        sys.executable,
                        str(REPO_ROOT / "manage.py"),
                        "runserver",
                        f"127.0.0.1:{self.port}",
                        "--noreload",
                        "--skip-checks",
                    ],
                    cwd=REPO_ROOT,
                    env=self.env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_until_up(timeout):
                return
            last_error = self.log_path.read_text(errors="replace")[-3000:]
            self.stop()
        raise RuntimeError(f"The authorization server did not start:\n{last_error}")

    def _wait_until_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(requests.RequestException):
                if (
                    requests.get(self.base_url + "/admin/login/", timeout=2).status_code
                    == 200
                ):
                    return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)

    def log_tail(self, chars: int = 3000) -> str:
        return (
            self.log_path.read_text(errors="replace")[-chars:]
            if self.log_path.exists()
            else ""
        )

    # --- registrations ---------------------------------------------------------------

    def register_application(
        self,
        *,
        client_id: str,
        redirect_uris: list[str],
        username: str | None = None,
        password: str | None = None,
    ) -> Application:
        """Create or update a confidential authorization-code application (and a user).

        Runs ``manage.py demo_provider_setup``, the same code as ``manage.py demo``.
        """
        args = ["demo_provider_setup", "--client-id", client_id]
        for uri in redirect_uris:
            args += ["--redirect-uri", uri]
        if username:
            # "--password=value": a random password may begin with "-", which
            # argparse would read as an option of its own.
            args += ["--username", username, f"--password={password or ''}"]
        answer: dict[str, Any] = json.loads(self.manage(*args).strip().splitlines()[-1])
        return Application(
            client_id=answer["client_id"],
            client_secret=answer["client_secret"],
            redirect_uris=answer["redirect_uris"],
        )

    def enable_oidc(self, client_id: str, *, username: str, email: str) -> None:
        """Let ``client_id`` sign RS256 ID tokens and give ``username`` an e-mail.

        ``demo_provider_setup`` registers plain OAuth 2.0 applications (algorithm
        blank); OpenID Connect needs the application's signing algorithm set.
        """
        script = (
            "from django.contrib.auth import get_user_model\n"
            "from oauth2_provider.models import get_application_model\n"
            f"get_application_model().objects.filter(client_id={client_id!r})"
            ".update(algorithm='RS256')\n"
            f"get_user_model().objects.filter(username={username!r})"
            f".update(email={email!r})\n"
        )
        self.manage("shell", "--no-imports", "-c", script)

    # --- the resource owner's side ----------------------------------------------------

    def sign_in(self, username: str, password: str) -> requests.Session:
        """A browser-like session signed in at the server (its admin login page)."""
        session = requests.Session()
        login_url = self.base_url + "/admin/login/"
        page = session.get(login_url, timeout=10)
        form = parse_forms(page.text)[0]
        data = {**form.fields, "username": username, "password": password}
        answer = session.post(login_url, data=data, allow_redirects=False, timeout=10)
        if answer.status_code != 302:
            raise RuntimeError(
                f"Signing in at the authorization server failed: {answer.status_code}"
            )
        return session

    def consent(
        self, session: requests.Session, authorize_url: str, *, allow: bool = True
    ) -> str:
        """Open the authorization URL and answer DOT's consent form.

        Returns the Location DOT redirects to: the client's redirect URI with
        ``code`` (or ``error``), ``state`` and ``iss``. When DOT refuses the request
        before showing a form (for example without PKCE), that redirect is returned.
        """
        page = session.get(authorize_url, allow_redirects=False, timeout=10)
        if page.status_code in {301, 302, 303}:
            return urljoin(authorize_url, page.headers["Location"])
        if page.status_code != 200:
            raise RuntimeError(f"The consent page answered HTTP {page.status_code}")
        forms = [
            f
            for f in parse_forms(page.text)
            if f.attrs.get("id") == "authorizationForm"
        ]
        if not forms:
            raise RuntimeError(f"No consent form on the page:\n{page.text[:2000]}")
        data = dict(forms[0].fields)
        if allow:
            data["allow"] = "Authorize"
        answer = session.post(page.url, data=data, allow_redirects=False, timeout=10)
        if answer.status_code not in {301, 302, 303}:
            raise RuntimeError(f"The consent form answered HTTP {answer.status_code}")
        return str(answer.headers["Location"])

    # --- RFC 7662 introspection, RFC 7009 revocation -------------------------------------

    def introspect(self, application: Application, token: str) -> dict[str, Any]:
        answer = requests.post(
            self.url("introspect"),
            data={"token": token},
            auth=(application.client_id, application.client_secret),
            timeout=10,
        )
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def revoke(self, application: Application, token: str, hint: str) -> None:
        answer = requests.post(
            self.url("revoke_token"),
            data={"token": token, "token_type_hint": hint},
            auth=(application.client_id, application.client_secret),
            timeout=10,
        )
        answer.raise_for_status()


@dataclass
class Form:
    attrs: dict[str, str]
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(attrs=values))
        elif (
            tag == "input"
            and self.forms
            and values.get("name")
            and values.get("type") not in {"submit", "button"}
        ):
            self.forms[-1].fields[values["name"]] = values.get("value", "")


def parse_forms(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def _rsa_private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def __getattr__(name: str) -> Any:
    """``ClaimsValidator``, made on first use (``OAUTH2_VALIDATOR_CLASS`` of the server).

    Built lazily because it subclasses django-oauth-toolkit's validator, which only
    the server process (where DOT is an installed app) can import.
    """
    if name != "ClaimsValidator":
        raise AttributeError(name)
    from oauth2_provider.oauth2_validators import OAuth2Validator

    class ClaimsValidator(OAuth2Validator):  # type: ignore[misc]
        """DOT's validator, with the standard claims ``email`` (scope email) and
        ``preferred_username`` (scope profile) in ID tokens (OIDC Core §5.1)."""

        def get_additional_claims(self, request: Any) -> dict[str, Any]:
            return {
                "email": request.user.email,
                "preferred_username": request.user.get_username(),
            }

    globals()[name] = ClaimsValidator
    return ClaimsValidator
