"""Signals for host projects: alert an operator, record metrics, audit.

All are sent with ``sender=OAuth2Client`` after the database change is done and
the row lock is released; receivers get the client, never a secret.
"""

from __future__ import annotations

from django.dispatch import Signal

#: A login completed and its tokens were stored. Arguments: ``client``, ``token``.
token_obtained = Signal()

#: An access token was refreshed. Arguments: ``client``, ``token`` and
#: ``scope_narrowed``: the scopes granted before that the refresh no longer grants
#: (a sorted list, empty when none; scopes are not secret). Also logged as a warning.
token_refreshed = Signal()

#: A refresh failed. Arguments: ``client``, ``error`` (the exception raised to the
#: caller) and ``reauthorization_required`` (True when an operator must act).
token_refresh_failed = Signal()
