"""Celery tasks of the core app. Thin: each calls one service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="core.audit_checkpoint")
def audit_checkpoint_task() -> int | None:
    """Sign the audit head every interval, moved or not (see ``CELERY_BEAT_SCHEDULE``)."""
    from .audit import audit_checkpoint

    checkpoint = audit_checkpoint(heartbeat=True)
    return checkpoint.seq if checkpoint else None
