"""Jobs on real Celery worker processes over Redis: a worker SIGKILLed during ``unlearn`` or during
``certify`` is taken over and the job completes exactly once (one promotion, one certificate); a
broker restart mid-job loses nothing; cancellation reaches a running step.

The scripted engine (``tests/pipeline_engine.py``) stands in for the model library so the timing of
each step is under the test's control; ``test_pipeline_e2e`` runs the real one.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import LiveProcess, LiveWorker, free_port, redis_start
from django.db import connections, transaction
from django.urls import reverse
from pipeline_support import *  # noqa: F403
from pipeline_support import FAST, TESTS_DIR, Served, pdf_text, raw_identifiers

from compliance.lifecycle import Status
from compliance.models import Certificate, Deployment, JobState, ModelVersion, UnlearningJob, VersionStatus
from compliance.pipeline.certify import certificate_verify_stored
from compliance.pipeline.jobs import job_cancel, pipeline_sweep
from core.audit import audit_export_json, audit_verify
from core.models import AuditEvent

pytestmark = [pytest.mark.slow, pytest.mark.services]


def _descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(c) for c in children] + [d for c in children for d in _descendants(int(c))]


def kill_hard(worker: LiveProcess) -> None:
    """SIGKILL the worker and its pool processes (the way an OOM killer or a lost machine ends it)."""
    for pid in [worker.process.pid, *_descendants(worker.process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.process.wait()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., LiveWorker]]:
    started: list[LiveWorker] = []

    def start(*, wait: bool = True, beat: bool = False, **env: str) -> LiveWorker:
        path = f"{TESTS_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
        overrides = {**FAST, "PYTHONPATH": path, **env}
        worker = LiveWorker(f"pipeline-{uuid.uuid4().hex[:8]}", tmp_path / f"worker-{len(started)}.log",
                            beat=beat, **overrides)
        started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    start.started = started  # type: ignore[attr-defined]
    yield start
    for worker in started:
        worker.stop()


def wait_for(condition: Callable[[], bool], *, timeout: float, sweep: bool = True, what: str = "") -> None:
    """Poll ``condition``; meanwhile act as the beat scheduler (the pipeline sweep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if sweep:
            pipeline_sweep()
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what or condition}")


def the_job() -> UnlearningJob:
    return UnlearningJob.objects.order_by("created_at").last()


def assert_exactly_once(served: Served, request) -> None:
    request.refresh_from_db()
    job = the_job()
    assert request.status == Status.CERTIFIED and job.state == JobState.SUCCEEDED
    promoted = AuditEvent.objects.filter(action="model_version.promoted", object_id=str(job.candidate_id))
    assert promoted.count() == 1
    assert ModelVersion.objects.filter(job=job, status=VersionStatus.SERVED).count() == 1
    assert Deployment.objects.get(name="default").served_id == job.candidate_id
    assert Certificate.objects.filter(request=request).count() == 1
    assert AuditEvent.objects.filter(action="certificate.issued").count() == 1
    assert certificate_verify_stored(Certificate.objects.get(request=request)).ok
    assert audit_verify().ok


def test_a_worker_killed_during_unlearn_is_taken_over_and_certifies_once(served: Served, approve,
                                                                         start_worker) -> None:
    first = start_worker(PIPELINE_TEST_UNLEARN_SECONDS="8")
    request = approve()
    wait_for(lambda: (job := the_job()) is not None and job.step == "unlearn" and job.progress > 0,
             timeout=60, what="unlearning to report progress")
    kill_hard(first)
    start_worker(PIPELINE_TEST_UNLEARN_SECONDS="2")
    wait_for(lambda: the_job().state == JobState.SUCCEEDED, timeout=120, what="the job to finish")
    assert_exactly_once(served, request)
    job = the_job()
    assert AuditEvent.objects.filter(action="unlearning_job.taken_over", object_id=str(job.pk)).exists()
    assert ModelVersion.objects.filter(job=job).count() == 1  # the re-run made the same artifact
    assert_no_identifiers(served, [first, *start_worker.started])


