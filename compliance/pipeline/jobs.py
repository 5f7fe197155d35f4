"""Unlearning jobs: planning, dispatch, leases and cancellation. The job row is the source of truth.

- :func:`jobs_plan` puts approved requests into a job per (deployment, institution), batching those
  approved within ``OBLIVIO_JOB_BATCH_WINDOW_SECONDS``; their scope is resolved against the corpus of
  the deployment's *served* version.
- A step runs under a lease (the webhook claim pattern: a conditional UPDATE on the row). The worker
  renews it with a heartbeat; a job whose lease ran out (worker killed) is claimed again by the
  next task the sweeper sends, and every state change checks that the lease is still held.
- :func:`pipeline_sweep` (beat) plans, releases jobs whose window closed, re-sends tasks of jobs
  whose lease expired or whose message was lost, and purges deleted artifacts.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core.audit import AuditAction, audit_append
from core.principals import SYSTEM, Principal
from hierarchy.scope import scope_resolve

from ..attestation import json_digest
from ..audit_state import policy_as_recorded, recorded_status, serves_as_recorded
from ..errors import Conflict, NotFound
from ..forget_requests import forget_request_advance
from ..lifecycle import Status
from ..models import (
    ACTIVE_JOB_STATES,
    Certificate,
    Deployment,
    ForgetRequest,
    JobState,
    JobStep,
    ModelVersion,
    UnlearningJob,
)
from . import JOB_OBJECT_TYPE, PIPELINE
from .certify import certificate_issue, certificate_issue_not_trained
from .policy import policy_for
from .registry import registry_purge_deleted

logger = logging.getLogger(__name__)
#: Request statuses a job carries a request through.
IN_JOB = (Status.SCHEDULED, Status.UNLEARNING, Status.VERIFYING, Status.FAILED)
_PLANNABLE = (Status.APPROVED, Status.PARTIALLY_REFUSED)


class LeaseLost(Exception):
    """Another worker holds the job now (this one was too slow or presumed dead)."""


def job_audit(job: UnlearningJob, action: AuditAction, actor: Principal = PIPELINE, **data: Any) -> None:
    audit_append(actor=actor, action=action, object_type=JOB_OBJECT_TYPE, object_id=str(job.pk),
                 data={"state": job.state, "step": job.step, "rung": job.rung, **data})


def requests_advance(job: UnlearningJob, to: Status, **data: Any) -> None:
    """Move every request still carried by ``job`` to ``to`` (audit events and webhooks included)."""
    for request in job.requests.filter(status__in=[s for s in IN_JOB if s != to]).order_by("pk"):
        forget_request_advance(request_id=request.pk, to=to,
                               data={"job_id": str(job.pk), "rung": job.rung, **data})


# --- planning -----------------------------------------------------------------------------------


def _target(request: ForgetRequest, deployment: Deployment) -> dict[str, Any] | None:
    scope = scope_resolve(node=request.subject_node, corpus=deployment.served.corpus)
    forget = sorted(scope.forget - set(deployment.served.forgotten_records))
    return {"level": request.level, "forget": forget} if forget else None


def _covering_certificates(request: ForgetRequest,
                           deployment: Deployment) -> tuple[list[Certificate], list[str]] | None:
    """Certificates of the earlier jobs of ``deployment`` that together removed every record of
    ``request``'s scope from the served lineage (one per job, oldest first; the newest job's model
    lacks them all), with those records; ``None`` when they did not."""
    forget = scope_resolve(node=request.subject_node, corpus=deployment.served.corpus).forget
    if not forget or not forget <= set(deployment.served.forgotten_records):
        return None
    earlier = Certificate.objects.filter(job__deployment=deployment, job__state=JobState.SUCCEEDED) \
        .select_related("job", "version", "verification__candidate").order_by("issued_at", "pk")
    remaining, covering, jobs = set(forget), [], set()
    for certificate in earlier.iterator():
        if certificate.job_id in jobs or not remaining & set(certificate.job.forget_records):
            continue
        jobs.add(certificate.job_id)
        covering.append(certificate)
        remaining -= set(certificate.job.forget_records)
        if not remaining:
            break
    if remaining or not forget <= set(covering[-1].version.forgotten_records):
        return None
    return covering, sorted(forget)


def _certify_covered(request: ForgetRequest, covering: list[Certificate], forget: list[str]) -> None:
    newest = covering[-1]
    certificate = certificate_issue(job=newest.job, request=request, verification=newest.verification,
                                    covered_by=covering, forget=forget)
    forget_request_advance(request_id=request.pk, to=Status.CERTIFIED,
                           data={"job_id": str(newest.job_id), "certificate_id": str(certificate.pk),
                                 "covered_by": [str(c.pk) for c in covering], "forget_count": len(forget),
                                 "model_digest": newest.version.artifact_digest})


def _certify_not_trained(request: ForgetRequest, served: list[ModelVersion]) -> None:
    """No served model was trained on a record in scope: certify that, naming the models."""
    certificate = certificate_issue_not_trained(request=request, served=served)
    forget_request_advance(request_id=request.pk, to=Status.CERTIFIED,
                           data={"certificate_id": str(certificate.pk), "forget_count": 0,
                                 "not_trained": [version.artifact_digest for version in served]})


def _open_job(deployment: Deployment, request: ForgetRequest) -> UnlearningJob:
    job = UnlearningJob.objects.select_for_update().filter(
        deployment=deployment, institution=request.institution_id, state=JobState.PLANNED).first()
    if job is not None:
        return job
    window = timedelta(seconds=settings.OBLIVIO_JOB_BATCH_WINDOW_SECONDS)
    return UnlearningJob.objects.create(
        deployment=deployment, institution_id=request.institution_id, base_version=deployment.served,
        policy=policy_for(request.institution).as_json(), not_before=timezone.now() + window,
        scope_digest="")


def _rewritten(request: ForgetRequest, deployments: Any) -> str:
    """What planning ``request`` would act on that differs from its audit events, i.e. was set in the
    database rather than by the services ("" when nothing): the request's status, a deployment's served
    model, the institution's pipeline policy. Such a request waits for a person."""
    if recorded_status(request.pk) != request.status:
        return "its status is not the one its audit events record"
    if not all(map(serves_as_recorded, deployments)):
        return "a deployment serves another model than its audit events record"
    if not policy_as_recorded(request.institution.code):
        return "its institution's pipeline policy is not the one its audit events record"
    return ""


