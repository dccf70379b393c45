"""``refresh_due_tokens`` on many due tokens against a local token endpoint that
takes 20 ms per answer: ``workers=8`` against ``workers=1`` on 1,000 tokens, side by
side in one run, then 10,000 tokens with ``workers=8`` against the 5-minute window.

The endpoint runs in a process of its own, as a real provider runs on another
machine: in a thread of this process its request handling would compete for the
GIL with the workers being measured, and ``workers=8`` would be charged for the
server's CPU time as well as its own.

Run on demand: ``.venv/bin/python benchmarks/bench_sweep.py [tokens] [big]``
(PostgreSQL scratch database, see ``_scratch.py``; ``big=0`` skips the 10,000 run).
"""

from __future__ import annotations

import datetime
import multiprocessing
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from _endpoint import Server, TokenEndpoint
from _scratch import scratch_postgres, setup_django

LATENCY = 0.020
ROUNDS = 2


def serve(port: Connection, latency: float) -> None:
    """The endpoint's process: sends its port back, then serves until killed."""
    TokenEndpoint.latency = latency
    server = Server()
    port.send(server.server_address[1])
    port.close()
    server.serve_forever()


def start_endpoint(latency: float = LATENCY) -> tuple[BaseProcess, str]:
    """The endpoint in its own process ("spawn": nothing of this one is copied)."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=serve, args=(send, latency), daemon=True)
    process.start()
    send.close()
    port = receive.recv()
    return process, f"http://127.0.0.1:{port}/token"


def seed(count: int, url: str) -> None:
    from oauth2_integrator.models import OAuth2Client, OAuth2Token

    OAuth2Token.objects.all().delete()
    OAuth2Client.objects.all().delete()
    OAuth2Client.objects.bulk_create(
        OAuth2Client(
            name=f"client-{n}",
            client_id=f"id-{n}",
            authorization_endpoint="http://127.0.0.1/authorize",
            token_endpoint=url,
            token_auth_method="none",
        )
        for n in range(count)
    )
    OAuth2Token.objects.bulk_create(
        OAuth2Token(client_id=pk, access_token="a" * 180, refresh_token="r" * 60)
        for pk in OAuth2Client.objects.values_list("pk", flat=True)
    )
    make_due()


def make_due() -> None:
    from django.utils import timezone

    from oauth2_integrator.models import OAuth2Token

    now = timezone.now()
    OAuth2Token.objects.update(
        expires_at=now + datetime.timedelta(seconds=60),
        obtained_at=now - datetime.timedelta(hours=1),
        refreshed_at=None,
    )


def sweep(workers: int, expected: int) -> float:
    from oauth2_integrator.sweep import refresh_due_tokens

    make_due()
    start = time.perf_counter()
    report = refresh_due_tokens(workers=workers)
    elapsed = time.perf_counter() - start
    refreshed = sum(1 for o in report.outcomes if o.result == "refreshed")
    if refreshed != expected:
        results = sorted({o.result for o in report.outcomes})
        print(f"  workers={workers}: only {refreshed}/{expected} refreshed ({results})")
    return elapsed


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    big = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    endpoint, url = start_endpoint()
    try:
        run(count, big, url)
    finally:
        endpoint.terminate()
        endpoint.join()


def run(count: int, big: int, url: str) -> None:
    with scratch_postgres() as database:
        setup_django(database)
        from django.db import connections

        seed(count, url)
        # Alternating rounds, the best of each: the machine is shared.
        one = eight = float("inf")
        for _ in range(ROUNDS):
            one = min(one, sweep(1, count))
            eight = min(eight, sweep(8, count))
        print(
            f"benchmark: sweep, {count} due tokens, {LATENCY * 1000:.0f} ms endpoint, "
            "PostgreSQL, 2-core machine"
        )
        print(f"workers=1: {one:7.1f} s ({count / one:6.1f} tokens/s)")
        print(f"workers=8: {eight:7.1f} s ({count / eight:6.1f} tokens/s)")
        print(f"speed-up:  {one / eight:7.2f}x (target >= 5x)")
        if big:
            seed(big, url)
            elapsed = sweep(8, big)
            print(f"{big} due tokens, workers=8: {elapsed:7.1f} s (target <= 300 s)")
        connections.close_all()


if __name__ == "__main__":
    main()
