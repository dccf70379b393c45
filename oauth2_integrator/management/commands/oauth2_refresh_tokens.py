"""``manage.py oauth2_refresh_tokens``: refresh the due tokens, for cron or a systemd timer.

A thin wrapper around :func:`oauth2_integrator.sweep.refresh_due_tokens`. On a
terminal it draws a progress bar (on stderr); otherwise it prints exactly one
summary line on stdout, and what needs attention on stderr (the logs go there
too). The exit code is 2 when any client needs an operator (re-authorization, a
refused registration, a token about to die), so cron mails and systemd marks the
unit failed; transient failures back off and do not fail the run.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    OutputWrapper,
)

from ... import sweep
from ...models import OAuth2Client
from ...validators import redact_urls

#: Exit code when a client needs an operator (1 is Django's for a usage error).
NEEDS_OPERATOR_EXIT_CODE = 2
BAR_WIDTH = 30


class ProgressBar:
    """``[#####.....] 12/40`` redrawn in place on a terminal; thread-safe."""

    def __init__(self, stream: OutputWrapper) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.drawn = False

    def __call__(self, outcome: sweep.RefreshOutcome, done: int, total: int) -> None:
        with self.lock:
            filled = BAR_WIDTH * done // total if total else BAR_WIDTH
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self.stream.write(
                f"\r[{bar}] {done}/{total} {outcome.name[:30]:<30}", ending=""
            )
            self.stream.flush()
            self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("")
            self.stream.flush()


class Command(BaseCommand):
    help = (
        "Refresh the OAuth2 tokens that expire soon or have been idle for "
        "REFRESH_IDLE_AFTER; exit code 2 when a client needs an operator."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--client", metavar="NAME", help="Only this client's tokens."
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Refresh every token that can be refreshed, due or not "
            "(back-off and permanent errors still hold tokens back).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Say what is due; call no provider and change nothing.",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            metavar="N",
            help="Refresh on N threads (default 1); each uses its own database "
            "connection.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        workers: int = options["workers"]
        if workers < 1:
            raise CommandError("--workers must be 1 or more.")
        name: str | None = options["client"]
        if name is not None and not OAuth2Client.objects.filter(name=name).exists():
            raise CommandError(
                f"There is no OAuth2 client named {name!r}; `manage.py oauth2_status` "
                "lists them."
            )
        bar = ProgressBar(self.stderr) if _isatty(self.stderr) else None
        try:
            report = sweep.refresh_due_tokens(
                client=name,
                force=options["force"],
                dry_run=options["dry_run"],
                workers=workers,
                progress=bar,
            )
        finally:
            if bar is not None:
                bar.close()
        for outcome in report.outcomes:
            if outcome.result in (sweep.NEEDS_OPERATOR, sweep.FAILED):
                label = (
                    "needs an operator"
                    if outcome.result == sweep.NEEDS_OPERATOR
                    else "failed"
                )
                self.stderr.write(
                    f"{_label(outcome)} {label}: {redact_urls(outcome.detail)}"
                )
            elif options["verbosity"] >= 2 and outcome.detail:
                self.stderr.write(
                    f"{_label(outcome)} {outcome.result}: {outcome.detail}"
                )
        self.stdout.write(report.summary())
        if report.needs_operator:
            raise CommandError(
                "At least one OAuth2 client needs an operator (see above); its page "
                "in the Django admin says what to do.",
                returncode=NEEDS_OPERATOR_EXIT_CODE,
            )


def _label(outcome: sweep.RefreshOutcome) -> str:
    return f"{outcome.name} [{outcome.account}]" if outcome.account else outcome.name


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
