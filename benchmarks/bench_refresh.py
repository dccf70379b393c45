"""One refresh against a bare keep-alive ``requests.Session`` post to the same local
endpoint plus the row's save, side by side in one run; the same with an endpoint
that answers in 20 ms; and the SQL statements a refresh runs.

Run on demand: ``.venv/bin/python benchmarks/bench_refresh.py [refreshes]``
(PostgreSQL scratch database, see ``_scratch.py``; a local HTTP/1.1 token endpoint
in a thread).
"""

from __future__ import annotations

import sys
import threading
import time

from _endpoint import Server, TokenEndpoint
from _scratch import scratch_postgres, setup_django

ROUNDS = 7


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    server = Server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = server.url
    with scratch_postgres() as database:
        setup_django(database)
        import requests
        from django.db import connection, connections
        from django.test.utils import CaptureQueriesContext

        from oauth2_integrator.models import OAuth2Event, OAuth2Token
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

        def floor() -> None:
            # What any single-flight refresh with an audit trail must send: read the
            # row, claim it, post, store the answer, write the event.
            with connection.cursor() as cursor:
                cursor.execute("SELECT id FROM oauth2_integrator_oauth2token LIMIT 1")
                cursor.execute(
                    "UPDATE oauth2_integrator_oauth2token SET refresh_claim = 'x' "
                    "WHERE id = %s",
                    [row.pk],
                )
            bare()
            OAuth2Event.objects.create(client_id=row.client_id, kind="refreshed")

        def ours() -> None:
            refresh_access_token("bench")

        best = {"bare": float("inf"), "floor": float("inf"), "ours": float("inf")}
        for _ in range(ROUNDS):
            for label, func in (("bare", bare), ("floor", floor), ("ours", ours)):
                start = time.perf_counter()
                for _ in range(count):
                    func()
                per_call = (time.perf_counter() - start) / count * 1e6
                best[label] = min(best[label], per_call)
        TokenEndpoint.latency = 0.020
        near = {"bare": float("inf"), "ours": float("inf")}
        for _ in range(ROUNDS):
            for label, func in (("bare", bare), ("ours", ours)):
                start = time.perf_counter()
                for _ in range(25):
                    func()
                near[label] = min(near[label], (time.perf_counter() - start) / 25 * 1e6)
        TokenEndpoint.latency = 0.0
        with CaptureQueriesContext(connection) as queries:
            refresh_access_token("bench")
        statements = [q["sql"].split()[0] for q in queries.captured_queries]
        session.close()
        connections.close_all()
    server.shutdown()
    print(
        "benchmark: one refresh (PostgreSQL, local keep-alive endpoint, 2-core machine)"
    )
    print(f"bare Session.post + row save: {best['bare']:8.0f} us")
    print(f"the same + 3 statements:      {best['floor']:8.0f} us (claim, read, event)")
    print(f"refresh_access_token:         {best['ours']:8.0f} us")
    print(
        f"ratio:                        {best['ours'] / best['bare']:8.2f}x (target <= 1.25x)"
    )
    print(
        f"ratio to the 4-statement floor: {best['ours'] / best['floor']:6.2f}x "
        f"(floor to bare: {best['floor'] / best['bare']:.2f}x)"
    )
    print(
        f"with a 20 ms endpoint:        {near['ours']:8.0f} us vs {near['bare']:.0f} us, "
        f"{near['ours'] / near['bare']:.2f}x"
    )
    print(
        f"SQL statements per refresh:   {len(statements)} "
        f"({', '.join(statements)}) (target <= 4)"
    )


if __name__ == "__main__":
    main()
