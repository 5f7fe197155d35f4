"""The deployable Oblivio Django project: settings, URLs, Celery app, health, CLI."""

from .celery import app as celery_app

__all__ = ["celery_app"]
