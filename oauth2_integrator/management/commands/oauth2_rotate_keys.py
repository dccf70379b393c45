"""``manage.py oauth2_rotate_keys``: re-encrypt every stored secret with the first key.

A thin wrapper around :func:`oauth2_integrator.rotation.rotate_keys`.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...exceptions import OAuth2IntegratorError
from ...rotation import DEFAULT_BATCH_SIZE, rotate_keys


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (client secrets, tokens, PKCE verifiers) with "
        "the first key of OAUTH2_INTEGRATOR['ENCRYPTION_KEYS']. Run it after putting a "
        "new key first; drop the old key only once this reports everything current."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=_positive,
            default=DEFAULT_BATCH_SIZE,
            help=f"Rows per transaction (default {DEFAULT_BATCH_SIZE}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = rotate_keys(batch_size=options["batch_size"])
        except OAuth2IntegratorError as exc:
            raise CommandError(str(exc)) from None

        width = max((len(field.label) for field in report.fields), default=0)
        for field in report.fields:
            line = (
                f"{field.label:<{width}}  {field.reencrypted} re-encrypted, "
                f"{field.current} already current, {field.empty} empty"
            )
            if field.undecryptable:
                line += f", {len(field.undecryptable)} undecryptable"
            self.stdout.write(line)

        failures = report.undecryptable
        for model, pk, field_name in failures:
            self.stderr.write(
                f"Cannot decrypt {model} pk={pk} field {field_name} with any key; "
                "left unchanged."
            )
        if failures:
            raise CommandError(
                f"{len(failures)} value(s) could not be decrypted with any key in "
                "OAUTH2_INTEGRATOR['ENCRYPTION_KEYS'] and were left unchanged; every "
                "other value was re-encrypted. Add back the key that encrypted them "
                "and run oauth2_rotate_keys again, and do not drop any old key yet."
            )
        if report.reencrypted:
            message = (
                f"Re-encrypted {report.reencrypted} value(s) with the first key; "
                f"{report.current} already current. The other keys can be removed "
                "once every environment sharing this database has the new key."
            )
        else:
            message = (
                f"Every stored secret is already encrypted with the first key "
                f"({report.current} current)."
            )
        self.stdout.write(self.style.SUCCESS(message))
