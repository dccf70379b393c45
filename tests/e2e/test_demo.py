"""``manage.py demo`` as a newcomer runs it: one command, then Authorize in a browser.

The site and its demo provider are one process and one SQLite database; the
callback's server-side call to the token endpoint is served by runserver's
other threads. The browser is a ``requests.Session``.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from .authserver import REPO_ROOT, free_port, parse_forms, stop_process

pytestmark = pytest.mark.e2e


@dataclass
class DemoSite:
    base_url: str
    env: dict[str, str]
    setup_output: str


def _demo_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        PYTHONUNBUFFERED="1",
    )
    for name in ("OAUTH2_INTEGRATOR_ENCRYPTION_KEYS", "SECRET_KEY", "DEBUG"):
        env.pop(name, None)
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    workdir = tmp_path_factory.mktemp("demo")
    env = _demo_env(workdir)
    port = free_port()
    # Set up twice: the command must be safe to run again.
    outputs = []
    for _ in range(2):
        result = _manage(env, "demo", "--no-serve", "--port", str(port))
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(result.stdout)
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "manage.py"), "demo", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            with contextlib.suppress(requests.RequestException):
                requests.get(base_url + "/admin/login/", timeout=2)
                break
            time.sleep(0.2)
        else:
            pytest.fail("The demo did not start:\n" + log_path.read_text()[-3000:])
        yield DemoSite(base_url=base_url, env=env, setup_output=outputs[-1])
    finally:
        stop_process(server)


def _submit(
    session: requests.Session, page: requests.Response, **extra: str
) -> requests.Response:
    form = parse_forms(page.text)[0]
    action = urljoin(page.url, form.attrs.get("action") or page.url)
    return session.post(
        action, data={**form.fields, **extra}, allow_redirects=False, timeout=30
    )


def _token_block(html: str) -> str:
    found = re.search(r'<dl id="demo-token">(.*?)</dl>', html, re.S)
    assert found, html[:2000]
    return found.group(1)


@pytest.fixture(scope="module")
def operator(demo_site: DemoSite) -> requests.Session:
    """The newcomer, signed in with the printed credentials."""
    output = demo_site.setup_output
    username = re.search(r"Username:\s+(\S+)", output)
    password = re.search(r"Password:\s+(\S+)", output)
    assert username and password, output
    session = requests.Session()
    page = session.get(demo_site.base_url + "/admin/login/?next=/", timeout=10)
    signed_in = _submit(session, page, username=username[1], password=password[1])
    assert signed_in.status_code == 302, "the printed credentials do not work"
    return session


def test_setup_prints_what_a_newcomer_needs(demo_site: DemoSite) -> None:
    output = demo_site.setup_output
    assert f"{demo_site.base_url}/admin/" in output
    assert "Username:" in output and "Password:" in output
    # The generated client secret is handed over internally, never printed.
    assert "secret" not in output.lower()


@pytest.fixture(scope="module")
def connected(demo_site: DemoSite, operator: requests.Session) -> str:
    """Press Authorize and Allow; returns the demo page shown afterwards."""
    # The demo page needs a token; the middleware sends the operator to authorize.
    home = operator.get(demo_site.base_url + "/", allow_redirects=False, timeout=10)
    assert home.status_code == 302
    assert home.headers["Location"] == "/oauth2/demo/login/?next=%2F"
    confirm = operator.get(
        urljoin(demo_site.base_url, home.headers["Location"]), timeout=10
    )
    assert confirm.status_code == 200

    to_provider = _submit(operator, confirm)
    assert to_provider.status_code == 302
    authorize_url = to_provider.headers["Location"]
    assert authorize_url.startswith(demo_site.base_url + "/demo-provider/authorize/?")
    # Same site: the admin session is already signed in at the provider.
    consent = operator.get(authorize_url, timeout=10)
    assert consent.status_code == 200
    assert 'id="authorizationForm"' in consent.text

    back = _submit(operator, consent, allow="Authorize")
    assert back.status_code == 302
    assert back.headers["Location"].startswith(
        demo_site.base_url + "/oauth2/demo/callback/?"
    )
    # The callback calls this same server's token endpoint (runserver is threaded).
    done = operator.get(back.headers["Location"], allow_redirects=False, timeout=30)
    assert done.status_code == 302, done.text[:2000]
    assert done.headers["Location"] == "/"

    page = operator.get(demo_site.base_url + "/", timeout=30)
    assert page.status_code == 200
    return page.text


def test_authorize_consent_and_connected(connected: str) -> None:
    assert "is connected" in connected
    block = _token_block(connected)
    assert re.search(r'id="demo-access-token">\S{4}…\S{4}<', block), block
    assert "you are “admin”" in block  # the provider accepted the token


def test_refresh_now_on_the_demo_page(
    demo_site: DemoSite, operator: requests.Session, connected: str
) -> None:
    page = operator.get(demo_site.base_url + "/", timeout=30)
    before = _token_block(page.text)
    refreshed = _submit(operator, page)
    assert refreshed.status_code == 302
    page = operator.get(demo_site.base_url + "/", timeout=30)
    assert "The access token was refreshed." in page.text
    assert _token_block(page.text) != before
