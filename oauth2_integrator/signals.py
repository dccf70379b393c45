"""Signals for host projects: alert an operator, record metrics, audit.

All are sent with ``sender=OAuth2Client`` after the database change is done and
the claim on the token row is released; receivers get the client, never a secret.
"""

from __future__ import annotations

from django.dispatch import Signal

#: A login completed and its tokens were stored. Arguments: ``client``, ``token``
#: and ``actor`` (the user who completed the login, or None).
token_obtained = Signal()

#: An access token was refreshed. Arguments: ``client``, ``token`` and
#: ``scope_narrowed``: the scopes granted before that the refresh no longer grants
#: (a sorted list, empty when none; scopes are not secret). Also logged as a warning.
token_refreshed = Signal()

#: A refresh failed. Arguments: ``client``, ``error`` (the exception raised to the
#: caller) and ``reauthorization_required`` (True when an operator must act).
token_refresh_failed = Signal()

#: A token was disconnected (``revocation.revoke``): marked ``revoked`` here and,
#: where the provider has a revocation endpoint, revoked there (RFC 7009).
#: Arguments: ``client``, ``account``, ``token`` (None) and ``result`` (a
#: ``RevokeResult``: ``result.confirmed`` says whether the provider confirmed).
token_revoked = Signal()

#: An operator must act on a token, sent once per incident: when a refresh is
#: refused with ``invalid_grant`` (or the token cannot be renewed any more), and,
#: ahead of time, when the background refresh finds a token that will expire and
#: cannot be renewed (a refresh token with a known end of life, or no refresh
#: token and no renewal). Arguments: ``client``, ``token`` and ``reason`` (an
#: operator's sentence, never a secret). ``NOTIFY_ADMINS`` also e-mails them.
reauthorization_required = Signal()