def _plan_one(request_id: uuid.UUID, *, statuses: tuple[Status, ...] = _PLANNABLE,
              actor: Principal = SYSTEM, **data: Any) -> UnlearningJob | None:
    with transaction.atomic():
        request = ForgetRequest.objects.select_for_update().filter(pk=request_id,
                                                                   status__in=statuses).first()
        if request is None:
            return None
        deployments = Deployment.objects.select_for_update(no_key=True).filter(served__isnull=False) \
            .order_by("name")
        refused = _rewritten(request, deployments)
        if refused:
            logger.error("forget request %s not planned: %s (`oblivio audit verify`)", request.pk, refused)
            return None
        for deployment in deployments:
            target = _target(request, deployment)
            if target is None:
                continue
            job = _open_job(deployment, request)
            job.targets[str(request.pk)] = target
            job.forget_records = sorted({rid for t in job.targets.values() for rid in t["forget"]})
            job.scope_digest = json_digest({"corpus": deployment.served.corpus.records_sha256,
                                            "forget": job.forget_records})
            job.save(update_fields=["targets", "forget_records", "scope_digest"])
            job.requests.add(request)
            forget_request_advance(request_id=request.pk, to=Status.SCHEDULED, actor=actor,
                                   data={"job_id": str(job.pk), "deployment": deployment.name,
                                         "forget_count": len(target["forget"]), **data})
            job_audit(job, AuditAction.JOB_PLANNED, request_id=str(request.pk),
                      deployment=deployment.name, base_digest=deployment.served.artifact_digest,
                      policy_sha256=json_digest(job.policy))
            return job  # one served model per request for now: the first deployment that holds it
        for deployment in deployments:  # nothing left to unlearn: certified already by earlier jobs?
            covered = _covering_certificates(request, deployment)
            if covered is not None:
                _certify_covered(request, *covered)
                return None
        served = [deployment.served for deployment in deployments]
        if served and not any(scope_resolve(node=request.subject_node, corpus=version.corpus).forget
                              for version in served):
            _certify_not_trained(request, served)
    return None


def jobs_plan() -> list[UnlearningJob]:
    """Plan every approved request that a served model holds data of; returns the jobs touched."""
    ids = ForgetRequest.objects.filter(status__in=_PLANNABLE).order_by("decided_at").values_list("pk",
                                                                                           flat=True)
    return [job for job in map(_plan_one, list(ids)) if job is not None]


