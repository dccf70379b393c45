"""``manage.py demo``: the whole demo in one command.

Migrates, creates the demo admin and prints its credentials, registers the demo
application at the local provider (mounted at /demo-provider/ in this same site)
and the ``demo`` client pointing at it, then serves the site. Safe to run again:
everything is created or brought up to date.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from example_project.demo import setup


class Command(BaseCommand):
    help = (
        "Set up the demo (database, admin user, local provider, demo client) and run "
        "the site on 127.0.0.1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="Default: 8000.")
        parser.add_argument(
            "--no-serve",
            action="store_true",
            help="Only set up; do not start the development server.",
        )
        parser.add_argument("--username", default="admin", help="Default: admin.")
        parser.add_argument(
            "--password",
            default=os.environ.get("DEMO_ADMIN_PASSWORD", "admin"),
            help="Default: $DEMO_ADMIN_PASSWORD, else 'admin' (a local demo only).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port: int = options["port"]
        base_url = f"http://127.0.0.1:{port}"
        verbosity: int = options["verbosity"]

        self.stdout.write("Migrating the database ...")
        call_command("migrate", interactive=False, verbosity=max(verbosity - 1, 0))

        setup.ensure_user(options["username"], options["password"], superuser=True)

        callback = f"/oauth2/{setup.DEMO_CLIENT_NAME}/callback/"
        redirect_uris = [
            f"http://{host}:{port}{callback}" for host in ("127.0.0.1", "localhost")
        ]
        _application, secret = setup.ensure_application(
            client_id=setup.DEMO_CLIENT_ID, redirect_uris=redirect_uris
        )
        # The plain secret goes straight into the client registration (encrypted
        # there); it is never printed.
        client = setup.register_client(
            name=setup.DEMO_CLIENT_NAME,
            base_url=base_url,
            client_id=setup.DEMO_CLIENT_ID,
            client_secret=secret,
        )

        style = self.style
        self.stdout.write(style.SUCCESS("\nThe demo is ready."))
        self.stdout.write(f"  Admin:          {base_url}/admin/")
        self.stdout.write(f"  Username:       {options['username']}")
        self.stdout.write(f"  Password:       {options['password']}")
        self.stdout.write(
            f"  Demo client:    {base_url}/admin/oauth2_integrator/oauth2client/{client.pk}/change/"
        )
        self.stdout.write(
            f'  Demo page:      {base_url}/  (calls get_access_token("demo"))'
        )
        self.stdout.write(f"  Demo provider:  {base_url}{setup.PROVIDER_PATH}/")
        self.stdout.write(
            "Sign in, open OAuth2 clients -> demo, press Authorize and allow access on "
            "the demo provider's page."
        )
        if not settings.DEBUG:
            self.stdout.write(
                style.WARNING("DEBUG is off: the admin is served without its styles.")
            )
        if options["no_serve"]:
            return
        self.stdout.write("")
        # No autoreloader: it would run this whole command again in a child process.
        # runserver is threaded, so the callback can call this same server's token
        # endpoint while it is being served.
        call_command("runserver", f"127.0.0.1:{port}", use_reloader=False)
