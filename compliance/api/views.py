"""REST API v1. Thin views: validate with an input serializer, call one service or selector, render.

Identifiers travel only in POST bodies; URLs carry request UUIDs. Objects of institutions an API
key is not scoped to answer 404, exactly like objects that do not exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.principals import Role

from .. import forget_requests as services
from ..idempotency import HEADER, body_fingerprint, idempotency_key_check, idempotent_call
from ..pipeline.jobs import request_reschedule
from ..selectors import (
    ROW_FIELDS,
    audit_event_list,
    forget_request_get,
    forget_request_list,
    institution_list,
)
from ..subjects import subject_find
from . import schema
from .errors import LengthRequired
from .permissions import AUDIT_READERS, OFFICERS, READERS, SUBMITTERS, HasRole, principal_of
from .representation import forget_request_json, forget_request_rows_related
from .serializers import (
    AuditEventFilterIn,
    AuditEventOut,
    ExtendIn,
    ForgetRequestCreateIn,
    ForgetRequestFilterIn,
    ForgetRequestOut,
    InstitutionOut,
    NoteIn,
    RefuseIn,
    SubjectIn,
    SubjectOut,
)


def _validated(serializer_class: type[serializers.Serializer], data: Any) -> Any:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class _Policy:
    """Shared by every API view: role permissions, a throttle scope, bodies with a length, each query
    parameter given once (``?limit=5&limit=500`` is ambiguous, as a JSON key given twice is)."""

    permission_classes = [HasRole]
    roles: Mapping[str, frozenset[Role]] = {}
    throttle_scope = "read"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            raise LengthRequired()  # Django reads bodies by Content-Length: a chunked one would look empty
        super().initial(request, *args, **kwargs)
        if any(len(values) > 1 for _name, values in request.query_params.lists()):
            raise serializers.ValidationError("each query parameter may be given once",  # names not echoed
                                              code="duplicate_parameter")


class _ApiView(_Policy, APIView):
    pass


class _ListView(_Policy, generics.ListAPIView):
    pass


@extend_schema(tags=["institutions"], summary="Institutions visible to the caller",
               responses={200: InstitutionOut(many=True), **schema.errors(400, 401, 403, 429)})
class InstitutionListView(_ListView):
    roles = {"GET": READERS}
    serializer_class = InstitutionOut

    def get_queryset(self) -> QuerySet:
        return institution_list(principal=principal_of(self.request))


class SubjectLookupView(_ApiView):
    roles = {"POST": SUBMITTERS}
    throttle_scope = "lookup"

    @extend_schema(tags=["subjects"], summary="Find a hierarchy node by MRN, StudyInstanceUID or code",
                   description="Identifiers go in the body, never in URLs; the answer names the node by "
                               "its keyed hash. Unknown subjects and other institutions' subjects are 404.",
                   request=SubjectIn, examples=schema.SUBJECT_EXAMPLES,
                   responses={200: SubjectOut, **schema.errors(400, 401, 403, 404, 411, 413, 415, 429)})
    def post(self, request: Request) -> Response:
        path = subject_find(principal=principal_of(request), identifiers=_validated(SubjectIn, request.data))
        return Response(SubjectOut(path).data)


@extend_schema_view(get=extend_schema(
    tags=["forget-requests"], summary="List forget requests", parameters=[ForgetRequestFilterIn],
    responses={200: ForgetRequestOut(many=True), **schema.errors(400, 401, 403, 429)}))
class ForgetRequestListView(_ListView):
    roles = {"GET": READERS, "POST": SUBMITTERS}
    serializer_class = ForgetRequestOut

    @property
    def throttle_scope(self) -> str:  # type: ignore[override]
        return "write" if self.request.method == "POST" else "read"

    def get_queryset(self) -> QuerySet:
        filters = _validated(ForgetRequestFilterIn, self.request.query_params.dict())
        return forget_request_list(principal=principal_of(self.request), today=timezone.localdate(),
                                   **filters).values(*ROW_FIELDS)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A page of rows rendered as ``ForgetRequestOut`` (no model instances, no serializer walk)."""
        rows = forget_request_rows_related(self.paginate_queryset(self.get_queryset()))
        today = timezone.localdate()
        return self.get_paginated_response([forget_request_json(row, today) for row in rows])

    @extend_schema(
        tags=["forget-requests"], summary="Submit a forget request",
        description=f"Send an `{HEADER}` header to make retries safe: a retry with the same key and body "
                    "returns the original response (header `Idempotent-Replayed: true`) and never creates "
                    "a second request; the same key with a different body is refused (422).",
        request=ForgetRequestCreateIn, examples=schema.CREATE_EXAMPLES,
        parameters=[OpenApiParameter(HEADER, {"type": "string", "pattern": "^[!-~]{1,255}$"},
                                     OpenApiParameter.HEADER,
                                     description="1-255 visible ASCII characters, unique per request.")],
        responses={201: ForgetRequestOut, **schema.errors(400, 401, 403, 404, 411, 413, 415, 422, 429)})
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        arguments = _validated(ForgetRequestCreateIn, request.data)

        def create() -> dict[str, Any]:
            return ForgetRequestOut(services.forget_request_create(actor=principal, **arguments)).data

        key = request.headers.get(HEADER)
        if key is None:
            return Response(create(), status=status.HTTP_201_CREATED)
        result = idempotent_call(owner=principal.pk, key=idempotency_key_check(key),
                                 fingerprint=body_fingerprint(request.data), status=status.HTTP_201_CREATED,
                                 execute=create)
        return Response(result.body, status=result.status,
                        headers={"Idempotent-Replayed": "true"} if result.replayed else None)


