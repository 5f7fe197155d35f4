"""REST endpoints of the unlearning pipeline: jobs, deployments and model versions, verification reports,
certificates (JSON and PDF) and the public keys that check them. Thin views over pipeline services.
"""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from core.principals import Role

from ..pipeline import selectors
from ..pipeline.certify import certificate_verify_stored, public_key_list
from ..pipeline.guard import guard_screen
from ..pipeline.jobs import job_cancel
from ..pipeline.registry import version_rollback
from . import schema
from .permissions import READERS, principal_of
from .pipeline_serializers import (
    CertificateCheckOut,
    CertificateOut,
    DeploymentOut,
    JobFilterIn,
    JobOut,
    ModelVersionOut,
    PublicKeyOut,
    RollbackIn,
    ScreenIn,
    ScreenOut,
    VerificationReportOut,
)
from .views import _ApiView, _ListView, _validated

#: Who may see and steer models (hospital systems see their jobs and certificates, not the registry).
MODEL_READERS = frozenset({Role.COMPLIANCE_OFFICER, Role.ML_ENGINEER, Role.AUDITOR})
MODEL_OPERATORS = frozenset({Role.COMPLIANCE_OFFICER, Role.ML_ENGINEER})


@extend_schema_view(get=extend_schema(
    tags=["jobs"], summary="Unlearning jobs (state, step, progress)", parameters=[JobFilterIn],
    responses={200: JobOut(many=True), **schema.errors(400, 401, 403, 429)}))
class JobListView(_ListView):
    roles = {"GET": READERS}
    serializer_class = JobOut

    def get_queryset(self) -> QuerySet:
        filters = _validated(JobFilterIn, self.request.query_params.dict())
        return selectors.job_list(principal=principal_of(self.request), **filters)


class JobDetailView(_ApiView):
    roles = {"GET": READERS}

    @extend_schema(tags=["jobs"], summary="One job: progress, heartbeat, attempts, failure",
                   responses={200: JobOut, **schema.errors(401, 403, 404, 429)})
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        return Response(JobOut(selectors.job_get(principal=principal_of(request), job_id=pk)).data)


class JobCancelView(_ApiView):
    roles = {"POST": MODEL_OPERATORS}
    throttle_scope = "write"

    @extend_schema(tags=["jobs"], summary="Cancel a job before it certifies",
                   description="A job no worker holds stops now; a running one at its next heartbeat or "
                               "step boundary. Its requests become `failed`.", request=None,
                   responses={200: JobOut, **schema.errors(401, 403, 404, 409, 429)})
    def post(self, request: Request, pk: uuid.UUID) -> Response:
        job = job_cancel(job_id=pk, actor=principal_of(request))
        return Response(JobOut(selectors.job_get(principal=principal_of(request), job_id=job.pk)).data)


@extend_schema_view(get=extend_schema(
    tags=["models"], summary="Deployments and their served model version",
    responses={200: DeploymentOut(many=True), **schema.errors(400, 401, 403, 429)}))
class DeploymentListView(_ListView):
    roles = {"GET": MODEL_READERS}
    serializer_class = DeploymentOut

    def get_queryset(self) -> QuerySet:
        return selectors.deployment_list()


@extend_schema_view(get=extend_schema(
    tags=["models"], summary="Model versions of a deployment, newest first",
    responses={200: ModelVersionOut(many=True), **schema.errors(400, 401, 403, 404, 429)}))
class VersionListView(_ListView):
    roles = {"GET": MODEL_READERS}
    serializer_class = ModelVersionOut

    def get_queryset(self) -> QuerySet:
        return selectors.version_list(deployment=selectors.deployment_get(name=self.kwargs["name"]))


class RollbackView(_ApiView):
    roles = {"POST": MODEL_OPERATORS}
    throttle_scope = "write"

    @extend_schema(tags=["models"], summary="Serve a retired version again",
                   description="Refused (409) for a version that still holds data a certified request "
                               "removed: rollback never brings forgotten data back.",
                   request=RollbackIn,
                   responses={200: ModelVersionOut, **schema.errors(400, 401, 403, 404, 409, 415, 422, 429)})
    def post(self, request: Request, name: str) -> Response:
        arguments = _validated(RollbackIn, request.data)
        version = version_rollback(deployment=name, version_id=arguments["version"],
                                   reason=arguments["reason"], actor=principal_of(request))
        return Response(ModelVersionOut(version).data)


class VerificationReportView(_ApiView):
    roles = {"GET": READERS}

    @extend_schema(tags=["jobs"], summary="A verification report (checks, values, thresholds, digest)",
                   responses={200: VerificationReportOut, **schema.errors(401, 403, 404, 429)})
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        record = selectors.verification_get(principal=principal_of(request), report_id=pk)
        return Response(VerificationReportOut(record).data)


class RequestCertificateView(_ApiView):
    roles = {"GET": READERS}

    @extend_schema(tags=["certificates"], summary="The signed certificate of a certified request",
                   description="`bundle` is what `oblivio certificate verify` checks offline.",
                   responses={200: CertificateOut, **schema.errors(401, 403, 404, 429)})
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        certificate = selectors.certificate_of_request(principal=principal_of(request), request_id=pk)
        return Response(CertificateOut(certificate).data)


class RequestCertificatePdfView(_ApiView):
    roles = {"GET": READERS}

    @extend_schema(tags=["certificates"], summary="The certificate as PDF (for people)",
                   responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY),
                              **schema.errors(401, 403, 404, 429)})
    def get(self, request: Request, pk: uuid.UUID) -> HttpResponse:
        certificate = selectors.certificate_of_request(principal=principal_of(request), request_id=pk)
        response = HttpResponse(bytes(certificate.pdf), content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="certificate-{certificate.pk}.pdf"'
        return response


class CertificateVerifyView(_ApiView):
    roles = {"GET": READERS}

    @extend_schema(tags=["certificates"], summary="Check a stored certificate (the PDF's QR link)",
                   description="Signature, key, subjects, report digest, and that it names this request and "
                               "the model version it was issued for.",
                   responses={200: CertificateCheckOut, **schema.errors(401, 403, 404, 429)})
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        certificate = selectors.certificate_get(principal=principal_of(request), certificate_id=pk)
        return Response(CertificateCheckOut(certificate_verify_stored(certificate).as_dict()).data)


class PublicKeyListView(_ApiView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(tags=["certificates"], summary="Public keys that sign certificates (no login needed)",
                   auth=[], responses={200: PublicKeyOut(many=True), **schema.errors(429)})
    def get(self, request: Request) -> Response:
        return Response(PublicKeyOut(public_key_list(), many=True).data)


class ScreenView(_ApiView):
    roles = {"POST": frozenset({Role.ML_ENGINEER})}
    throttle_scope = "lookup"

    @extend_schema(tags=["inference-guard"], summary="Should the served model refuse this prompt?",
                   description="For the serving gateway: from approval until certification, prompts naming a "
                               "subject under an erasure request (identifiers matched by keyed hash, images "
                               "by SHA-256) are refused. This is suppression, never counted as unlearning.",
                   request=ScreenIn,
                   responses={200: ScreenOut, **schema.errors(400, 401, 403, 411, 413, 415, 429)})
    def post(self, request: Request) -> Response:
        decision = guard_screen(**_validated(ScreenIn, request.data))
        return Response(ScreenOut({"refused": decision.refused, "message": decision.message}).data)