def assert_no_identifiers(served: Served, workers: list[LiveWorker]) -> None:
    """PHI scan after a run: worker logs, audit export, certificates (JSON and PDF), API URLs."""
    certificate = Certificate.objects.get()
    job = the_job()
    urls = [reverse("job-detail", args=[job.pk]), reverse("job-cancel", args=[job.pk]),
            reverse("forget-request-certificate", args=[certificate.request_id]),
            reverse("certificate-verify", args=[certificate.pk]),
            *re.findall(r"https?://\S+", pdf_text(bytes(certificate.pdf)))]
    haystacks = {"worker logs": "\n".join(w.log_path.read_text(errors="replace") for w in workers),
                 "audit export": json.dumps(audit_export_json()),
                 "certificate": json.dumps(certificate.bundle),
                 "certificate payload": base64.b64decode(certificate.bundle["envelope"]["payload"]).decode(),
                 "certificate pdf": pdf_text(bytes(certificate.pdf)),
                 "job rows": json.dumps(list(UnlearningJob.objects.values("targets", "log", "failure")),
                                        default=str),
                 "urls": "\n".join(urls)}
    identifiers = raw_identifiers(served.corpus_dir)
    assert "compliance.job_unlearn" in haystacks["worker logs"]  # the worker really logged the run
    for where, text in haystacks.items():
        leaked = sorted(i for i in identifiers if i in text)
        assert not leaked, f"{where} contains raw identifiers"


def test_a_worker_killed_during_certify_promotes_and_certifies_exactly_once(served: Served, approve,
                                                                           start_worker) -> None:
    held, release = threading.Event(), threading.Event()

    def hold_deployment_row() -> None:  # certify blocks on this lock: the worker is killed inside it
        try:
            with transaction.atomic():
                Deployment.objects.select_for_update(no_key=True).get(name="default")
                held.set()
                release.wait(120)
        finally:
            connections.close_all()

    first = start_worker(PIPELINE_TEST_UNLEARN_SECONDS="3")
    request = approve()
    wait_for(lambda: (job := the_job()) is not None and job.step == "unlearn" and job.progress > 0,
             timeout=60, what="unlearning to start")  # planned: now hold the row promotion needs
    locker = threading.Thread(target=hold_deployment_row)
    locker.start()
    held.wait(10)
    try:
        wait_for(lambda: (job := the_job()).step == "certify" and bool(job.lease_owner),
                 timeout=60, what="a worker inside certify")
        time.sleep(1.0)
        kill_hard(first)
    finally:
        release.set()
        locker.join()
    start_worker()
    wait_for(lambda: the_job().state == JobState.SUCCEEDED, timeout=120, what="the job to finish")
    assert_exactly_once(served, request)


def test_a_broker_restart_mid_job_loses_nothing(served: Served, approve, start_worker, tmp_path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    broker = redis_start(port, tmp_path / "redis-1.log")
    # the worker's embedded beat runs the sweep: it plans the request and re-sends lost step tasks
    start_worker(wait=False, beat=True, CELERY_BROKER_URL=url, OBLIVIO_CACHE_URL=url,
                 PIPELINE_TEST_UNLEARN_SECONDS="6")
    try:
        request = approve()
        wait_for(lambda: (job := the_job()) is not None and job.step == "unlearn" and job.progress > 0,
                 timeout=90, sweep=False, what="unlearning to start")
        broker.stop()  # by PID: the Redis this test started; the step goes on, the DB is the truth
        wait_for(lambda: the_job().step == "verify", timeout=60, sweep=False, what="unlearn to finish")
        time.sleep(2)
        broker = redis_start(port, tmp_path / "redis-2.log")  # empty: every queued message is gone
        wait_for(lambda: the_job().state == JobState.SUCCEEDED, timeout=120, sweep=False,
                 what="the job to finish after the restart")
    finally:
        broker.stop()
    assert_exactly_once(served, request)


def test_cancelling_a_running_job_stops_the_worker_step(served: Served, approve, start_worker,
                                                        officer) -> None:
    start_worker(PIPELINE_TEST_UNLEARN_SECONDS="30")
    request = approve()
    wait_for(lambda: (job := the_job()) is not None and job.step == "unlearn" and job.progress > 0,
             timeout=60, what="unlearning to start")
    started = time.monotonic()
    job_cancel(job_id=the_job().pk, actor=officer.principal)
    wait_for(lambda: the_job().state == JobState.CANCELLED, timeout=30, what="the cancellation")
    assert time.monotonic() - started < 10  # well before the 30 s step would have ended
    request.refresh_from_db()
    assert request.status == Status.ESCALATED  # a person decides: reschedule or refuse
    assert Deployment.objects.get(name="default").served == served.version
    assert not Certificate.objects.exists()
