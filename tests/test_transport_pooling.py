"""Pooled provider connections (issue #7, item 7): each thread keeps one session per
provider host, so a refresh reuses a kept-alive connection, and issue #5's
guarantees hold on it too: the wall-clock deadline watches a reused socket, a
cut-short answer never goes back to the pool, redirects are not followed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from oauth2_integrator import flow, transport
from oauth2_integrator.exceptions import TokenEndpointError

from .raw_http import Listener, read_request
from .test_transport import TOKEN_BYTES, drip, head


class KeepAliveServer(Listener):
    """Answers requests on kept-alive connections, one behaviour per request
    number; counts the TCP connections it accepted."""

    def __init__(self, behaviours: list[str]) -> None:
        self.behaviours = behaviours
        self.served = 0
        self.heads: list[bytes] = []
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(8)
            buffer = b""
            try:
                while not self.stop.is_set():
                    request_head, _, buffer = read_request(conn, buffer)
                    self.heads.append(request_head)
                    behaviour = self.behaviours[
                        min(self.served, len(self.behaviours) - 1)
                    ]
                    self.served += 1
                    self._answer(conn, behaviour)
            except OSError:
                pass

    def _answer(self, conn: socket.socket, behaviour: str) -> None:
        ok = head(
            "HTTP/1.1 200 OK",
            "Content-Type: application/json",
            f"Content-Length: {len(TOKEN_BYTES)}",
        )
        if behaviour == "ok":
            conn.sendall(ok + TOKEN_BYTES)
        elif behaviour == "set-cookie":
            cookie = b"Set-Cookie: provider_session=of-the-first-client; Path=/\r\n"
            conn.sendall(ok[:-2] + cookie + b"\r\n" + TOKEN_BYTES)
        elif behaviour == "drip-headers":
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            drip(conn, self.stop, b"X-Slow: a\r\n", 0.2)
        elif behaviour == "drip-body":
            conn.sendall(
                head(
                    "HTTP/1.1 200 OK",
                    "Content-Type: application/json",
                    "Content-Length: 100000",
                )
            )
            drip(conn, self.stop, b" ", 0.2)
        elif behaviour == "too-large":
            conn.sendall(
                head(
                    "HTTP/1.1 200 OK",
                    "Content-Type: application/json",
                    "Content-Length: 5000",
                )
                + b" " * 5000
            )


@pytest.fixture
def keep_alive() -> Iterator[Any]:
    servers: list[KeepAliveServer] = []

    def start(*behaviours: str) -> KeepAliveServer:
        server = KeepAliveServer(list(behaviours))
        servers.append(server)
        return server

    transport.close_sessions()
    yield start
    transport.close_sessions()
    for server in servers:
        server.close()


def exchange(client: Any) -> flow.TokenSet:
    return flow.exchange_code(
        client,
        code="the-code-123456789",
        redirect_uri="https://x.test/cb",
        code_verifier=None,
    )


def test_requests_to_one_host_share_a_kept_alive_connection(make_client, keep_alive):
    server = keep_alive("ok")
    client = make_client(token_endpoint=server.url)
    for _ in range(3):
        assert exchange(client).access_token
    assert server.served == 3
    assert server.connections == 1


@pytest.mark.parametrize("behaviour", ["drip-headers", "drip-body"])
def test_the_deadline_watches_a_reused_connection(
    make_client, keep_alive, settings, behaviour
):
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "TOKEN_REQUEST_DEADLINE": 1.0,
        "READ_TIMEOUT": 5,
    }
    server = keep_alive("ok", behaviour)
    client = make_client(token_endpoint=server.url)
    exchange(client)  # opens the connection the next request reuses
    started = time.monotonic()
    with pytest.raises(TokenEndpointError, match="did not answer within 1 s"):
        exchange(client)
    assert time.monotonic() - started < 2.5
    assert server.connections == 1  # it really was the reused connection


def test_a_cookie_set_by_a_token_endpoint_is_not_sent_again(make_client, keep_alive):
    """Clients of one provider host share the thread's session: a cookie the
    provider sets in one client's exchange must not ride along with the next
    client's credentials (and no token request needs one)."""
    server = keep_alive("set-cookie", "ok")
    first = make_client(name="first", token_endpoint=server.url)
    second = make_client(name="second", token_endpoint=server.url)
    assert exchange(first).access_token
    assert exchange(second).access_token
    assert server.connections == 1  # the same session and connection
    assert b"provider_session" not in server.heads[1].lower()


def test_a_connection_cut_short_is_not_reused(make_client, keep_alive, settings):
    settings.OAUTH2_INTEGRATOR = {
        **settings.OAUTH2_INTEGRATOR,
        "MAX_RESPONSE_BYTES": 1000,
    }
    server = keep_alive("too-large", "ok")
    client = make_client(token_endpoint=server.url)
    with pytest.raises(TokenEndpointError):
        exchange(client)
    assert exchange(client).access_token
    assert server.connections == 2


