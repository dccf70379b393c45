"""Settings for the test suite.

The suite runs on the machine's PostgreSQL by default (concurrency across real
connections is tested there); ``TEST_DATABASE_URL=sqlite:///:memory:`` runs it on
SQLite, where the tests that need PostgreSQL are skipped.
"""

from __future__ import annotations

import environ

env = environ.Env()

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": env.db_url(
        "TEST_DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/test"
    )
}
if env.bool("TEST_DATABASE_PREPARED", default=False) and "postgresql" in str(
    DATABASES["default"]["ENGINE"]
):
    # Django's opt-in for PostgreSQL prepared statements (server-side binding,
    # prepared after 2 runs): the refresh's raw SQL must work there too.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=2
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "oauth2_integrator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "oauth2_integrator.middleware.AuthorizationRequiredMiddleware",
]

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

STATIC_URL = "/static/"
# Fast hashing: the suite creates many users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Two fixed test keys: the first encrypts, both decrypt (rotation tests swap them).
TEST_KEY_NEW = "Yv2Z7l0cJbq0mI6yq1V1VbJQ2b3nXK0m0mY6b6t1w1I="
TEST_KEY_OLD = "8mN0jgvXo8V2v2bqJm0Yl6mS3tC1bJ9i5v1mQ7r0tB4="

OAUTH2_INTEGRATOR = {
    "ENCRYPTION_KEYS": [TEST_KEY_NEW, TEST_KEY_OLD],
    "CONNECT_TIMEOUT": 2,
    "READ_TIMEOUT": 5,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"oauth2_integrator": {"handlers": ["console"], "level": "DEBUG"}},
}
