"""Reads for the API and the CLI. Every read of institution-owned data is scoped to the principal."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from django.db.models import Count, F, Q, QuerySet, Window
from django.db.models.functions import RowNumber

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


def is_overdue(status: str, deadline: date, today: date) -> bool:
    """Past its deadline and still open (same rule as the ``overdue`` filter)."""
    return status not in TERMINAL and deadline < today


#: At most this many related request ids are listed per request (``related_count`` has the total).
RELATED_SHOWN = 20

#: What a listing reads of each request (``.values()``, no model instances): its own columns, its
#: institution's code and, for a section, what the section's label is made of.
ROW_FIELDS = ("id", "status", "level", "institution__code", "subject_hash", "regulation", "legal_basis",
              "hipaa_covered", "requester_type", "requester_hash", "received_at", "base_deadline", "deadline",
              "extension", "extension_notice_sent_at", "extension_note", "submitted_by", "decided_by",
              "decided_at", "reason_code", "decision_note", "scope_summary", "status_changed_at",
              "created_at", "section__name", "section__study__uid_hash")


def forget_request_list(*, principal: Principal, today: date, status: str | None = None,
                        institution: str | None = None, regulation: str | None = None,
                        overdue: bool | None = None) -> QuerySet[ForgetRequest]:
    """Requests the principal may see, newest first, filtered (``.values(*ROW_FIELDS)`` for pages)."""
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


def forget_request_related(request_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[list[uuid.UUID], int]]:
    """For each of ``request_ids`` with links: the ids of at most :data:`RELATED_SHOWN` related
    requests (oldest first) and how many there are in all. One query however many links there are."""
    links = ForgetRequest.related.through.objects.filter(from_forgetrequest_id__in=request_ids).annotate(
        rank=Window(RowNumber(), partition_by=[F("from_forgetrequest_id")],
                    order_by=[F("to_forgetrequest__received_at").asc(), F("to_forgetrequest_id").asc()]),
        total=Window(Count("*"), partition_by=[F("from_forgetrequest_id")]),
    ).filter(rank__lte=RELATED_SHOWN).order_by("from_forgetrequest_id", "rank")
    related: dict[uuid.UUID, tuple[list[uuid.UUID], int]] = {}
    for source, target, total in links.values_list("from_forgetrequest_id", "to_forgetrequest_id", "total"):
        related.setdefault(source, ([], total))[0].append(target)
    return related


def forget_request_get(*, principal: Principal, request_id: uuid.UUID) -> ForgetRequest:
    """One request, or :class:`NotFound` when it does not exist or belongs to an unseen institution."""
    request = forget_request_list(principal=principal, today=date.min).filter(pk=request_id).first()
    if request is None:
        raise NotFound("no forget request has this id", field="id", code="request_not_found")
    return request


def audit_event_list(*, action: str | None = None, object_type: str | None = None,
                     object_id: str | None = None, subject_hash: str | None = None,
                     since: datetime | None = None, until: datetime | None = None) -> QuerySet[AuditEvent]:
    """Audit events in chain order (they carry keyed hashes, never PHI)."""
    filters = {"action": action, "object_type": object_type, "object_id": object_id,
               "subject_hash": subject_hash, "occurred_at__gte": since, "occurred_at__lt": until}
    return AuditEvent.objects.filter(**{name: value for name, value in filters.items() if value}) \
        .order_by("seq")
