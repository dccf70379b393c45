"""The one strict token server for the tests: a real HTTP server on 127.0.0.1.

It rotates refresh tokens (each is accepted once; a replay revokes the chain, as
RFC 9700 §4.14.2 recommends), so a refresh that is not single-flight shows up as
an ``invalid_grant``. It also revokes a refresh token left unused for
``idle_revoke_after``, can be put into an outage (HTTP 503, optionally with a
``Retry-After``), records every call with the form it posted, keeps every token it
handed out (for the tests that look for them in logs), and serves a protected
``/api`` that accepts only the current access token. Its clock is
``django.utils.timezone.now`` read at each request, so a test that moves time moves
the provider's too.

To keep a refresh in flight, a test either sets ``delay`` (every answer takes that
long, so concurrent callers overlap) or sets ``hold``: then each call sets
``called`` and waits for the test's ``release.set()``, for at most ``HOLD_LIMIT``.
The state changes (rotation, revocation) happen when the call arrives, before the
wait, as on a real provider that is slow to answer.
"""

from __future__ import annotations

import datetime
import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from django.utils import timezone

#: The longest a held answer waits for ``release``: inside the tests' 5 s
#: ``READ_TIMEOUT`` (tests/settings.py), so a test that forgets to release sees a
#: late answer, not a client-side timeout.
HOLD_LIMIT = 4.0

Answer = tuple[int, dict[str, Any], dict[str, str]]


@dataclass
class Call:
    at: datetime.datetime
    form: dict[str, str]
    status: int
    error: str = ""

    @property
    def grant(self) -> str:
        return self.form.get("grant_type", "?")


class RotatingProvider(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        first_refresh_token: str,
        *,
        idle_revoke_after: datetime.timedelta | None = None,
        access_lifetime: int = 3600,
        delay: float = 0.0,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.refresh_token: str | None = first_refresh_token
        self.refresh_used_at = timezone.now()
        self.access_token: str | None = None
        self.access_expires_at = timezone.now()
        self.idle_revoke_after = idle_revoke_after
        self.access_lifetime = access_lifetime
        self.delay = delay
        self.outage = False
        self.retry_after: str | None = None
        self.hold = False
        self.called = threading.Event()
        self.release = threading.Event()
        self.calls: list[Call] = []
        #: Every token handed out, in order: access, refresh, access, refresh, ...
        self.issued: list[str] = []
        self.revoked_for_idleness = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/token"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"

    def answer_token(self, form: dict[str, str]) -> Answer:
        with self.lock:
            answer = self._decide(timezone.now(), form)
        self.called.set()
        if self.hold:
            self.release.wait(HOLD_LIMIT)
        if self.delay:
            time.sleep(self.delay)
        return answer

    def _decide(self, now: datetime.datetime, form: dict[str, str]) -> Answer:
        """The answer to one call, and the state it leaves; under ``self.lock``."""
        if self.outage:
            self.calls.append(Call(now, form, 503))
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return 503, {"error": "temporarily_unavailable"}, headers
        presented = form.get("refresh_token")
        idle = (
            self.idle_revoke_after is not None
            and self.refresh_token is not None
            and now - self.refresh_used_at > self.idle_revoke_after
        )
        if idle:
            self.revoked_for_idleness += 1
            self.refresh_token = None
        if presented is None or presented != self.refresh_token:
            self.refresh_token = None  # a replay revokes the chain
            self.calls.append(Call(now, form, 400, "invalid_grant"))
            return 400, {"error": "invalid_grant"}, {}
        number = len(self.issued) // 2 + 1
        self.refresh_token = f"rotated-refresh-{number:05d}-zzzzzzzz"
        self.refresh_used_at = now
        self.access_token = f"provider-access-{number:05d}-wwwwwwww"
        self.access_expires_at = now + datetime.timedelta(seconds=self.access_lifetime)
        self.issued += [self.access_token, self.refresh_token]
        self.calls.append(Call(now, form, 200))
        body = {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.access_lifetime,
        }
        return 200, body, {}

    def accepts(self, access_token: str) -> bool:
        with self.lock:
            return (
                access_token == self.access_token
                and timezone.now() < self.access_expires_at
            )


class _Handler(http.server.BaseHTTPRequestHandler):
    server: RotatingProvider

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = dict(parse_qsl(self.rfile.read(length).decode()))
        status, body, headers = self.server.answer_token(form)
        self._send(status, body, headers)

    def do_GET(self) -> None:
        header = self.headers.get("Authorization", "")
        ok = header.startswith("Bearer ") and self.server.accepts(header[7:])
        self._send(200 if ok else 401, {"ok": ok}, {})

    def _send(self, status: int, body: dict[str, Any], headers: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def running(provider: RotatingProvider) -> Iterator[RotatingProvider]:
    thread = threading.Thread(target=provider.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        provider.release.set()  # a held answer must not keep shutdown() waiting
        provider.shutdown()
        provider.server_close()