def request_reschedule(*, request_id: uuid.UUID, actor: Principal, note: str = "") -> ForgetRequest:
    """A person's decision on an escalated request (every rung failed, its job was cancelled, or its
    worker kept dying): plan it into a job again, which starts at the first rung of the ladder — or
    certify it at once when another job has removed all of its records meanwhile."""
    with transaction.atomic():
        request = ForgetRequest.objects.select_for_update().filter(pk=request_id).first()
        if request is None or not actor.sees(request.institution_id):
            raise NotFound("no request has this id", field="id", code="request_not_found")
        if request.status != Status.ESCALATED:
            raise Conflict(f"only an escalated request can be rescheduled, not a {request.status} one",
                           field="status", code="request_not_escalated")
        job = _plan_one(request.pk, statuses=(Status.ESCALATED,), actor=actor, reason="rescheduled",
                        note=note)
        request.refresh_from_db(fields=["status"])
        if job is None and request.status != Status.CERTIFIED:
            raise Conflict("no served model holds data in this request's scope any more",
                           field="status", code="nothing_to_unlearn")
        transaction.on_commit(_release_soon)
    return ForgetRequest.objects.get(pk=request_id)


def _release_soon() -> None:
    from ..tasks import pipeline_plan_task

    try:
        pipeline_plan_task.apply_async(retry=False)
    except Exception:  # broker unreachable: the periodic sweep releases it
        logger.warning("job release deferred to the pipeline sweep")


# --- dispatch -----------------------------------------------------------------------------------


def job_dispatch(job_id: uuid.UUID, step: str) -> None:
    """Send the task of ``step`` (after commit when inside a transaction); a broker outage is logged and
    the sweeper sends it again later."""
    from ..tasks import STEP_TASKS

    def send() -> None:
        try:
            STEP_TASKS[step].apply_async((str(job_id),), retry=False)
        except Exception:  # broker unreachable: the job row still says what to do
            logger.warning("job dispatch deferred to the sweeper",
                           extra={"job_id": str(job_id), "step": step})

    UnlearningJob.objects.filter(pk=job_id).update(dispatched_at=timezone.now())
    transaction.on_commit(send)


def _rebase(job: UnlearningJob, served: ModelVersion) -> None:
    """Start from the version served now (another job may have promoted one since planning)."""
    done = set(served.forgotten_records)
    job.base_version = served
    job.targets = {rid: {**t, "forget": sorted(set(t["forget"]) - done)} for rid, t in job.targets.items()}
    job.forget_records = sorted(set(job.forget_records) - done)


def jobs_release_due() -> int:
    """Queue planned jobs whose batching window has closed, one job at a time per deployment (each
    starts from the version the previous one promoted)."""
    released = 0
    due = UnlearningJob.objects.filter(state=JobState.PLANNED, not_before__lte=timezone.now())
    for job_id in due.order_by("created_at").values_list("pk", flat=True):
        with transaction.atomic():
            job = UnlearningJob.objects.select_for_update().filter(pk=job_id, state=JobState.PLANNED).first()
            if job is None:
                continue
            deployment = Deployment.objects.select_for_update(no_key=True).get(pk=job.deployment_id)
            if UnlearningJob.objects.filter(deployment=deployment, state__in=[JobState.QUEUED,
                                                                              JobState.RUNNING]).exists():
                continue
            if job.base_version_id != deployment.served_id:
                _rebase(job, deployment.served)
            job.state = JobState.QUEUED
            job.save(update_fields=["state", "base_version", "targets", "forget_records"])
            job_dispatch(job.pk, JobStep.UNLEARN)
            released += 1
    return released


