"""The unlearning pipeline's rows: model versions and the served pointer, jobs, verification reports,
certificates, per-institution policies and the inference-time guard.

The job row is the source of truth for a running job (state, step, progress, lease, cancel flag);
Celery messages only say "look at job X". Unique constraints make promotion and certification
happen at most once whatever the workers do.
"""

from __future__ import annotations

import enum
import uuid

from django.db import models
from django.db.models import Q


def _choices(enum_type: type) -> list[tuple[str, str]]:
    return [(member.value, member.value) for member in enum_type]


class VersionStatus(enum.StrEnum):
    CANDIDATE = "candidate"  # produced by a job, not (yet) promoted
    SERVED = "served"
    RETIRED = "retired"  # was served; artifact kept for rollback
    REJECTED = "rejected"  # failed verification
    DELETED = "deleted"  # artifact removed (it held forgotten data); digests stay in the audit chain


class Deployment(models.Model):
    """Where a model is served; ``served`` is its one served-version pointer."""

    name = models.SlugField(max_length=64, unique=True)
    served = models.OneToOneField("ModelVersion", on_delete=models.PROTECT, null=True, blank=True,
                                  related_name="serving_deployment")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    """One model artifact of a deployment and where it came from."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT, related_name="versions")
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True,
                               related_name="children")
    artifact_digest = models.CharField(max_length=64, help_text="Content digest of the artifact.")
    base_digest = models.CharField(max_length=64, blank=True,
                                   help_text="Digest of the base model an adapter-only artifact names.")
    storage_key = models.CharField(max_length=255, blank=True, help_text="Blank once deleted.")
    corpus = models.ForeignKey("hierarchy.Corpus", on_delete=models.PROTECT, related_name="model_versions",
                               help_text="The corpus this lineage was trained on.")
    corpus_root = models.CharField(max_length=500, help_text="Directory of that corpus (ML workers read it).")
    method = models.CharField(max_length=32, blank=True,
                              help_text="Unlearning method; blank for a trained model.")
    exact = models.BooleanField(default=False, help_text="Produced by exact unlearning (retraining).")
    forgotten_records = models.JSONField(default=list, blank=True,
                                         help_text="Record ids removed along this lineage (not PHI).")
    utility_baseline = models.JSONField(
        default=dict, blank=True,
        help_text="Per record id of the baseline panel: did this lineage's first served version answer "
                  "it right (not PHI; mllm.verify.baseline). Empty until the lineage's first verification.")
    job = models.ForeignKey("UnlearningJob", on_delete=models.PROTECT, null=True, blank=True,
                            related_name="versions")
    status = models.CharField(max_length=16, choices=_choices(VersionStatus),
                              default=VersionStatus.CANDIDATE.value)
    created_at = models.DateTimeField(auto_now_add=True)
    served_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "artifact_digest"], name="one_version_per_digest"),
            models.UniqueConstraint(fields=["job"], condition=Q(status="served") | Q(status="retired"),
                                    name="one_promotion_per_job"),
        ]

    def __str__(self) -> str:
        return f"{self.deployment_id}:{self.artifact_digest[:12]} ({self.status})"


class JobState(enum.StrEnum):
    PLANNED = "planned"  # waiting for the batching window to close
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    ESCALATED = "escalated"  # every rung failed: a person decides
    FAILED = "failed"  # an error that is not a verdict (bad artifact, collapse on every rung)
    CANCELLED = "cancelled"


class JobStep(enum.StrEnum):
    UNLEARN = "unlearn"
    VERIFY = "verify"
    CERTIFY = "certify"
    DONE = "done"


ACTIVE_JOB_STATES = (JobState.PLANNED, JobState.QUEUED, JobState.RUNNING)


class UnlearningJob(models.Model):
    """Approved requests of one institution against one deployment's served model, worked as a unit."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT, related_name="jobs")
    institution = models.ForeignKey("hierarchy.Institution", on_delete=models.PROTECT, related_name="jobs")
    requests = models.ManyToManyField("compliance.ForgetRequest", related_name="jobs")
    base_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="jobs_from")
    candidate = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, null=True, blank=True,
                                  related_name="jobs_for")
    state = models.CharField(max_length=16, choices=_choices(JobState), default=JobState.PLANNED.value)
    step = models.CharField(max_length=16, choices=_choices(JobStep), default=JobStep.UNLEARN.value)
    progress = models.FloatField(default=0.0, help_text="Percent of the current step.")
    rung = models.PositiveSmallIntegerField(default=0, help_text="Escalation rung of the policy ladder.")
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker claimed the current step.")
    policy = models.JSONField(help_text="Method ladder and thresholds in force when planned.")
    forget_records = models.JSONField(default=list, help_text="Record ids to forget (not PHI).")
    targets = models.JSONField(default=dict, help_text="Per request: level and record ids (not PHI).")
    scope_digest = models.CharField(max_length=64)
    not_before = models.DateTimeField(help_text="End of the batching window.")
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="Last task sent for this job.")
    cancel_requested = models.BooleanField(default=False)
    failure = models.JSONField(null=True, blank=True, help_text="Failed checks or the error (no PHI).")
    log = models.JSONField(default=list, help_text="One entry per step run (no PHI).")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [models.Index(fields=["state", "lease_expires_at"])]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.state}/{self.step})"


