"""Celery tasks of the compliance app. Thin: each calls one service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="compliance.webhook_deliver", ignore_result=True)
def webhook_deliver_task(delivery_id: int) -> bool:
    """Try one outbox delivery now; on failure queue the next try after its backoff."""
    from .webhooks import webhook_attempt, webhook_dispatch

    outcome = webhook_attempt(delivery_id=delivery_id)
    if outcome is not None and outcome.retry_in is not None:
        webhook_dispatch(delivery_id, countdown=outcome.retry_in)
    return bool(outcome and outcome.delivered)


@shared_task(name="compliance.webhook_sweep")
def webhook_sweep_task() -> int:
    """Deliver whatever is due (missed dispatches, retries while the broker was down)."""
    from .webhooks import webhook_deliver_due

    return webhook_deliver_due()


@shared_task(name="compliance.idempotency_purge")
def idempotency_purge_task() -> int:
    """Forget Idempotency-Keys past their retention window."""
    from .idempotency import idempotency_purge_expired

    return idempotency_purge_expired()