def jobs_redispatch_stalled() -> int:
    """Send again the task of running or queued jobs nobody holds: lease expired or message lost."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.OBLIVIO_JOB_REDISPATCH_SECONDS)
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
    lost = Q(lease_expires_at__lt=now) | Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=stale)
    count = 0
    for job in UnlearningJob.objects.filter(free & lost, state__in=[JobState.QUEUED, JobState.RUNNING]):
        with transaction.atomic():
            job_dispatch(job.pk, job.step)
        count += 1
    return count


def pipeline_sweep() -> dict[str, int]:
    """The periodic pass (see module docstring)."""
    planned = len(jobs_plan())
    return {"planned": planned, "released": jobs_release_due(), "redispatched": jobs_redispatch_stalled(),
            "artifacts_purged": registry_purge_deleted()}


# --- leases -------------------------------------------------------------------------------------


def job_claim(job_id: uuid.UUID | str, *, step: str, owner: str) -> UnlearningJob | None:
    """Take the job's lease for ``step`` if it is at that step and nobody holds it; else ``None``."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.OBLIVIO_JOB_LEASE_SECONDS)
    with transaction.atomic():
        job = UnlearningJob.objects.select_for_update().filter(
            pk=job_id, step=step, state__in=[JobState.QUEUED, JobState.RUNNING]).first()
        if job is None or (job.lease_owner and job.lease_expires_at and job.lease_expires_at >= now):
            return None
        taken_over = bool(job.lease_owner)
        UnlearningJob.objects.filter(pk=job.pk).update(
            lease_owner=owner, lease_expires_at=lease, heartbeat_at=now, state=JobState.RUNNING,
            attempts=F("attempts") + 1, started_at=job.started_at or now)
        job.refresh_from_db()
        if taken_over:
            job_audit(job, AuditAction.JOB_TAKEN_OVER, attempts=job.attempts)
    return job


def job_heartbeat(job_id: uuid.UUID, *, owner: str, progress: float) -> bool:
    """Renew the lease and record progress; returns whether cancellation was asked for.

    Raises :class:`LeaseLost` when another worker took the job.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=settings.OBLIVIO_JOB_LEASE_SECONDS)
    held = UnlearningJob.objects.filter(pk=job_id, lease_owner=owner).update(
        lease_expires_at=lease, heartbeat_at=now, progress=round(100 * min(max(progress, 0.0), 1.0), 1))
    if not held:
        raise LeaseLost(str(job_id))
    return UnlearningJob.objects.filter(pk=job_id, cancel_requested=True).exists()


def job_locked(job_id: uuid.UUID, *, owner: str) -> UnlearningJob:
    """The job row locked for this transaction, if ``owner`` still holds its lease."""
    job = UnlearningJob.objects.select_for_update().filter(pk=job_id, lease_owner=owner).first()
    if job is None:
        raise LeaseLost(str(job_id))
    return job


def job_release(job: UnlearningJob, *, next_step: str) -> None:
    """End this step (inside the locked transaction) and send the next one's task."""
    job.step, job.progress, job.attempts = next_step, 0.0, 0
    job.lease_owner, job.lease_expires_at = "", None
    job.save(update_fields=["step", "progress", "attempts", "lease_owner", "lease_expires_at"])
    job_dispatch(job.pk, next_step)


def job_finish(job: UnlearningJob, state: JobState, **failure: Any) -> None:
    """Close the job (inside the locked transaction)."""
    job.state, job.finished_at, job.lease_owner, job.lease_expires_at = state, timezone.now(), "", None
    if state is JobState.SUCCEEDED:
        job.step, job.progress = JobStep.DONE, 100.0
    if failure:
        job.failure = failure
    job.save()


# --- cancellation -------------------------------------------------------------------------------


def job_cancel(*, job_id: uuid.UUID, actor: Principal) -> UnlearningJob:
    """Stop a job before it certifies. A job no worker holds stops now; a running one at its next
    heartbeat or step boundary. Its requests are still owed: they go ``failed`` → ``escalated``, where
    an officer reschedules them (:func:`request_reschedule`) or a person otherwise decides."""
    with transaction.atomic():
        job = UnlearningJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or not actor.sees(job.institution_id):
            raise NotFound("no job has this id", field="id", code="job_not_found")
        if job.state not in ACTIVE_JOB_STATES:
            raise Conflict(f"a {job.state} job cannot be cancelled", field="state", code="job_not_active")
        job.cancel_requested = True
        job.save(update_fields=["cancel_requested"])
        held = bool(job.lease_owner and job.lease_expires_at and job.lease_expires_at >= timezone.now())
        if not held:
            job_cancelled(job, actor=actor)
        else:
            job_audit(job, AuditAction.JOB_CANCELLED, actor=actor, pending=True)
    return job


def job_cancelled(job: UnlearningJob, *, actor: Principal = PIPELINE) -> None:
    """Record the cancellation (inside the locked transaction)."""
    job_finish(job, JobState.CANCELLED)
    requests_advance(job, Status.FAILED, reason="job_cancelled")
    requests_advance(job, Status.ESCALATED, reason="job_cancelled")
    job_audit(job, AuditAction.JOB_CANCELLED, actor=actor)

