"""The one place that talks HTTP to providers: timeouts, a total deadline, a size cap,
User-Agent, TLS checks.

requests' timeouts bound each socket operation, not the request: an endpoint that
sends one byte every few seconds never trips them and keeps a callback (or a refresh
holding its claim on the token) busy for as long as it likes. So every request here runs under
a watchdog that shuts the connection's socket down when ``TOKEN_REQUEST_DEADLINE``
passes, wherever the request is (TLS handshake, headers or body), and the body is
read in chunks, decompressed here with a bound, and refused past
``MAX_RESPONSE_BYTES`` counted after decompression: a small gzip bomb never unpacks
whole (issue #5, items 9 and 10).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import heapq
import http.cookiejar
import itertools
import os
import socket
import threading
import time
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar, merge_cookies
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .conf import app_settings

#: Bytes read from the socket at a time; the deadline is checked between chunks.
CHUNK_SIZE = 16 * 1024


class DeadlineExceeded(requests.Timeout):
    """The whole request took longer than ``TOKEN_REQUEST_DEADLINE``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within {seconds:g} s")
        self.seconds = seconds


class ResponseTooLarge(Exception):
    """The answer is longer than ``MAX_RESPONSE_BYTES`` (after decompression)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer longer than {limit} bytes")
        self.limit = limit


class UndecodableResponse(Exception):
    """The body's Content-Encoding is unknown or its compressed data is corrupt."""


def user_agent() -> str:
    from . import __version__

    configured = app_settings.USER_AGENT
    return str(configured) if configured else f"django-oauth2-integrator/{__version__}"


# --- the deadline --------------------------------------------------------------------


class _Deadline:
    """A watchdog that shuts down every socket of one request when time is up.

    It keeps its own duplicate of each socket (``dup()``): shutting that down ends
    the connection for the thread blocked reading the original too, and the
    duplicate stays valid after ``ssl`` wraps (and detaches) the original.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.expired = False
        self.done = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.ends

    def watch(self, sock: socket.socket) -> None:
        try:
            # socket.fromfd, not sock.dup(): an ssl socket refuses dup().
            duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except (OSError, ValueError):
            return
        with self._lock:
            if not self.expired:
                self._sockets.append(duplicate)
                return
        _shut(duplicate)
        duplicate.close()

    def _expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def __enter__(self) -> _Deadline:
        _watchdog.add(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self.done = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()


class _Watchdog:
    """One thread per process that expires every request's deadline when its time
    comes: starting a timer thread per request cost more than a keep-alive request.
    Finished deadlines are dropped when they reach the front of the queue."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, _Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, deadline: _Deadline) -> None:
        with self._cond:
            if self._thread is None or self._pid != os.getpid():
                # First use, or a forked child (threads do not survive a fork).
                self._queue = []
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="oauth2-integrator-deadlines", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._queue, (deadline.ends, next(self._order), deadline))
            if self._queue[0][2] is deadline:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._queue and self._queue[0][2].done:
                        heapq.heappop(self._queue)
                    if self._queue and self._queue[0][0] <= time.monotonic():
                        due = heapq.heappop(self._queue)[2]
                        break
                    self._cond.wait(
                        self._queue[0][0] - time.monotonic() if self._queue else None
                    )
            due._expire()


_watchdog = _Watchdog()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the other side
        sock.shutdown(socket.SHUT_RDWR)


_current_deadline: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar(
    "oauth2_integrator_deadline", default=None
)


def _watch(sock: socket.socket) -> socket.socket:
    deadline = _current_deadline.get()
    if deadline is not None:
        deadline.watch(sock)
    return sock


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _watch(super()._new_conn())


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _watch(super()._new_conn())


