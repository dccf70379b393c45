"""Optional integrations; each module needs its own extra (``pip install ...[celery]``)."""
