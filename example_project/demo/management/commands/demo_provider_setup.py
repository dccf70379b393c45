"""``manage.py demo_provider_setup``: register an application at the demo provider.

For the end-to-end and browser tests, which run this project as a real
authorization server in its own process: it creates or updates a confidential
authorization-code application (and optionally a staff user who can consent) and
prints JSON with the client_id and the *plain* client secret, which the provider
itself keeps only as a hash. A test tool: the secret goes to stdout by design.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from example_project.demo import setup


class Command(BaseCommand):
    help = (
        "Create or update an application at the demo provider and print its "
        "client_id and plain client secret as JSON (for tests)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--client-id", default=setup.DEMO_CLIENT_ID)
        parser.add_argument(
            "--redirect-uri",
            action="append",
            required=True,
            dest="redirect_uris",
            help="Allowed redirect URI; repeat for several.",
        )
        parser.add_argument("--name", default="Test client")
        parser.add_argument("--username", help="Also create or reset this staff user.")
        parser.add_argument("--password", help="Password of --username.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["username"] and not options["password"]:
            raise CommandError("--password is required with --username.")
        if options["username"]:
            setup.ensure_user(options["username"], options["password"])
        application, secret = setup.ensure_application(
            client_id=options["client_id"],
            redirect_uris=options["redirect_uris"],
            name=options["name"],
        )
        self.stdout.write(
            json.dumps(
                {
                    "client_id": application.client_id,
                    "client_secret": secret,
                    "redirect_uris": application.redirect_uris.split(),
                    "username": options["username"],
                }
            )
        )