class ForgetRequestDetailView(_ApiView):
    roles = {"GET": READERS}

    @extend_schema(tags=["forget-requests"], summary="One forget request",
                   responses={200: ForgetRequestOut, **schema.errors(401, 403, 404, 429)})
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        forget_request = forget_request_get(principal=principal_of(request), request_id=pk)
        return Response(ForgetRequestOut(forget_request).data)


class _ActionView(_ApiView):
    """POST /forget-requests/{id}/<action>: one lifecycle service per subclass."""

    roles = {"POST": OFFICERS}
    throttle_scope = "write"
    input_class: type[serializers.Serializer] | None = None
    service: Callable[..., Any]

    def post(self, request: Request, pk: uuid.UUID) -> Response:
        arguments = _validated(self.input_class, request.data) if self.input_class else {}
        forget_request = self.service(request_id=pk, actor=principal_of(request), **arguments)
        return Response(ForgetRequestOut(forget_request).data)


def _action(summary: str, description: str, request: type | None, *,
            examples: list | None = None) -> Callable[[type], type]:
    statuses = (400, 401, 403, 404, 409, 411, 413, 415, 422, 429) if request else (401, 403, 404, 409, 429)
    return extend_schema_view(post=extend_schema(
        tags=["forget-requests"], summary=summary, description=description, request=request,
        examples=examples or [], responses={200: ForgetRequestOut, **schema.errors(*statuses)}))


@_action("Take a request into review", "received → in_review (compliance officer).", None)
class ReviewView(_ActionView):
    service = staticmethod(services.forget_request_review)


@_action("Approve a request", "in_review → approved (compliance officer; not the submitter when the "
         "four-eyes rule is on). Snapshots the resolved scope (counts only).", NoteIn)
class ApproveView(_ActionView):
    input_class = NoteIn
    service = staticmethod(services.forget_request_approve)


@_action("Refuse or partially refuse a request", "→ refused (from received or in_review) or, with "
         "`partial`, in_review → partially_refused. A reason code and an explanation are required.",
         RefuseIn, examples=schema.REFUSE_EXAMPLES)
class RefuseView(_ActionView):
    input_class = RefuseIn
    service = staticmethod(services.forget_request_refuse)


@_action("Extend the deadline", "Once per request, with a notice sent inside the first period: GDPR "
         "`months` (1-2), CCPA `days` (1-45), policy-based regulations `days` as configured.",
         ExtendIn, examples=schema.EXTEND_EXAMPLES)
class ExtendView(_ActionView):
    input_class = ExtendIn
    service = staticmethod(services.forget_request_extend)


@_action("Cancel a request", "Withdraw before unlearning starts (compliance officer or the hospital "
         "system of the request's institution).", NoteIn)
class CancelView(_ActionView):
    roles = {"POST": SUBMITTERS}
    input_class = NoteIn
    service = staticmethod(services.forget_request_cancel)


@_action("Reschedule an escalated request", "escalated → scheduled (compliance officer): a person's "
         "decision after every rung of the unlearning ladder failed, the job was cancelled or its worker "
         "kept dying. The request is planned into a new job, which starts at the first rung.", NoteIn)
class RescheduleView(_ActionView):
    input_class = NoteIn
    service = staticmethod(request_reschedule)


@extend_schema_view(get=extend_schema(
    tags=["audit"], summary="Audit events (hash chain, no PHI)", parameters=[AuditEventFilterIn],
    responses={200: AuditEventOut(many=True), **schema.errors(400, 401, 403, 429)}))
class AuditEventListView(_ListView):
    roles = {"GET": AUDIT_READERS}
    serializer_class = AuditEventOut

    def get_queryset(self) -> QuerySet:
        return audit_event_list(**_validated(AuditEventFilterIn, self.request.query_params.dict()))
