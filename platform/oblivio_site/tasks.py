"""Platform-level Celery tasks."""

import socket

from celery import shared_task


@shared_task(name="oblivio.health_probe", bind=True)
def health_probe(self) -> dict[str, str]:
    """Answer a round-trip probe from ``oblivio doctor`` with the queue it was delivered on."""
    return {"queue": (self.request.delivery_info or {}).get("routing_key", ""),
            "worker_host": socket.gethostname()}