class _WatchReused:
    """A kept-alive connection taken from the pool already has its socket: the
    request's deadline watches it too (a new one is watched as it connects)."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        sock = getattr(conn, "sock", None)
        if sock is not None:
            _watch(sock)
        return conn


class _WatchedHTTPConnectionPool(_WatchReused, HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(_WatchReused, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {
    "http": _WatchedHTTPConnectionPool,
    "https": _WatchedHTTPSConnectionPool,
}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter, with connections the deadline can see (proxies too)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self._pools_by_url: dict[tuple[Any, ...], Any] = {}
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.ProxyManager):
            # SOCKS proxies keep their own pools: only the between-chunk check.
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Mapping[str, str] | None = None,
        cert: Any = None,
    ) -> Any:
        """requests' choice of pool, remembered per URL and TLS setting while the
        pool is open: requests works it out again for every request (proxy
        selection, URL parsing, the pool key), about a tenth of a kept-alive
        request's CPU. Requests through a proxy are left to requests."""
        if proxies:
            return super().get_connection_with_tls_context(
                request, verify, proxies, cert
            )
        key = (request.url, verify, cert)
        pool = self._pools_by_url.get(key)
        if pool is None or pool.pool is None:  # not seen, or closed since
            pool = super().get_connection_with_tls_context(request, verify, None, cert)
            if len(self._pools_by_url) >= 64:
                self._pools_by_url.clear()
            self._pools_by_url[key] = pool
        return pool

    def close(self) -> None:
        pools, self._pools_by_url = list(self._pools_by_url.values()), {}
        for pool in pools:
            pool.close()
        super().close()

    def build_response(
        self, req: requests.PreparedRequest, resp: Any
    ) -> requests.Response:
        """requests' response, without taking the server's cookies into a jar: our
        sessions keep none (``_NO_COOKIES``), and the jar's parsing of every
        answer's headers cost more than building the rest of the response."""
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = str(req.url)
        response.request = req
        response.connection = self
        return response


# --- pooled sessions ------------------------------------------------------------------

_sessions = threading.local()


@functools.lru_cache(maxsize=256)
def _origin(url: str) -> tuple[str | None, str | None, int | None]:
    """Scheme, host and port: parsed once per URL (a refresh would parse the same
    token endpoint URL every time), for a bounded number of URLs."""
    parts = urllib3.util.parse_url(url)
    return (parts.scheme, parts.host, parts.port)


def _key(url: str) -> tuple[Any, ...]:
    return (os.getpid(), *_origin(url))


def _pool() -> dict[tuple[Any, ...], tuple[requests.Session, dict[str, Any]]]:
    pool: dict[tuple[Any, ...], Any] | None = getattr(_sessions, "by_host", None)
    if pool is None or getattr(_sessions, "pid", None) != os.getpid():
        pool = _sessions.by_host = {}
        _sessions.pid = os.getpid()
    return pool


#: A cookie policy that accepts no cookie (``allowed_domains`` empty).
_NO_COOKIES = http.cookiejar.DefaultCookiePolicy(allowed_domains=[])


def _pooled(url: str) -> tuple[requests.Session, dict[str, Any]]:
    """This thread's session for the URL's host and its environment cache.

    One per thread (a ``requests.Session`` is not thread-safe) and per scheme, host
    and port, created again in a forked child (a Celery prefork worker must not share
    its parent's sockets).
    """
    pool = _pool()
    key = _key(url)
    found = pool.get(key)
    if found is None:
        session = requests.Session()
        # The environment is read by _environment, once per session (see there).
        session.trust_env = False
        # Every client of the host shares this session: a cookie one client's
        # exchange was given must not go out with another's credentials, and no
        # token request needs one.
        session.cookies.set_policy(_NO_COOKIES)
        adapter = _WatchedAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        found = pool[key] = (session, {})
    return found


def _session(url: str) -> requests.Session:
    """This thread's session for the URL's host: its connections are kept alive."""
    return _pooled(url)[0]


def close_sessions() -> None:
    """Close this thread's kept-alive connections (tests, a worker shutting down)."""
    pool = getattr(_sessions, "by_host", None) or {}
    for session, _ in pool.values():
        session.close()
    pool.clear()


# --- the environment ------------------------------------------------------------------

#: What requests' ``trust_env`` reads: the proxy variables (lower case wins, and
#: ``REQUEST_METHOD``, a CGI request, drops ``HTTP_PROXY``), the CA bundle
#: variables and the netrc file (``NETRC``, else ``~/.netrc``).
_ENVIRONMENT = (
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "REQUEST_METHOD",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NETRC",
    "HOME",
)


def _environment(url: str, cache: dict[str, Any]) -> dict[str, Any]:
    """What requests would take from the environment for a request to ``url``:
    ``proxies``, ``ca_bundle`` (replaces ``verify=True``) and ``netrc`` (credentials
    for a request without auth).

    requests looks these up on every request (``Session.trust_env``): its proxy
    lookup walks the whole of ``os.environ`` twice and the netrc lookup stats
    files, more CPU than the rest of a kept-alive request (``bench_sweep.py``).
    They depend only on the host and the environment, so each thread's session
    for the host (``_pooled``) keeps them, and reads them again when one of the
    variables that decide them changes. Not seen until then: a change of the
    netrc file itself, or of a system proxy setting (macOS, Windows) when no
    proxy variable is set.
    """
    get = os.environ.get
    fingerprint = tuple(get(name) for name in _ENVIRONMENT)
    if cache.get("fingerprint") != fingerprint:
        cache.clear()
        cache["fingerprint"] = fingerprint
        # As requests does: the proxies for the prepared URL (an IDNA-encoded
        # host), the netrc entry for the URL as given.
        prepared = requests.PreparedRequest()
        prepared.prepare_url(url, None)
        cache["proxies"] = requests.utils.get_environ_proxies(str(prepared.url))
        cache["ca_bundle"] = get("REQUESTS_CA_BUNDLE") or get("CURL_CA_BUNDLE")
        cache["netrc"] = requests.utils.get_netrc_auth(url)
    return cache


