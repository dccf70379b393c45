"""One refresh against a bare keep-alive ``requests.Session`` post to the same local
endpoint plus the row's save; the same with an endpoint that answers in 20 ms; and
the SQL statements a refresh runs.

Each call of one kind is followed by one of each other kind, and the medians are
compared: this shared 2-core machine drifts by 10 to 30% within a minute, which
per-block timings (all of one kind, then all of the next) took for differences.

Both of Django's PostgreSQL configurations are measured, for the refresh and the
baseline alike: Django's default (every statement parsed and planned again), and
prepared statements (``OPTIONS: {"server_side_binding": True,
"prepare_threshold": 2}``; Django leaves them off by default for connection
poolers in transaction mode, see the README).

Run on demand: ``.venv/bin/python benchmarks/bench_refresh.py [calls]``
(PostgreSQL scratch database, see ``_scratch.py``; a local HTTP/1.1 token endpoint
in a thread).
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable

from _endpoint import Server, TokenEndpoint
from _scratch import scratch_postgres, setup_django

WARM_UP = 200


def interleaved(funcs: dict[str, Callable[[], None]], calls: int) -> dict[str, float]:
    """Median microseconds per call of each, the calls taken in turn."""
    for _ in range(WARM_UP):
        for func in funcs.values():
            func()
    times: dict[str, list[float]] = {label: [] for label in funcs}
    clock = time.perf_counter
    for _ in range(calls):
        for label, func in funcs.items():
            start = clock()
            func()
            times[label].append(clock() - start)
    return {label: statistics.median(t) * 1e6 for label, t in times.items()}


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    server = Server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = server.url
    results: dict[str, dict[str, float]] = {}
    with scratch_postgres() as database:
        setup_django(database)
        import requests
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from oauth2_integrator.models import OAuth2Token
        from oauth2_integrator.testutils import connect_client
        from oauth2_integrator.tokens import refresh_access_token

        connect_client(
            "bench",
            refresh_token="r" * 60,
            token_endpoint=url,
            token_auth_method="none",
        )
        refresh_access_token("bench")
        session = requests.Session()
        row = OAuth2Token.objects.get(client__name="bench")

        def bare() -> None:
            answer = session.post(
                url,
                data={"grant_type": "refresh_token", "refresh_token": "r" * 60},
                timeout=5,
            ).json()
            row.access_token = answer["access_token"]
            row.save()

        def one_more_round_trip() -> None:
            # Any single-flight refresh sends at least one statement more than the
            # bare save (its claim); this is the cheapest statement there is.
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            bare()

        def ours() -> None:
            refresh_access_token("bench")

        funcs = {"bare": bare, "round trip": one_more_round_trip, "ours": ours}
        results["default"] = interleaved(funcs, calls)
        TokenEndpoint.latency = 0.020
        results["20 ms"] = interleaved(
            {"bare": bare, "ours": ours}, max(calls // 20, 25)
        )
        TokenEndpoint.latency = 0.0
        with CaptureQueriesContext(connection) as queries:
            refresh_access_token("bench")
        statements = [q["sql"].split()[0] for q in queries.captured_queries]

        connection.close()
        connection.settings_dict["OPTIONS"].update(
            server_side_binding=True, prepare_threshold=2
        )
        results["prepared"] = interleaved(funcs, calls)
        session.close()
        connection.close()
    server.shutdown()

    print(
        "benchmark: one refresh (PostgreSQL, local keep-alive endpoint, 2-core machine)"
    )
    print(
        "medians of calls taken in turn; target: refresh <= 1.25x the bare post + save"
    )
    for config in ("default", "prepared"):
        got = results[config]
        print(
            f"{config + ':':10s} bare {got['bare']:6.0f} us | one more round trip "
            f"{got['round trip'] / got['bare']:.2f}x | refresh_access_token "
            f"{got['ours']:6.0f} us, {got['ours'] / got['bare']:.2f}x"
        )
    near = results["20 ms"]
    print(
        f"20 ms endpoint (default): {near['ours']:.0f} us vs {near['bare']:.0f} us, "
        f"{near['ours'] / near['bare']:.2f}x"
    )
    print(
        f"SQL statements per refresh: {len(statements)} "
        f"({', '.join(statements)}) (target <= 4)"
    )


if __name__ == "__main__":
    main()
