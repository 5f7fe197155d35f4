"""Celery tasks of the core app. Thin: each calls one service."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="core.audit_checkpoint")
def audit_checkpoint_task() -> int | None:
    """Sign the audit head every interval, moved or not (see ``CELERY_BEAT_SCHEDULE``)."""
    from .audit import audit_checkpoint

    checkpoint = audit_checkpoint(heartbeat=True)
    return checkpoint.seq if checkpoint else None


@shared_task(name="core.audit_verify")
def audit_verify_task() -> bool:
    """Verify the chain and the state it describes on a schedule, so tampering is reported without
    anyone running ``oblivio audit verify``: a failure is logged at ERROR (ids and field names only)."""
    from .audit import audit_verify

    result = audit_verify()
    if not result.ok:
        logger.error("audit verification failed: %s", result.problem,
                     extra={"first_bad_seq": result.first_bad_seq})
    return result.ok
