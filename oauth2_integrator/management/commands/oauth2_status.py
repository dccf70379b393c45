"""``manage.py oauth2_status``: every client and the state of its token, never a secret.

A thin wrapper around :func:`oauth2_integrator.status.rows`.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...status import client_queryset, rows
from ...validators import redact_urls

COLUMNS = (
    ("name", "NAME"),
    ("provider", "PROVIDER"),
    ("enabled", "ENABLED"),
    ("status", "STATUS"),
    ("expires_at", "EXPIRES AT (UTC)"),
    ("refreshed_at", "LAST REFRESH (UTC)"),
    ("last_error", "LAST ERROR"),
)
MAX_ERROR_WIDTH = 60


class Command(BaseCommand):
    help = "Show OAuth2 clients and their token status (no secrets)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "names", nargs="*", metavar="NAME", help="Only these clients."
        )
        parser.add_argument(
            "--json", action="store_true", help="Print a JSON list instead of a table."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        clients = client_queryset()
        names: list[str] = options["names"]
        if names:
            clients = clients.filter(name__in=names)
            missing = sorted(set(names) - {c.name for c in clients})
            if missing:
                raise CommandError(f"No OAuth2 client named {', '.join(missing)}.")
        table = rows(clients)
        for row in table:
            # Errors stored before URLs with credentials were refused may quote one.
            row["last_error"] = redact_urls(row["last_error"])
        if options["json"]:
            self.stdout.write(json.dumps(table, indent=2))
            return
        if not table:
            self.stdout.write(
                "No OAuth2 clients are registered. Add one in the Django admin or "
                "with `manage.py oauth2_import_clients`."
            )
            return
        cells = [[_cell(key, row[key]) for key, _ in COLUMNS] for row in table]
        headers = [title for _, title in COLUMNS]
        widths = [
            max(len(line[i]) for line in [headers, *cells]) for i in range(len(COLUMNS))
        ]
        for line in [headers, *cells]:
            self.stdout.write(
                "  ".join(
                    text.ljust(width) for text, width in zip(line, widths, strict=True)
                ).rstrip()
            )


def _cell(key: str, value: Any) -> str:
    if key == "enabled":
        return "yes" if value else "no"
    if key == "refreshed_at" and not value:
        return "never"
    if not value:
        return "-"
    text = " ".join(str(value).split())
    if key in {"expires_at", "refreshed_at"}:
        # Seconds are noise in a table; the JSON output keeps the full value.
        return text[:16].replace("T", " ")
    if key == "last_error" and len(text) > MAX_ERROR_WIDTH:
        return text[: MAX_ERROR_WIDTH - 1] + "…"
    return text
