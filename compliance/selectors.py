"""Reads for the API and the CLI. Every read of institution-owned data is scoped to the principal."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from django.db.models import Count, Prefetch, Q, QuerySet, prefetch_related_objects

from core.models import AuditEvent
from core.principals import Principal
from hierarchy.models import Institution

from .errors import NotFound
from .lifecycle import TERMINAL
from .models import ForgetRequest


def institution_list(*, principal: Principal) -> QuerySet[Institution]:
    institutions = Institution.objects.all()
    if principal.institution_ids is not None:
        institutions = institutions.filter(pk__in=principal.institution_ids)
    return institutions.order_by("code")


def _overdue(today: date) -> Q:
    return Q(deadline__lt=today) & ~Q(status__in=TERMINAL)


def is_overdue(request: ForgetRequest, today: date) -> bool:
    """Past its deadline and still open (same rule as the ``overdue`` filter)."""
    return request.status not in TERMINAL and request.deadline < today


#: At most this many related request ids are listed per request (``related_count`` has the total).
RELATED_SHOWN = 20


def forget_request_list(*, principal: Principal, today: date, status: str | None = None,
                        institution: str | None = None, regulation: str | None = None,
                        overdue: bool | None = None) -> QuerySet[ForgetRequest]:
    """Requests the principal may see, newest first, filtered."""
    requests = ForgetRequest.objects.select_related("institution", "patient", "study", "section__study")
    if principal.institution_ids is not None:
        requests = requests.filter(institution_id__in=principal.institution_ids)
    if status:
        requests = requests.filter(status=status)
    if institution:
        requests = requests.filter(institution__code=institution)
    if regulation:
        requests = requests.filter(regulation=regulation)
    if overdue is not None:
        requests = requests.filter(_overdue(today)) if overdue else requests.exclude(_overdue(today))
    return requests.order_by("-received_at", "id")


def forget_request_related_attach(requests: list[ForgetRequest]) -> list[ForgetRequest]:
    """Set ``related_shown`` (at most :data:`RELATED_SHOWN`, oldest first) and ``related_count`` on a
    page of requests: two queries for the page, however large the table."""
    links = ForgetRequest.related.through.objects.filter(from_forgetrequest_id__in=[r.pk for r in requests])
    counts = dict(links.values_list("from_forgetrequest_id").annotate(total=Count("*")))
    shown = ForgetRequest.objects.only("id").order_by("received_at", "id")[:RELATED_SHOWN]
    prefetch_related_objects(requests, Prefetch("related", queryset=shown, to_attr="related_shown"))
    for request in requests:
        request.related_count = counts.get(request.pk, 0)
    return requests


def forget_request_get(*, principal: Principal, request_id: uuid.UUID) -> ForgetRequest:
    """One request, or :class:`NotFound` when it does not exist or belongs to an unseen institution."""
    request = forget_request_list(principal=principal, today=date.min).filter(pk=request_id).first()
    if request is None:
        raise NotFound("no forget request has this id", field="id", code="request_not_found")
    return forget_request_related_attach([request])[0]


def audit_event_list(*, action: str | None = None, object_type: str | None = None,
                     object_id: str | None = None, subject_hash: str | None = None,
                     since: datetime | None = None, until: datetime | None = None) -> QuerySet[AuditEvent]:
    """Audit events in chain order (they carry keyed hashes, never PHI)."""
    filters = {"action": action, "object_type": object_type, "object_id": object_id,
               "subject_hash": subject_hash, "occurred_at__gte": since, "occurred_at__lt": until}
    return AuditEvent.objects.filter(**{name: value for name, value in filters.items() if value}) \
        .order_by("seq")
