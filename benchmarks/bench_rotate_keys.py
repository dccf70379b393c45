"""``oauth2_rotate_keys`` on 10,000 clients with tokens (40,000 encrypted values):
bulk updates per batch against one UPDATE per row, side by side in one run.

Run on demand: ``.venv/bin/python benchmarks/bench_rotate_keys.py [clients]``
(PostgreSQL scratch database, see ``_scratch.py``).

Both directions do the same work: the per-row version (the code before issue #7,
kept here as the baseline) rotates every value from key A to key B, then the bulk
version rotates every value back from B to A; repeated twice, best of each.
"""

from __future__ import annotations

import sys
import time

from _scratch import scratch_postgres, setup_django

KEY_A = "8mN0jgvXo8V2v2bqJm0Yl6mS3tC1bJ9i5v1mQ7r0tB4="
KEY_B = "Yv2Z7l0cJbq0mI6yq1V1VbJQ2b3nXK0m0mY6b6t1w1I="


def seed(clients: int) -> None:
    from oauth2_integrator.models import OAuth2Client, OAuth2Token

    OAuth2Client.objects.bulk_create(
        OAuth2Client(
            name=f"client-{n}",
            client_id=f"id-{n}",
            client_secret=f"client-secret-{n:06d}-0123456789abcdef",
            authorization_endpoint="https://auth.example.test/authorize",
            token_endpoint="https://auth.example.test/token",
        )
        for n in range(clients)
    )
    ids = dict(OAuth2Client.objects.values_list("name", "pk"))
    OAuth2Token.objects.bulk_create(
        OAuth2Token(
            client_id=ids[f"client-{n}"],
            access_token=f"access-token-{n:06d}-" + "a" * 160,
            refresh_token=f"refresh-token-{n:06d}-" + "r" * 60,
            extra={"id_token": "i" * 600},
        )
        for n in range(clients)
    )


def per_row_rotate_model(model, fields, reports, batch_size):  # type: ignore[no-untyped-def]
    """oauth2_integrator.rotation._rotate_model before issue #7: one UPDATE a row."""
    from django.db import models, transaction
    from django.db.models.functions import Cast

    from oauth2_integrator.rotation import _UNCHANGED

    def _rotated(field, raw, pk, reports):  # type: ignore[no-untyped-def]
        """The value check before issue #7: the plain value, or ``_UNCHANGED``."""
        from oauth2_integrator import crypto

        if raw is None or raw == "" or crypto.is_current(raw):
            return _UNCHANGED
        reports[field.name].reencrypted += 1
        return field.decode(crypto.decrypt(raw))

    raw_names = {f.name: f"_raw_{f.name}" for f in fields}
    raw_columns = {
        raw_names[f.name]: Cast(f.name, output_field=models.TextField()) for f in fields
    }
    manager = model._default_manager
    last_pk = None
    while True:
        with transaction.atomic(using=manager.db):
            queryset = manager.select_for_update().order_by("pk")
            if last_pk is not None:
                queryset = queryset.filter(pk__gt=last_pk)
            rows = list(
                queryset.annotate(**raw_columns).values("pk", *raw_columns)[:batch_size]
            )
            for row in rows:
                updates = {}
                for f in fields:
                    value = _rotated(f, row[raw_names[f.name]], row["pk"], reports)
                    if value is not _UNCHANGED:
                        updates[f.name] = value
                if updates:
                    manager.filter(pk=row["pk"]).update(**updates)
        if len(rows) < batch_size:
            return
        last_pk = rows[-1]["pk"]


def timed_rotation(keys: list[str], *, per_row: bool) -> tuple[float, int]:
    from django.test.utils import override_settings

    from oauth2_integrator import rotation

    bulk = rotation._rotate_model
    if per_row:
        rotation._rotate_model = per_row_rotate_model
    try:
        with override_settings(
            OAUTH2_INTEGRATOR={"ENCRYPTION_KEYS": keys, "CONNECT_TIMEOUT": 2}
        ):
            start = time.perf_counter()
            report = rotation.rotate_keys()
            return time.perf_counter() - start, report.reencrypted
    finally:
        rotation._rotate_model = bulk


def main() -> None:
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with scratch_postgres() as url:
        setup_django(url, ENCRYPTION_KEYS=[KEY_A])
        seed(clients)
        best_row = best_bulk = float("inf")
        for _ in range(2):
            seconds, count = timed_rotation([KEY_B, KEY_A], per_row=True)
            best_row = min(best_row, seconds)
            seconds, count_bulk = timed_rotation([KEY_A, KEY_B], per_row=False)
            best_bulk = min(best_bulk, seconds)
            assert count == count_bulk == clients * 4, (count, count_bulk)
        from django.db import connections

        connections.close_all()
    print(
        f"benchmark: oauth2_rotate_keys, {clients} clients with tokens "
        f"({clients * 4} values), PostgreSQL, 2-core machine"
    )
    print(f"one UPDATE per row:   {best_row:6.2f} s")
    print(f"bulk per batch:       {best_bulk:6.2f} s")
    print(f"speed-up:             {best_row / best_bulk:6.2f}x (target >= 4x)")


if __name__ == "__main__":
    main()