def test_each_thread_has_its_own_session():
    url = "http://127.0.0.1:9/token"
    mine = transport._session(url)
    assert transport._session(url) is mine
    assert transport._session("http://127.0.0.1:10/token") is not mine
    theirs: list[Any] = []
    thread = threading.Thread(target=lambda: theirs.append(transport._session(url)))
    thread.start()
    thread.join()
    assert theirs[0] is not mine


# --- the refresh path ----------------------------------------------------------------


def test_refreshes_reuse_the_providers_connection(make_client, make_token, keep_alive):
    from oauth2_integrator.tokens import refresh_access_token

    server = keep_alive("ok")
    client = make_client(token_endpoint=server.url, token_auth_method="none")
    make_token(client)
    for _ in range(3):
        refresh_access_token("acme")
    assert server.served == 3
    assert server.connections == 1


@pytest.mark.postgres
def test_a_refresh_runs_at_most_four_sql_statements(
    make_client, make_token, keep_alive, transactional_db
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from oauth2_integrator.tokens import refresh_access_token

    if connection.vendor != "postgresql":
        pytest.skip("counted on PostgreSQL")
    server = keep_alive("ok")
    client = make_client(token_endpoint=server.url, token_auth_method="none")
    make_token(client)
    with CaptureQueriesContext(connection) as queries:
        refresh_access_token("acme")
    assert len(queries) <= 4, [q["sql"].split()[0] for q in queries]


# --- which pool a request takes --------------------------------------------------


def self_signed(directory: Any) -> tuple[str, str]:
    """A certificate for 127.0.0.1 that no CA signed, and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


class TLSKeepAliveServer(KeepAliveServer):
    """The keep-alive server behind TLS, with a certificate no CA signed."""

    def __init__(self, behaviours: list[str], cert: str, key: str) -> None:
        import ssl

        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        super().__init__(behaviours)
        self.url = f"https://127.0.0.1:{self.port}/oauth/token"

    def handle(self, conn: socket.socket) -> None:
        import ssl

        conn.settimeout(8)
        try:
            wrapped = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):  # the client refused the certificate
            conn.close()
            return
        super().handle(wrapped)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_a_pool_that_skips_tls_checks_is_not_taken_when_they_are_on(
    make_client, keep_alive, settings, tmp_path
):
    """Pools are remembered per URL (``_WatchedAdapter``): the TLS setting is part
    of the choice, so turning ``VERIFY_TLS`` back on never reuses a connection
    made without checking the certificate."""
    server = TLSKeepAliveServer(["ok"], *self_signed(tmp_path))
    try:
        client = make_client(token_endpoint=server.url)
        settings.OAUTH2_INTEGRATOR = {
            **settings.OAUTH2_INTEGRATOR,
            "VERIFY_TLS": False,
        }
        assert exchange(client).access_token
        settings.OAUTH2_INTEGRATOR = {**settings.OAUTH2_INTEGRATOR, "VERIFY_TLS": True}
        with pytest.raises(TokenEndpointError, match=r"(?i)certificate|ssl"):
            exchange(client)
        assert server.served == 1
    finally:
        transport.close_sessions()
        server.close()


def test_a_certificate_trusted_by_the_ca_bundle_setting_is_accepted(
    make_client, keep_alive, settings, tmp_path
):
    cert, key = self_signed(tmp_path)
    server = TLSKeepAliveServer(["ok"], cert, key)
    try:
        client = make_client(token_endpoint=server.url)
        settings.OAUTH2_INTEGRATOR = {**settings.OAUTH2_INTEGRATOR, "VERIFY_TLS": cert}
        for _ in range(2):
            assert exchange(client).access_token
        assert (server.served, server.connections) == (2, 1)
    finally:
        transport.close_sessions()
        server.close()


def test_connections_closed_with_their_session_are_not_used_again(
    make_client, keep_alive
):
    """Closing a session (a worker shutting down, ``close_sessions``) closes the
    pools remembered per URL too: the next request opens a new connection."""
    server = keep_alive("ok")
    client = make_client(token_endpoint=server.url)
    assert exchange(client).access_token
    transport._session(server.url).close()
    assert exchange(client).access_token
    assert (server.served, server.connections) == (2, 2)


def test_a_pool_closed_since_it_was_chosen_is_chosen_again(make_client, keep_alive):
    """urllib3 1.x closes a pool its manager drops (it keeps ten): the pool
    remembered for the URL is then chosen again, never used closed."""
    server = keep_alive("ok")
    client = make_client(token_endpoint=server.url)
    assert exchange(client).access_token
    adapter = transport._session(server.url).get_adapter(server.url)
    (remembered,) = adapter._pools_by_url.values()
    adapter.poolmanager.clear()  # as urllib3 1.x drops it: forgotten and closed
    remembered.close()
    assert exchange(client).access_token
    assert (server.served, server.connections) == (2, 2)
