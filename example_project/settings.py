"""Settings of the example project, read from the environment (django-environ).

Every value has a development default so ``python manage.py demo`` works on a fresh
clone; a real deployment sets them all. With ``DEBUG=False`` the site refuses to
start on the public development encryption key: set
``OAUTH2_INTEGRATOR_ENCRYPTION_KEYS``. The same site also serves a small
authorization server built from django-oauth-toolkit under ``/demo-provider/``, so
the whole OAuth 2.0 flow can be tried without a third-party account.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# DEVELOPMENT ONLY. This key is public (it spells "dev-only-NOT-SECRET-replace-me!!"
# in base64): anything encrypted with it is readable by anyone. In production set
# OAUTH2_INTEGRATOR_ENCRYPTION_KEYS to your own keys, generated with
#   python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
DEV_ONLY_ENCRYPTION_KEY = "ZGV2LW9ubHktTk9ULVNFQ1JFVC1yZXBsYWNlLW1lISE="

SECRET_KEY = env.str(
    "SECRET_KEY", default="django-insecure-example-project-dev-only-replace-me"
)
DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "oauth2_provider",
    "oauth2_integrator",
    "example_project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns an AuthorizationRequired escaping a view into one click for the operator.
    "oauth2_integrator.middleware.AuthorizationRequiredMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# The demo provider's consent page sends anonymous visitors to the admin login.
LOGIN_URL = "/admin/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"


def _encryption_keys() -> list[str]:
    """The configured keys; the public development key only while DEBUG is on."""
    keys = env.list("OAUTH2_INTEGRATOR_ENCRYPTION_KEYS", default=[])
    if not keys and DEBUG:
        return [DEV_ONLY_ENCRYPTION_KEY]
    if DEBUG:
        return keys
    if not keys:
        problem = "is not set"
    elif DEV_ONLY_ENCRYPTION_KEY in keys:
        problem = "contains the example project's public development key"
    else:
        return keys
    raise ImproperlyConfigured(
        f"OAUTH2_INTEGRATOR_ENCRYPTION_KEYS {problem}, and DEBUG is off: tokens and "
        "client secrets would be encrypted with a key anyone can read in this "
        "project's source. Set OAUTH2_INTEGRATOR_ENCRYPTION_KEYS to your own key "
        "(comma-separated, the first encrypts), generated with\n"
        '  python -c "from cryptography.fernet import Fernet; '
        'print(Fernet.generate_key().decode())"\n'
        "or set DEBUG=True for local development."
    )


OAUTH2_INTEGRATOR = {"ENCRYPTION_KEYS": _encryption_keys()}

# The demo authorization server (django-oauth-toolkit), mounted at /demo-provider/.
# It follows RFC 9700 wherever a local http:// demo allows it.
OAUTH2_PROVIDER = {
    "SCOPES": {"read": "Read the demo data", "write": "Change the demo data"},
    "DEFAULT_SCOPES": ["read"],
    # Short-lived access tokens, so the refresh is seen working within minutes.
    "ACCESS_TOKEN_EXPIRE_SECONDS": env.int("DEMO_ACCESS_TOKEN_SECONDS", default=600),
    "PKCE_REQUIRED": True,
    "ROTATE_REFRESH_TOKEN": True,
    # A replayed (already rotated) refresh token revokes the whole token family.
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    # Sends RFC 9207 `iss` with every authorization response; the client checks it.
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
}

# Celery (example_project/celery.py; `celery -A example_project worker --beat`): the
# broker from the environment, and beat queueing the refresh of due tokens every 5
# minutes (the schedule the README's "Celery" section tells a site to paste).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_BEAT_SCHEDULE = {
    "oauth2-integrator-refresh-due": {
        "task": "oauth2_integrator.refresh_due",
        "schedule": 300.0,
        "options": {"expires": 240.0},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "oauth2_integrator": {"handlers": ["console"], "level": "INFO"},
    },
}
