"""Reads of pipeline objects, scoped to what the principal may see (other institutions' objects are 404)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from core.principals import Principal

from ..errors import NotFound
from ..models import Certificate, Deployment, ModelVersion, UnlearningJob, VerificationRecord


def job_list(*, principal: Principal, state: str | None = None) -> QuerySet[UnlearningJob]:
    jobs = UnlearningJob.objects.select_related("deployment", "institution", "base_version", "candidate") \
        .prefetch_related("requests")
    if principal.institution_ids is not None:
        jobs = jobs.filter(institution_id__in=principal.institution_ids)
    if state:
        jobs = jobs.filter(state=state)
    return jobs.order_by("-created_at", "id")


def job_get(*, principal: Principal, job_id: uuid.UUID) -> UnlearningJob:
    job = job_list(principal=principal).filter(pk=job_id).first()
    if job is None:
        raise NotFound("no job has this id", field="id", code="job_not_found")
    return job


def deployment_list() -> QuerySet[Deployment]:
    return Deployment.objects.select_related("served").order_by("name")


def deployment_get(*, name: str) -> Deployment:
    deployment = deployment_list().filter(name=name).first()
    if deployment is None:
        raise NotFound("no deployment has this name", field="name", code="deployment_not_found")
    return deployment


def version_list(*, deployment: Deployment) -> QuerySet[ModelVersion]:
    return deployment.versions.select_related("parent").order_by("-created_at", "id")


def verification_get(*, principal: Principal, report_id: uuid.UUID) -> VerificationRecord:
    record = VerificationRecord.objects.select_related("job", "candidate").filter(pk=report_id).first()
    if record is None or not principal.sees(record.job.institution_id):
        raise NotFound("no verification report has this id", field="id", code="report_not_found")
    return record


def certificate_of_request(*, principal: Principal, request_id: uuid.UUID) -> Certificate:
    certificate = Certificate.objects.select_related("request", "version") \
        .filter(request_id=request_id).first()
    if certificate is None or not principal.sees(certificate.request.institution_id):
        raise NotFound("this request has no certificate (yet)", field="id", code="certificate_not_found")
    return certificate


def certificate_get(*, principal: Principal, certificate_id: uuid.UUID) -> Certificate:
    certificate = Certificate.objects.select_related("request", "version").filter(pk=certificate_id).first()
    if certificate is None or not principal.sees(certificate.request.institution_id):
        raise NotFound("no certificate has this id", field="id", code="certificate_not_found")
    return certificate