# --- preparing the request ------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _prepared_url(url: str) -> str:
    """``url`` as requests sends it (IDNA host, quoting): the same for every
    request to a token endpoint, so worked out once per URL."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, None)
    return str(prepared.url)


def _prepare(
    session: requests.Session,
    method: str,
    url: str,
    *,
    data: dict[str, str] | None,
    json: dict[str, Any] | None,
    params: dict[str, str] | None,
    headers: dict[str, str],
    auth: Any,
) -> requests.PreparedRequest:
    """The request ``session.request`` would send, prepared for a fraction of its CPU.

    ``Session.request`` merges the session's headers, params, auth, cookies and
    hooks into every request through generic helpers (``merge_setting``,
    ``to_key_val_list``) whose runtime ``Protocol`` checks took about a third of
    the CPU of a whole kept-alive request. Our sessions (``_pooled``) set none of
    these but requests' default headers and the cookie jar, so only those are
    merged here, as ``prepare_request`` merges them. A token request (a form of
    strings, no query parameters, no credentials in the URL) is prepared by
    ``PreparedRequest``'s own steps, with its URL prepared once (``_prepared_url``),
    the form encoded here to the body requests would send (``urlencode`` of the
    values, UTF-8), and the cookie step only when the jar holds any (ours never
    does: ``_NO_COOKIES``); anything else goes through ``PreparedRequest.prepare``.
    ``test_requests_are_prepared_as_requests_prepares_them`` holds the two equal.
    """
    merged = CaseInsensitiveDict(session.headers)
    merged.update(headers)
    for name in [name for name, value in merged.items() if value is None]:
        del merged[name]
    prepared = requests.PreparedRequest()
    form = data is None or all(
        type(k) is str and type(v) is str for k, v in data.items()
    )
    if not form or json is not None or params is not None or "@" in url:
        prepared.prepare(
            method=method.upper(),
            url=url,
            headers=merged,
            data=data,
            json=json,
            params=params,
            auth=auth,
            cookies=merge_cookies(RequestsCookieJar(), session.cookies),
        )
        return prepared
    prepared.prepare_method(method)
    prepared.url = _prepared_url(url)
    body = urlencode(data) if data else None
    if body:
        merged.setdefault("Content-Type", "application/x-www-form-urlencoded")
    prepared.prepare_headers(merged)
    if len(session.cookies):
        prepared.prepare_cookies(merge_cookies(RequestsCookieJar(), session.cookies))
    prepared.prepare_body(body, None)
    if auth:
        prepared.prepare_auth(auth)
    return prepared


# --- reading a bounded body ----------------------------------------------------------


class _Identity:
    def feed(self, data: bytes, room: int) -> bytes:
        return data


class _Inflater:
    """zlib with an output bound per call, so nothing unpacks past the limit.

    Output short of the bound means all input was consumed, so nothing is left
    pending for a flush (zlib's own ``flush()`` would be unbounded).
    """

    def __init__(self, wbits: int, *, raw_fallback: bool = False) -> None:
        self._wbits = wbits
        self._raw_fallback = raw_fallback
        self._started = False
        self._obj = zlib.decompressobj(wbits)

    def feed(self, data: bytes, room: int) -> bytes:
        out = b""
        while data and len(out) < room:
            try:
                out += self._obj.decompress(data, room - len(out))
            except zlib.error:
                if self._started or not self._raw_fallback:
                    raise
                # "deflate" sent as a raw stream, without the zlib header.
                self._raw_fallback = False
                self._wbits = -zlib.MAX_WBITS
                self._obj = zlib.decompressobj(self._wbits)
                continue
            self._started = True
            if not (self._obj.eof and self._obj.unused_data):
                break
            # Another gzip member follows the first one.
            data = self._obj.unused_data
            self._obj = zlib.decompressobj(self._wbits)
        return out


def _decoder(content_encoding: str) -> _Identity | _Inflater:
    codings = [
        c.strip().lower()
        for c in content_encoding.split(",")
        if c.strip() and c.strip().lower() != "identity"
    ]
    if not codings:
        return _Identity()
    if codings in (["gzip"], ["x-gzip"]):
        return _Inflater(16 + zlib.MAX_WBITS)
    if codings == ["deflate"]:
        return _Inflater(zlib.MAX_WBITS, raw_fallback=True)
    shown = ", ".join(c[:20] for c in codings)[:60]
    raise UndecodableResponse(
        f"it used the content encoding {shown!r}, which was not asked for "
        "(only gzip and deflate are accepted)"
    )


def _read_body(response: requests.Response, limit: int, deadline: _Deadline) -> bytes:
    """At most ``limit`` bytes of decoded body, or ResponseTooLarge; never more in memory."""
    declared = response.headers.get("Content-Length", "").strip()
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    if isinstance(decoder, _Identity) and declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(limit)
    body = bytearray()
    try:
        for chunk in response.raw.stream(CHUNK_SIZE, decode_content=False):
            if deadline.passed():
                raise DeadlineExceeded(deadline.seconds)
            body += decoder.feed(chunk, limit + 1 - len(body))
            if len(body) > limit:
                raise ResponseTooLarge(limit)
    except zlib.error as exc:
        raise UndecodableResponse("its compressed data is corrupt") from exc
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.ReadTimeout(str(exc)) from exc
    except urllib3.exceptions.HTTPError as exc:
        raise requests.ConnectionError(str(exc)) from exc
    return bytes(body)


def post(
    url: str,
    *,
    data: dict[str, str],
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> requests.Response:
    """POST a form (see ``request``)."""
    return request("POST", url, data=data, headers=headers, auth=auth)


def get(
    url: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """GET (discovery documents, key sets, GET-style token renewals; see ``request``)."""
    return request("GET", url, params=params, headers=headers)


def request(
    method: str,
    url: str,
    *,
    data: dict[str, str] | None = None,
    json: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> requests.Response:
    """One request to a provider; the answer comes back fully read, within the
    deadline and the cap.

    Raises ``DeadlineExceeded`` (a ``requests.Timeout``), ``ResponseTooLarge``,
    ``UndecodableResponse``, or requests' own exceptions. Redirects are never
    followed: a token request carries the code, the verifier and the client secret.
    """
    seconds = float(app_settings.TOKEN_REQUEST_DEADLINE)
    limit = int(app_settings.MAX_RESPONSE_BYTES)
    merged: dict[str, Any] = {
        "User-Agent": user_agent(),
        "Accept-Encoding": "gzip, deflate",
        **(headers or {}),
    }
    deadline = _Deadline(seconds)
    context = _current_deadline.set(deadline)
    try:
        with deadline:
            session, cache = _pooled(url)
            environment = _environment(url, cache)
            verify = app_settings.VERIFY_TLS
            if verify is True or verify is None:
                # None is the session's default, True, as requests merges it.
                verify = environment["ca_bundle"] or True
            try:
                # The adapter's send, not session.request: see _prepare. With
                # trust_env off, request() would only have merged these settings
                # with the session's own, which are requests' defaults; and
                # session.send adds only what we turn off (cookies, redirects,
                # response hooks: none are set).
                response = session.get_adapter(url).send(
                    _prepare(
                        session,
                        method,
                        url,
                        data=data,
                        json=json,
                        params=params,
                        headers=merged,
                        auth=auth or environment["netrc"],
                    ),
                    timeout=(
                        min(float(app_settings.CONNECT_TIMEOUT), seconds),
                        min(float(app_settings.READ_TIMEOUT), seconds),
                    ),
                    proxies=dict(environment["proxies"]),
                    verify=verify,
                    cert=None,
                    stream=True,
                )
                reusable = False
                try:
                    body = _read_body(response, limit, deadline)
                    reusable = not deadline.passed()
                finally:
                    if reusable:
                        # Read to the end: the connection goes back to the pool.
                        response.raw.release_conn()
                    else:
                        # Cut short (cap, deadline, error): never reused.
                        response.raw.close()
                        response.close()
            except (requests.RequestException, OSError) as exc:
                if deadline.passed():
                    raise DeadlineExceeded(seconds) from exc
                raise
            if deadline.expired:
                # The watchdog cut the body short and the read ended "cleanly".
                raise DeadlineExceeded(seconds)
    finally:
        _current_deadline.reset(context)
    response._content = body
    response._content_consumed = True  # type: ignore[attr-defined]
    return response
