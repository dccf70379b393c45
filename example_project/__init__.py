"""The example project: the app wired into a site, plus a local demo authorization server."""

from importlib.util import find_spec

# Celery's convention: the app loads with Django, so ``@shared_task`` binds to it. The
# project also runs without Celery (``pip install -e ".[demo]"`` does not bring it).
celery_app = None
if find_spec("celery") is not None:
    from .celery import app as celery_app

__all__ = ["celery_app"]
