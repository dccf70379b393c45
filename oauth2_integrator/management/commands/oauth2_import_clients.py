"""``manage.py oauth2_import_clients FILE.json``: register clients from a deploy file.

A thin wrapper around :func:`oauth2_integrator.registration.import_clients`.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...exceptions import OAuth2IntegratorError
from ...registration import SECRET_ENV_KEY, import_clients, read_entries


class Command(BaseCommand):
    help = (
        "Create or update OAuth2 clients from a JSON list of objects keyed by "
        "OAuth2Client field names (matched by name; safe to run on every deploy). "
        f'"{SECRET_ENV_KEY}": "VAR" reads the client secret from the environment. '
        "All-or-nothing: if any entry is invalid, nothing is written."
    )
    # Lets tests (and callers) pass a stream for FILE "-".
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help='The JSON file, or "-" for standard input.')
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Validate and report what would change, without writing anything.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: str = options["file"]
        source = "standard input" if path == "-" else path
        try:
            entries = read_entries(path, stdin=options.get("stdin") or sys.stdin)
            outcome = import_clients(entries, dry_run=options["dry_run"])
        except OAuth2IntegratorError as exc:
            raise CommandError(str(exc)) from None

        for name in outcome.created:
            self.stdout.write(f"  created   {name}")
        for name, fields in outcome.updated.items():
            self.stdout.write(f"  updated   {name} ({', '.join(fields)})")
        for name in outcome.unchanged:
            self.stdout.write(f"  unchanged {name}")
        if outcome.dry_run:
            self.stdout.write(
                f"Dry run of {source}, nothing was written; it would have: "
                f"{outcome.summary()}."
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(f"Imported {source}: {outcome.summary()}.")
            )
