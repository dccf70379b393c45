"""Shared by the benchmark scripts: Django set up on a scratch database.

PostgreSQL: ``BENCH_POSTGRES_URL`` (default ``postgres://postgres@127.0.0.1:5432/postgres``)
names a server where the scratch database ``oauth2_bench`` is created, migrated and
dropped afterwards. SQLite: in memory.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
POSTGRES = os.environ.get(
    "BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)
SCRATCH = f"oauth2_bench_{os.getpid()}"  # runs side by side do not collide


def _psql(sql: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@contextlib.contextmanager
def scratch_postgres() -> Iterator[str]:
    """The URL of a fresh scratch database, dropped afterwards."""
    _psql(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
    _psql(f"CREATE DATABASE {SCRATCH}")
    try:
        yield POSTGRES.rsplit("/", 1)[0] + f"/{SCRATCH}"
    finally:
        _psql(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")


def setup_django(database_url: str, **integrator: object) -> None:
    """Django with the test settings on ``database_url``, migrated."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["TEST_DATABASE_URL"] = database_url
    import django
    from django.conf import settings

    django.setup()
    from django.test.utils import override_settings

    merged = {**settings.OAUTH2_INTEGRATOR, **integrator}
    override_settings(OAUTH2_INTEGRATOR=merged, DEBUG=False).enable()
    import logging

    logging.getLogger("oauth2_integrator").setLevel(logging.WARNING)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, run_syncdb=True)
