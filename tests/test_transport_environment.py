"""Proxies, CA bundle and netrc from the environment, as requests takes them.

``transport`` reads the environment once per thread's session for a host (and again
when a variable that decides it changes) instead of on every request: what goes
out must be what requests' own ``trust_env`` lookups would have sent.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from oauth2_integrator import transport

from .raw_http import read_request

URL = "https://provider.test/oauth/token"
PLAIN_URL = "http://provider.test/oauth/token"
FORM = {"grant_type": "refresh_token", "refresh_token": "r-123"}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """No proxy, bundle or netrc from the machine running the tests; fresh sessions."""
    for name in transport._ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    transport.close_sessions()
    yield monkeypatch
    transport.close_sessions()


def sent(url: str, call: Any) -> dict[str, Any]:
    """What reached the adapter: proxies, verify and the Authorization header."""
    with responses.RequestsMock() as mock:
        mock.post(url, json={"access_token": "a"})
        call()
        request = mock.calls[0].request
    return {
        "proxies": request.req_kwargs["proxies"],
        "verify": request.req_kwargs["verify"],
        "authorization": request.headers.get("Authorization"),
    }


def ours(url: str) -> dict[str, Any]:
    return sent(url, lambda: transport.post(url, data=FORM))


def requests_own(url: str) -> dict[str, Any]:
    """A plain session, trusting the environment on every request."""
    with requests.Session() as session:
        return sent(url, lambda: session.post(url, data=FORM, allow_redirects=False))


CASES: list[tuple[str, dict[str, str], str]] = [
    ("nothing set", {}, URL),
    ("HTTPS_PROXY", {"HTTPS_PROXY": "http://proxy.test:3128"}, URL),
    (
        "lower case wins",
        {"HTTPS_PROXY": "http://upper.test:1", "https_proxy": "http://lower.test:2"},
        URL,
    ),
    ("ALL_PROXY", {"ALL_PROXY": "http://all.test:3128"}, URL),
    (
        "NO_PROXY names the host",
        {"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": "provider.test"},
        URL,
    ),
    (
        "NO_PROXY names another host",
        {"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": "other.test"},
        URL,
    ),
    ("HTTP_PROXY, http", {"HTTP_PROXY": "http://proxy.test:3128"}, PLAIN_URL),
    (
        "HTTP_PROXY in a CGI request",
        {"HTTP_PROXY": "http://proxy.test:3128", "REQUEST_METHOD": "GET"},
        PLAIN_URL,
    ),
    ("REQUESTS_CA_BUNDLE", {"REQUESTS_CA_BUNDLE": "/etc/ssl/bundle.pem"}, URL),
    ("CURL_CA_BUNDLE", {"CURL_CA_BUNDLE": "/etc/ssl/curl.pem"}, URL),
]


def test_the_same_as_requests_trusting_the_environment(environment, tmp_path):
    """One after the other in this thread: each change of a variable is seen by the
    session that already cached the environment for this host."""
    for label, variables, url in CASES:
        for name in transport._ENVIRONMENT:
            if name != "HOME":
                environment.delenv(name, raising=False)
        for name, value in variables.items():
            environment.setenv(name, value)
        assert ours(url) == requests_own(url), label
    netrc = tmp_path / "netrc"
    netrc.write_text("machine provider.test login someone password pa55\n")
    environment.setenv("NETRC", str(netrc))
    expected = requests_own(URL)
    assert expected["authorization"] is not None
    assert ours(URL) == expected


def test_the_environment_is_read_once_per_session(environment, monkeypatch):
    reads: list[str] = []
    original = requests.utils.get_environ_proxies

    def counting(url: str, no_proxy: Any = None) -> dict[str, str]:
        reads.append(url)
        return original(url, no_proxy)

    monkeypatch.setattr(requests.utils, "get_environ_proxies", counting)
    environment.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    for _ in range(3):
        assert ours(URL)["proxies"] == {"https": "http://proxy.test:3128"}
    assert len(reads) == 1
    environment.setenv("NO_PROXY", "provider.test")
    assert ours(URL)["proxies"] == {}
    assert len(reads) == 2


def test_a_request_goes_through_the_proxy_in_the_environment(environment):
    """Over real sockets: the proxy gets the absolute URL and answers for the host."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def proxy() -> None:
        conn, _ = listener.accept()
        with conn:
            head, _, _ = read_request(conn)
            seen.append(head.split(b"\r\n")[0])
            body = b'{"access_token": "via-proxy"}'
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )

    thread = threading.Thread(target=proxy, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    environment.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    try:
        response = transport.post("http://provider.invalid/token", data=FORM)
    finally:
        thread.join(5)
        listener.close()
    assert response.json() == {"access_token": "via-proxy"}
    assert seen == [b"POST http://provider.invalid/token HTTP/1.1"]


@pytest.mark.parametrize("configured", [True, None])
def test_tls_is_verified_unless_turned_off(environment, settings, configured):
    """``VERIFY_TLS`` None is requests' default, True (``Session.request`` merged it
    with the session's own; ``transport`` sends the prepared request itself)."""
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "VERIFY_TLS": configured,
    }
    assert ours(URL)["verify"] is True
    environment.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/bundle.pem")
    assert ours(URL)["verify"] == "/etc/ssl/bundle.pem"
    settings.OAUTH2_INTEGRATOR = {**settings.OAUTH2_INTEGRATOR, "VERIFY_TLS": False}
    assert ours(URL)["verify"] is False
