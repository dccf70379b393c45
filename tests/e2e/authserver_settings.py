"""The example project as a stand-alone authorization server for the end-to-end tests.

Runs in its own process (``manage.py runserver``) on a temporary SQLite file, so
the app under test (in the pytest process, on its own database) talks to it only
over real HTTP, as it would to any provider.
"""

from __future__ import annotations

import os

from example_project.settings import *  # noqa: F403
from example_project.settings import OAUTH2_PROVIDER as _DEMO_PROVIDER

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["E2E_AUTHSERVER_DB"],
        "OPTIONS": {"timeout": 20},
    }
}
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
# django-oauth-toolkit checks client secrets with the default password hasher:
# PBKDF2 costs about 0.5 s per token request, MD5 nothing (test-only, of course).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
OAUTH2_PROVIDER = {
    **_DEMO_PROVIDER,
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    # OpenID Connect with RS256 ID tokens (tests/e2e/test_oidc_flow.py). The key is
    # made once per test session by AuthServer.env(); an application signs with it
    # only when its algorithm is RS256 (AuthServer.enable_oidc).
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": os.environ.get("E2E_OIDC_RSA_PRIVATE_KEY", ""),
    "OAUTH2_VALIDATOR_CLASS": "tests.e2e.authserver.ClaimsValidator",
    "SCOPES": {
        **_DEMO_PROVIDER["SCOPES"],
        "openid": "Sign you in (OpenID Connect)",
        "email": "Your e-mail address",
        "profile": "Your user name",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
