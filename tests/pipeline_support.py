"""Shared setup of the pipeline tests: an ingested on-disk corpus, a served model, approved requests.

Import the fixtures into a test module with ``from pipeline_support import *``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from factories import corpus_dir_write, corpus_records

from compliance.attestation import CertificateFacts, ModelRef
from compliance.forget_requests import forget_request_approve, forget_request_create, forget_request_review
from compliance.legal import LegalBasis, Regulation, RequesterType
from compliance.models import ForgetRequest, JobState, ModelVersion, UnlearningJob
from compliance.pipeline.jobs import jobs_plan, jobs_release_due
from compliance.pipeline.registry import model_version_register
from compliance.pipeline.steps import job_run_step
from compliance.subjects import SubjectIdentifiers
from core.principals import SYSTEM, Principal
from hierarchy.models import Corpus, Institution
from hierarchy.services import corpus_ingest

SAMPLE_REPORT = {"schema": "oblivio.verification-report/v1", "passed": True,
          "checks": [{"name": "mia_auc", "value": 0.51, "threshold": 0.6, "passed": True}]}


def sample_facts(request_id: str = "5b0c8c0e-0000-4000-8000-000000000001", **overrides) -> CertificateFacts:
    values = dict(
        request_id=request_id, institution="demo-hospital", regulation="gdpr", level="patient",
        subject_hash="ab" * 32, scope_digest="cd" * 32, scope_counts={"forget": 12, "retain": 80},
        method="graddiff", exact=False,
        before=ModelRef("v1", "11" * 32, "00" * 32), after=ModelRef("v2", "22" * 32, "00" * 32),
        report=SAMPLE_REPORT, report_summary={"passed": True, "checks": SAMPLE_REPORT["checks"]},
        times={"approved_at": "2026-12-02T10:00:00+00:00", "certified_at": "2026-12-02T10:05:00+00:00"},
        audit_head={"seq": 41, "hash": "ee" * 32}, job_id="job-1")
    values.update(overrides)
    return CertificateFacts(**values)


TESTS_DIR = Path(__file__).resolve().parent
ENGINE = "pipeline_engine.ScriptedEngine"

#: Settings of a fast pipeline (the same values go to worker processes as environment variables).
FAST = {"OBLIVIO_PIPELINE_ENGINE": ENGINE, "OBLIVIO_JOB_BATCH_WINDOW_SECONDS": "0",
        "OBLIVIO_JOB_LEASE_SECONDS": "3", "OBLIVIO_JOB_HEARTBEAT_SECONDS": "0.5",
        "OBLIVIO_JOB_REDISPATCH_SECONDS": "2", "OBLIVIO_PIPELINE_SWEEP_SECONDS": "1"}


@dataclass
class Served:
    corpus: Corpus
    corpus_dir: Path
    version: ModelVersion
    institution: Institution
    mrns: list[str]  # raw MRNs of the trained patients of the first institution

    def study_uids(self, mrn: str) -> list[str]:
        records = [json.loads(line) for line in (self.corpus_dir / "records.jsonl").read_text().splitlines()]
        return sorted({r["study_id"] for r in records if r["patient_id"] == mrn})

    def approve(self, officer: Principal, mrn: str | None = None, *,
                study_uid: str | None = None) -> ForgetRequest:
        """An approved GDPR request about patient ``mrn`` (the first by default) or study ``study_uid``."""
        subject = SubjectIdentifiers(study_uid=study_uid) if study_uid else \
            SubjectIdentifiers(mrn_system=self.institution.mrn_system, mrn_value=mrn or self.mrns[0])
        request = forget_request_create(actor=SYSTEM, subject=subject, regulation=Regulation.GDPR,
                                        legal_basis=LegalBasis.GDPR_17_1_B,
                                        requester_type=RequesterType.DATA_SUBJECT)
        forget_request_review(request_id=request.pk, actor=officer)
        return forget_request_approve(request_id=request.pk, actor=officer, note="scope confirmed")


def raw_identifiers(corpus_dir: Path) -> set[str]:
    """Every raw identifier of the corpus (patient ids are hashed as MRNs; study ids are UIDs)."""
    records = [json.loads(line) for line in (corpus_dir / "records.jsonl").read_text().splitlines()]
    return {r["patient_id"] for r in records} | {r["study_id"] for r in records}


def pdf_text(pdf: bytes) -> str:
    """The PDF with its compressed content streams inflated (to search it for identifiers)."""
    parts = [pdf.decode("latin-1")]
    for match in re.finditer(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        data = match.group(1).strip()
        with contextlib.suppress(ValueError, zlib.error):
            if data.endswith(b"~>"):  # reportlab wraps streams in ASCII85
                data = base64.a85decode(data, adobe=True)
            parts.append(zlib.decompress(data).decode("latin-1"))
    return "\n".join(parts)


def write_model(root: Path, tag: str = "base") -> Path:
    """A stand-in artifact directory (config + metadata); the scripted engine only copies it."""
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "test", "tag": tag}))
    (root / "oblivio.json").write_text(json.dumps({"kind": "fine-tuned", "versions": {},
                                                   "base_digest": None}))
    return root


def write_corpus(root: Path) -> Path:
    """The tiny test corpus, each study with its own image bytes (so image digests tell them apart)."""
    records = corpus_records(prefix=f"t{uuid.uuid4().hex[:6]}")
    corpus_dir_write(root, records=records)
    for record in records:
        path = root / record.image
        path.write_bytes(path.read_bytes().split(b"IEND")[0] + b"IEND\xaeB`\x82" + record.study_id.encode())
    return root


@pytest.fixture
def pipeline_settings(settings: Any) -> Any:
    for name, value in FAST.items():
        setattr(settings, name, float(value) if value.replace(".", "").isdigit() else value)
    settings.CELERY_BEAT_SCHEDULE = {}
    return settings


@pytest.fixture
def served(transactional_db: None, tmp_path: Path, pipeline_settings: Any) -> Served:
    corpus_dir = write_corpus(tmp_path / "corpus")
    corpus = corpus_ingest(corpus_dir=corpus_dir, actor=SYSTEM).corpus
    version = model_version_register(deployment="default", artifact_dir=write_model(tmp_path / "model"),
                                     corpus=corpus, corpus_root=corpus_dir, actor=SYSTEM)
    records = [json.loads(line) for line in (corpus_dir / "records.jsonl").read_text().splitlines()]
    mrns = sorted({r["patient_id"] for r in records if r["institution_id"] == "H1" and r["split"] == "train"})
    return Served(corpus=corpus, corpus_dir=corpus_dir, version=version,
                  institution=Institution.objects.get(code="H1"), mrns=mrns)


@pytest.fixture
def approve(served: Served, officer: Any) -> Callable[..., ForgetRequest]:
    def make(mrn: str | None = None, **subject: str) -> ForgetRequest:
        return served.approve(officer.principal, mrn, **subject)
    return make


def plan_one() -> UnlearningJob:
    jobs = jobs_plan()
    assert jobs_release_due() == 1
    (job,) = set(jobs)
    job.refresh_from_db()
    return job


def drive(job: UnlearningJob, limit: int = 12) -> UnlearningJob:
    """Run whatever step the job is at until it stops (what the ml worker does)."""
    for _ in range(limit):
        job.refresh_from_db()
        if job.state not in (JobState.QUEUED, JobState.RUNNING):
            return job
        assert job_run_step(str(job.pk), job.step) == "done"
    raise AssertionError("job did not finish")


__all__ = ["ENGINE", "FAST", "SAMPLE_REPORT", "TESTS_DIR", "Served", "approve", "pipeline_settings",
           "drive", "pdf_text", "plan_one", "raw_identifiers", "sample_facts", "served", "write_model"]
