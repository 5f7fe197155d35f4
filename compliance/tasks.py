"""Celery tasks of the compliance app. Thin: each calls one service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings


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


# --- unlearning pipeline (routed to the ``ml`` queue by CELERY_TASK_ROUTES) ---------------------

_STEP_LIMITS = {"time_limit": settings.OBLIVIO_JOB_STEP_TIME_LIMIT,
                "soft_time_limit": settings.OBLIVIO_JOB_STEP_TIME_LIMIT - 60}


@shared_task(name="compliance.job_unlearn", **_STEP_LIMITS)
def job_unlearn_task(job_id: str) -> str:
    from .pipeline.steps import job_run_step

    return job_run_step(job_id, "unlearn")


@shared_task(name="compliance.job_verify", **_STEP_LIMITS)
def job_verify_task(job_id: str) -> str:
    from .pipeline.steps import job_run_step

    return job_run_step(job_id, "verify")


@shared_task(name="compliance.job_certify", time_limit=600, soft_time_limit=540)
def job_certify_task(job_id: str) -> str:
    from .pipeline.steps import job_run_step

    return job_run_step(job_id, "certify")


#: The task that runs each job step.
STEP_TASKS = {"unlearn": job_unlearn_task, "verify": job_verify_task, "certify": job_certify_task}


@shared_task(name="compliance.pipeline_plan")
def pipeline_plan_task() -> int:
    """Plan approved requests into jobs now (sent after an approval commits)."""
    from .pipeline.jobs import jobs_plan, jobs_release_due

    jobs_plan()
    return jobs_release_due()


@shared_task(name="compliance.pipeline_sweep")
def pipeline_sweep_task() -> dict[str, int]:
    """Plan, release closed batching windows, take over jobs of dead workers, purge artifacts."""
    from .pipeline.jobs import pipeline_sweep

    return pipeline_sweep()
