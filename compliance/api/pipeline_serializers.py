"""Serializers of the pipeline endpoints (jobs, model versions, reports, certificates, keys). No PHI."""

from __future__ import annotations

import base64

from django.core.validators import RegexValidator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.choices import enum_choices

from ..models import Deployment, JobState, ModelVersion, UnlearningJob, VerificationRecord
from .serializers import Choice, Text

#: Standard base64 with its padding (what ``b64decode(validate=True)`` reads), not empty.
BASE64 = RegexValidator(r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)$",
                        "images must be base64", code="invalid_image")


class UtilityBaselineOut(serializers.Serializer):
    """The lineage's utility baseline: panel size and the first served version's success rate on it."""

    items = serializers.IntegerField()
    success_rate = serializers.FloatField()


class ModelVersionOut(serializers.ModelSerializer):
    parent = serializers.UUIDField(source="parent_id", allow_null=True)
    deployment = serializers.CharField(source="deployment.name")
    forgotten_record_count = serializers.SerializerMethodField()
    utility_baseline = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["id", "deployment", "status", "artifact_digest", "base_digest", "parent", "method", "exact",
                  "corpus", "forgotten_record_count", "utility_baseline", "job", "created_at", "served_at",
                  "retired_at", "deleted_at"]

    def get_forgotten_record_count(self, version: ModelVersion) -> int:
        return len(version.forgotten_records)

    @extend_schema_field(UtilityBaselineOut(allow_null=True))
    def get_utility_baseline(self, version: ModelVersion) -> dict | None:
        flags = version.utility_baseline
        if not flags:
            return None
        return {"items": len(flags), "success_rate": round(sum(map(bool, flags.values())) / len(flags), 4)}


class DeploymentOut(serializers.ModelSerializer):
    served = ModelVersionOut(allow_null=True)

    class Meta:
        model = Deployment
        fields = ["name", "served", "updated_at"]


class JobOut(serializers.ModelSerializer):
    deployment = serializers.CharField(source="deployment.name")
    institution = serializers.CharField(source="institution.code")
    requests = serializers.SerializerMethodField()
    base_digest = serializers.CharField(source="base_version.artifact_digest")
    candidate_digest = serializers.CharField(source="candidate.artifact_digest", allow_null=True,
                                             default=None)
    method = serializers.SerializerMethodField()
    forget_record_count = serializers.SerializerMethodField()
    verification_reports = serializers.SerializerMethodField()

    class Meta:
        model = UnlearningJob
        fields = ["id", "deployment", "institution", "requests", "state", "step", "progress", "rung",
                  "method", "attempts", "cancel_requested", "heartbeat_at", "lease_expires_at", "base_digest",
                  "candidate_digest", "forget_record_count", "scope_digest", "verification_reports",
                  "failure", "created_at", "started_at", "finished_at"]

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_requests(self, job: UnlearningJob) -> list[str]:
        return sorted(str(request.pk) for request in job.requests.all())

    def get_method(self, job: UnlearningJob) -> str:
        return job.policy["ladder"][job.rung]["method"]

    def get_forget_record_count(self, job: UnlearningJob) -> int:
        return len(job.forget_records)

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_verification_reports(self, job: UnlearningJob) -> list[str]:
        return [str(pk) for pk in job.verifications.order_by("created_at").values_list("pk", flat=True)]


class JobFilterIn(serializers.Serializer):
    state = Choice(enum_choices(JobState), required=False)


class VerificationReportOut(serializers.ModelSerializer):
    candidate_digest = serializers.CharField(source="candidate.artifact_digest")

    class Meta:
        model = VerificationRecord
        fields = ["id", "job", "rung", "passed", "digest", "candidate_digest", "summary", "report",
                  "created_at"]


class RollbackIn(serializers.Serializer):
    version = serializers.UUIDField(help_text="A retired version of this deployment.")
    reason = Text(max_length=2000)


class PublicKeyOut(serializers.Serializer):
    key_id = serializers.CharField()
    algorithm = serializers.CharField()
    public_key_pem = serializers.CharField()
    current = serializers.BooleanField(help_text="Whether new certificates are signed with it.")


class CertificateCheckOut(serializers.Serializer):
    ok = serializers.BooleanField()
    problems = serializers.ListField(child=serializers.CharField())
    key_id = serializers.CharField(allow_null=True)
    request_id = serializers.UUIDField(allow_null=True)
    model_before = serializers.CharField(allow_null=True)
    model_after = serializers.CharField(allow_null=True)


@extend_schema_field(OpenApiTypes.OBJECT)
class BundleField(serializers.JSONField):
    """The certificate bundle: ``{"format", "envelope" (DSSE), "verification_report"}``."""


class CertificateOut(serializers.Serializer):
    id = serializers.UUIDField()
    request = serializers.UUIDField(source="request_id")
    key_id = serializers.CharField()
    issued_at = serializers.DateTimeField()
    model_digest = serializers.CharField(source="version.artifact_digest")
    bundle = BundleField()


class ScreenIn(serializers.Serializer):
    prompt = Text(max_length=20000, allow_blank=True, trim_whitespace=False)
    identifiers = serializers.ListField(
        child=Text(max_length=255), max_length=50, default=list,
        help_text="Identifiers the serving layer knows (e.g. from DICOM headers).")
    images = serializers.ListField(
        child=Text(max_length=4_000_000, trim_whitespace=False, validators=[BASE64]), max_length=8,
        default=list, help_text="Images of the prompt, base64.")

    def validate_images(self, value: list[str]) -> list[bytes]:
        return [base64.b64decode(item) for item in value]  # BASE64 checked each


class ScreenOut(serializers.Serializer):
    refused = serializers.BooleanField()
    message = serializers.CharField(allow_blank=True)
