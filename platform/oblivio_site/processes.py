"""Command lines for Oblivio's long-running processes (web server, Celery worker).

One place builds them, so ``oblivio serve``, ``oblivio worker``, ``oblivio demo`` and the tests that
start real processes run exactly the same thing.
"""

from __future__ import annotations

import os
import sys

from .celery import QUEUES


def server_argv(*, host: str = "127.0.0.1", port: int = 8000, workers: int = 2,
                threads: int = 16) -> list[str]:
    """gunicorn serving the WSGI application with threaded workers that bound slow clients
    (:mod:`oblivio_site.serving` says why)."""
    return [sys.executable, "-m", "gunicorn", "oblivio_site.wsgi", "--bind", f"{host}:{port}",
            "--worker-class", "oblivio_site.serving.OblivioWorker", "--workers", str(workers),
            "--threads", str(threads), "--worker-connections", "1000", "--keep-alive", "5",
            "--timeout", "60", "--graceful-timeout", "10"]


def worker_argv(*, queues: tuple[str, ...] = QUEUES, concurrency: int = 1,
                name: str = "oblivio", loglevel: str = "INFO", beat: bool = False) -> list[str]:
    """A Celery worker consuming ``queues``; ``name`` must be unique among running workers.

    ``beat`` embeds the periodic-task scheduler; run exactly one beat per deployment.
    """
    return [sys.executable, "-m", "celery", "-A", "oblivio_site", "worker",
            "--queues", ",".join(queues), "--concurrency", str(concurrency),
            "--hostname", f"{name}@%h", "--loglevel", loglevel,
            "--without-gossip", "--without-mingle", *(["--beat"] if beat else [])]


def child_env() -> dict[str, str]:
    """The environment for child processes: ours, with the settings module pinned."""
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "oblivio_site.settings")
    return env
