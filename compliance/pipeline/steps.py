"""The three steps of a job — unlearn, verify, certify — as run by the ``ml`` worker tasks.

Each step claims the job's lease, does its slow work outside any transaction while a heartbeat
thread renews the lease, then records the result in one transaction that first re-checks the lease
(:func:`~compliance.pipeline.jobs.job_locked`). A worker killed at any point leaves either nothing
or a finished step behind; the step is simply run again by whoever claims the job next. Certify
promotes and certifies in a single transaction, so it happens exactly once.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from core.audit import AuditAction
from core.home import oblivio_home

from ..attestation import json_digest
from ..audit_state import job_as_recorded
from ..forget_requests import forget_request_advance
from ..lifecycle import Status
from ..models import JobState, JobStep, UnlearningJob, VerificationRecord
from .certify import certificate_issue
from .engine import EngineCancelled, EngineError, ScopeTarget, engine
from .jobs import (
    IN_JOB,
    LeaseLost,
    job_audit,
    job_cancelled,
    job_claim,
    job_finish,
    job_heartbeat,
    job_locked,
    job_release,
    requests_advance,
)
from .registry import (
    BaselineMismatch,
    candidate_register,
    lineage_baseline_checked,
    lineage_baseline_keep,
    version_promote,
    version_reject,
)
from .storage import artifact_storage

logger = logging.getLogger(__name__)


class Heartbeat:
    """Renews the lease every ``OBLIVIO_JOB_HEARTBEAT_SECONDS`` in a thread and records progress."""

    def __init__(self, job_id: uuid.UUID, owner: str) -> None:
        self.job_id, self.owner = job_id, owner
        self.fraction, self.cancelled, self.lost = 0.0, False, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(settings.OBLIVIO_JOB_HEARTBEAT_SECONDS):
                try:
                    self.cancelled = job_heartbeat(self.job_id, owner=self.owner, progress=self.fraction)
                except LeaseLost:
                    self.lost = True
                    return
                except Exception:  # a database hiccup: try again next beat
                    logger.exception("heartbeat failed", extra={"job_id": str(self.job_id)})
        finally:
            connection.close()

    def progress(self, fraction: float) -> None:
        """Progress callback for the engine; stops the step once the lease is lost."""
        self.fraction = fraction
        if self.lost:
            raise LeaseLost(str(self.job_id))

    def should_cancel(self) -> bool:
        return self.cancelled or self.lost


def _owner() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _work_dir(job: UnlearningJob) -> Path:
    return oblivio_home() / "work" / "jobs" / str(job.pk)


def _targets(job: UnlearningJob) -> list[ScopeTarget]:
    live = {str(pk) for pk in job.requests.filter(status__in=IN_JOB).values_list("pk", flat=True)}
    return [ScopeTarget(request_id=rid, level=t["level"], forget=frozenset(t["forget"]))
            for rid, t in sorted(job.targets.items()) if rid in live]


def _record_log(job: UnlearningJob, **entry: Any) -> None:
    job.log = [*job.log, {"step": job.step, "rung": job.rung, "claim": job.attempts, **entry}]


def _next_rung(job: UnlearningJob, *, inconclusive: bool) -> int | None:
    """The rung after a failed one: the next, or after an inconclusive verdict (too few forgotten facts
    for any approximate method to be judged) the next ``exact`` rung; ``None``: a person decides."""
    later = range(job.rung + 1, len(job.policy["ladder"]))
    if inconclusive:
        return next((rung for rung in later if job.policy["ladder"][rung]["method"] == "exact"), None)
    return next(iter(later), None)


def _rung_failed(job: UnlearningJob, failure: dict[str, Any], *, inconclusive: bool = False) -> None:
    """After a failed rung: the next rung of the ladder, or a person (inside the locked transaction)."""
    requests_advance(job, Status.FAILED, **failure)
    ladder = job.policy["ladder"]
    rung = _next_rung(job, inconclusive=inconclusive)
    if rung is not None:
        job.rung, job.candidate = rung, None
        job.save(update_fields=["rung", "candidate", "log"])
        requests_advance(job, Status.SCHEDULED, reason="retry_stronger", method=ladder[job.rung]["method"])
        job_audit(job, AuditAction.JOB_RETRIED, failure=failure, method=ladder[job.rung]["method"])
        job_release(job, next_step=JobStep.UNLEARN)
    else:
        _escalate(job, failure)


def _escalate(job: UnlearningJob, failure: dict[str, Any]) -> None:
    """Hand the job to a person with ``failure`` attached (inside the locked transaction)."""
    job_finish(job, JobState.ESCALATED, **failure)
    requests_advance(job, Status.ESCALATED, **failure)
    job_audit(job, AuditAction.JOB_ESCALATED, failure=failure)


def _unlearn(job: UnlearningJob, owner: str, beat: Heartbeat) -> None:
    with transaction.atomic():
        locked = job_locked(job.pk, owner=owner)
        targets = _targets(locked)
        if not targets:  # every request was withdrawn meanwhile
            job_cancelled(locked)
            return
        locked.targets = {t.request_id: locked.targets[t.request_id] for t in targets}
        locked.forget_records = sorted({rid for t in targets for rid in t.forget})
        locked.save(update_fields=["targets", "forget_records"])
        requests_advance(locked, Status.UNLEARNING, method=locked.policy["ladder"][locked.rung]["method"])
    base = job.base_version
    rung = job.policy["ladder"][job.rung]
    out = _work_dir(job) / f"rung{job.rung}-claim{job.attempts}"
    shutil.rmtree(out, ignore_errors=True)
    try:
        outcome = engine().unlearn(
            model_dir=artifact_storage().path(base.storage_key), corpus_root=Path(base.corpus_root),
            targets=targets, already_forgotten=frozenset(base.forgotten_records), method=rung["method"],
            config=rung["config"], out=out, seed=job.rung, progress=beat.progress,
            should_cancel=beat.should_cancel, checkpoint_dir=_work_dir(job) / f"rung{job.rung}.checkpoints")
    except EngineCancelled:
        if beat.lost:
            raise LeaseLost(str(job.pk)) from None
        with transaction.atomic():
            job_cancelled(job_locked(job.pk, owner=owner))
        return
    except EngineError as exc:
        with transaction.atomic():
            locked = job_locked(job.pk, owner=owner)
            _record_log(locked, error=str(exc))
            _rung_failed(locked, {"step": "unlearn", "method": rung["method"], "error": str(exc)})
        return
    candidate = candidate_register(job=job, artifact_dir=outcome.artifact_dir, method=rung["method"],
                                   exact=outcome.exact)
    shutil.rmtree(out, ignore_errors=True)
    with transaction.atomic():
        locked = job_locked(job.pk, owner=owner)
        if locked.cancel_requested:
            job_cancelled(locked)
            return
        locked.candidate = candidate
        _record_log(locked, candidate=candidate.artifact_digest, method=rung["method"], exact=outcome.exact,
                    engine_log=outcome.log[-20:])
        locked.save(update_fields=["candidate", "log"])
        requests_advance(locked, Status.VERIFYING, candidate_digest=candidate.artifact_digest)
        job_audit(locked, AuditAction.JOB_STEP_FINISHED, candidate_digest=candidate.artifact_digest)
        job_release(locked, next_step=JobStep.VERIFY)


def _verify(job: UnlearningJob, owner: str, beat: Heartbeat) -> None:
    storage, base, candidate = artifact_storage(), job.base_version, job.candidate
    try:
        baseline = lineage_baseline_checked(base)
        outcome = engine().verify(
            original=storage.path(base.storage_key), candidate=storage.path(candidate.storage_key),
            corpus_root=Path(base.corpus_root), targets=_targets(job),
            already_forgotten=frozenset(base.forgotten_records), thresholds=job.policy["thresholds"],
            baseline=baseline, progress=beat.progress)
    except (BaselineMismatch, EngineError) as exc:
        # the registry or the verdict policy is wrong, not the candidate: no stronger rung helps
        with transaction.atomic():
            locked = job_locked(job.pk, owner=owner)
            requests_advance(locked, Status.FAILED, step="verify", error=str(exc))
            _escalate(locked, {"step": "verify", "error": str(exc)})
        return
    accepted = outcome.accepts(exact=candidate.exact)
    verdict = outcome.verdict
    with transaction.atomic():
        locked = job_locked(job.pk, owner=owner)
        lineage_baseline_keep(base=base, candidate=candidate, baseline=outcome.baseline)
        record, _ = VerificationRecord.objects.get_or_create(
            job=locked, candidate=candidate,
            defaults={"rung": locked.rung, "passed": accepted, "digest": json_digest(outcome.report),
                      "report": outcome.report,
                      "summary": {"passed": accepted, "verdict": verdict, "checks": outcome.checks,
                                  "policy_overrides": outcome.policy_overrides}})
        job_audit(locked, AuditAction.VERIFICATION_RECORDED, report_id=str(record.pk),
                  report_digest=record.digest, passed=record.passed, verdict=verdict,
                  utility_baseline_digest=json_digest(outcome.baseline),
                  failed_checks=[c.get("name") for c in outcome.failed_checks])
        _record_log(locked, report=record.digest, passed=record.passed, verdict=verdict)
        locked.save(update_fields=["log"])
        if locked.cancel_requested:
            job_cancelled(locked)
        elif record.passed:
            job_release(locked, next_step=JobStep.CERTIFY)
        else:
            version_reject(candidate=candidate, reason=f"verification report {record.digest}: {verdict}")
            inconclusive = [c["name"] for c in outcome.checks if c.get("status") == "inconclusive"]
            _rung_failed(locked, {"step": "verify", "report_id": str(record.pk), "verdict": verdict,
                                  "failed_checks": outcome.failed_checks,
                                  **({"inconclusive_checks": inconclusive} if inconclusive else {})},
                         inconclusive=outcome.inconclusive)


def _certify(job: UnlearningJob, owner: str, beat: Heartbeat) -> None:
    with transaction.atomic():
        locked = job_locked(job.pk, owner=owner)
        if locked.cancel_requested:
            job_cancelled(locked)
            return
        candidate = locked.candidate
        record = VerificationRecord.objects.get(job=locked, candidate=candidate)
        version_promote(job=locked, candidate=candidate, verification=record)
        issued = []
        for request in locked.requests.filter(status=Status.VERIFYING).order_by("pk"):
            certificate = certificate_issue(job=locked, request=request, verification=record)
            forget_request_advance(request_id=request.pk, to=Status.CERTIFIED,
                                   data={"job_id": str(locked.pk), "certificate_id": str(certificate.pk),
                                         "model_digest": candidate.artifact_digest})
            issued.append(str(certificate.pk))
        job_finish(locked, JobState.SUCCEEDED)
        job_audit(locked, AuditAction.JOB_STEP_FINISHED, certificates=issued,
                  served_digest=candidate.artifact_digest)
        work = _work_dir(locked)
        transaction.on_commit(lambda: shutil.rmtree(work, ignore_errors=True))


_STEPS = {JobStep.UNLEARN: _unlearn, JobStep.VERIFY: _verify, JobStep.CERTIFY: _certify}


def _stop(job: UnlearningJob, step: str, error: str, *, reason: str, **audit: Any) -> None:
    """Fail the job and hand its requests to a person (inside the locked transaction)."""
    job_finish(job, JobState.FAILED, step=step, error=error)
    requests_advance(job, Status.FAILED, reason=reason)
    requests_advance(job, Status.ESCALATED, reason=reason)
    job_audit(job, AuditAction.JOB_FAILED, error=error, **audit)


def job_run_step(job_id: str, step: str) -> str:
    """Run ``step`` of the job if this worker can claim it; returns what happened (for the task log)."""
    owner = _owner()
    job = job_claim(job_id, step=step, owner=owner)
    if job is None:
        return "not claimed"
    if job.cancel_requested or job.attempts > settings.OBLIVIO_JOB_MAX_CLAIMS:
        with transaction.atomic():
            locked = job_locked(job.pk, owner=owner)
            if locked.cancel_requested:
                job_cancelled(locked)
            else:  # the step kills its worker every time: a person must look at it
                _stop(locked, step, "the step was claimed too often", reason="worker_crashes",
                      claims=locked.attempts)
        return "stopped"
    rewritten = job_as_recorded(job)
    if rewritten:  # its policy or verdict was set in the database: act on neither
        logger.error("job %s stopped: %s (`oblivio audit verify`)", job.pk, rewritten)
        with transaction.atomic():
            _stop(job_locked(job.pk, owner=owner), step, rewritten, reason="rewritten_outside_services")
        return "stopped"
    try:
        with Heartbeat(job.pk, owner) as beat:
            _STEPS[JobStep(step)](job, owner, beat)
    except LeaseLost:
        logger.warning("job lease lost; another worker continues", extra={"job_id": job_id, "step": step})
        return "lease lost"
    return "done"
