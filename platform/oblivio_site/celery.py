"""The Celery application: a ``default`` queue for platform work and an ``ml`` queue for models.

ML workers (GPU machines) consume ``ml`` only; web-side work (webhooks, checkpoints) goes to
``default``. Tasks are idempotent and acknowledged late, so a killed worker's task is redelivered.
"""

import os
import sys

from celery import Celery
from celery.signals import worker_init
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oblivio_site.settings")

#: ``default``: platform work (webhooks, checkpoints); ``ml``: model work (unlearn, verify).
QUEUES = ("default", "ml")

app = Celery("oblivio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name, Exchange(name, type="direct"), routing_key=name)
                        for name in QUEUES]
app.autodiscover_tasks()


@worker_init.connect
def _refuse_foreign_keys(**_: object) -> None:
    """A worker whose data directory holds other keys than the database's does not start
    (``SystemExit``: Celery logs and swallows ordinary exceptions raised by signal handlers)."""
    from core.keys import key_mismatch

    problem = key_mismatch()
    if problem:
        sys.exit(problem)
