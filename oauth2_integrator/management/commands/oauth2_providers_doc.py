"""``manage.py oauth2_providers_doc``: write docs/providers.md from the catalog.

A thin wrapper around :func:`oauth2_integrator.providers.catalog.render_markdown`.
``--check`` writes nothing and fails when the file is missing or out of date (the
test suite runs it, so the page cannot drift from the catalog).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...providers.catalog import render_markdown

#: docs/providers.md of the source checkout this package lives in.
DEFAULT_OUTPUT = Path(__file__).resolve().parents[3] / "docs" / "providers.md"


class Command(BaseCommand):
    help = "Write the providers page of the docs (docs/providers.md) from the catalog."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output",
            type=Path,
            default=DEFAULT_OUTPUT,
            help=f"Where to write the page (default: {DEFAULT_OUTPUT}).",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Write nothing; exit with an error when the page is not current.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        output: Path = options["output"]
        page = render_markdown()
        if options["check"]:
            try:
                current = output.read_text(encoding="utf-8")
            except OSError:
                current = None
            if current != page:
                raise CommandError(
                    f"{output} is not current: run `manage.py oauth2_providers_doc` "
                    "and commit the result."
                )
            self.stdout.write(f"{output} is current.")
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(page, encoding="utf-8")
        self.stdout.write(f"Wrote {output}.")