class VerificationRecord(models.Model):
    """One verification report of a candidate (the full report JSON and its digest)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(UnlearningJob, on_delete=models.PROTECT, related_name="verifications")
    candidate = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="verifications")
    rung = models.PositiveSmallIntegerField()
    passed = models.BooleanField()
    digest = models.CharField(max_length=64, help_text="SHA-256 of the report's RFC 8785 JSON.")
    report = models.JSONField()
    summary = models.JSONField(help_text="Checks with values and thresholds.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "candidate"], name="one_report_per_candidate")]

    def __str__(self) -> str:
        return f"verification {self.digest[:12]} ({'pass' if self.passed else 'fail'})"


class Certificate(models.Model):
    """The signed certificate of one certified request (at most one per request).

    ``job`` and ``verification`` are empty only when the served model was never trained on a record
    in the request's scope (nothing was unlearned; ``version`` is the served model it names)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    request = models.OneToOneField("compliance.ForgetRequest", on_delete=models.PROTECT,
                                   related_name="certificate")
    job = models.ForeignKey(UnlearningJob, on_delete=models.PROTECT, related_name="certificates",
                            null=True, blank=True)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="certificates")
    verification = models.ForeignKey(VerificationRecord, on_delete=models.PROTECT,
                                     related_name="certificates", null=True, blank=True)
    key_id = models.CharField(max_length=64)
    bundle = models.JSONField(help_text="Envelope + verification report (oblivio-certificate/v1).")
    pdf = models.BinaryField()
    issued_at = models.DateTimeField()

    class Meta:
        ordering = ["-issued_at", "id"]

    def __str__(self) -> str:
        return f"certificate of {self.request_id}"


class PipelinePolicy(models.Model):
    """An institution's unlearning method ladder and verdict thresholds (settings give the default)."""

    institution = models.OneToOneField("hierarchy.Institution", on_delete=models.CASCADE,
                                       related_name="pipeline_policy")
    ladder = models.JSONField(help_text='Rungs tried in order: [{"method": ..., "config": {...}}, ...].')
    thresholds = models.JSONField(default=dict, blank=True, help_text="Verdict policy overrides.")
    guard_stays_on = models.BooleanField(default=False,
                                         help_text="Keep refusing in-scope prompts after certification.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"pipeline policy of {self.institution_id}"


class GuardRule(models.Model):
    """Inference-time suppression for one approved request: prompts matching it are refused.

    Suppression only: it is recorded as such and never counted as unlearning.
    """

    request = models.OneToOneField("compliance.ForgetRequest", on_delete=models.CASCADE,
                                   related_name="guard_rule")
    identifier_hashes = models.JSONField(help_text="Keyed hashes of the subject's identifiers.")
    image_digests = models.JSONField(default=list, help_text="SHA-256 of the subject's images.")
    active = models.BooleanField(default=True)
    stays_on = models.BooleanField(default=False)
    activated_at = models.DateTimeField()
    deactivated_at = models.DateTimeField(null=True, blank=True)
    refusals = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-activated_at"]
        indexes = [models.Index(fields=["active"])]

    def __str__(self) -> str:
        return f"guard for {self.request_id} ({'on' if self.active else 'off'})"
