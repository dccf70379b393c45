"""How much get_access_token costs on the hot path (no refresh), against a bare ORM read.

Run on demand: ``.venv/bin/python benchmarks/bench_get_access_token.py [calls]``.
Prints microseconds per call and the ratio; the overhead over the ORM read is the
client lookup plus Fernet decryption of the stored token (and of the token's extras).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("TEST_DATABASE_URL", "sqlite:///:memory:")

import django

django.setup()

from django.core.management import call_command  # noqa: E402

from oauth2_integrator import get_access_token  # noqa: E402
from oauth2_integrator.models import OAuth2Token  # noqa: E402
from oauth2_integrator.testutils import connect_client  # noqa: E402


def per_call(func: object, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        func()  # type: ignore[operator]
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    call_command("migrate", verbosity=0, run_syncdb=True)
    connect_client("bench", access_token="x" * 180, refresh_token="y" * 60)
    get_access_token("bench")  # warm up

    def bare_read() -> None:
        list(
            OAuth2Token.objects.filter(client__name="bench").values_list(
                "pk", "expires_at"
            )
        )

    orm = per_call(bare_read, calls)
    ours = per_call(lambda: get_access_token("bench"), calls)
    print(f"bare ORM read:     {orm:8.1f} us/call")
    print(f"get_access_token:  {ours:8.1f} us/call")
    print(f"ratio:             {ours / orm:8.2f}x")


if __name__ == "__main__":
    main()
