"""Forget-request services: the only code that creates or changes a forget request.

Every status change goes through :func:`_transition`: it checks the transition table
(:mod:`compliance.lifecycle`), saves, appends the audit event, writes the webhook outbox rows and
runs the hooks registered with :func:`on_enter`, all inside the caller's transaction, which holds a
``select_for_update`` lock on the request.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from core.audit import AuditAction, audit_append
from core.principals import SYSTEM, Principal
from hierarchy.identifiers import IdentifierKind, keyed_hash
from hierarchy.models import Corpus
from hierarchy.scope import scope_resolve

from .deadlines import ExtensionUnit, policy_for
from .errors import Conflict, Forbidden, Invalid, NotFound, lock_or_not_found
from .legal import (
    LegalBasis,
    RefusalReason,
    Regulation,
    RequesterType,
    check_legal_ground,
    check_refusal_reason,
)
from .lifecycle import PIPELINE, TERMINAL, Status, check_transition
from .models import ForgetRequest, WebhookEvent
from .selectors import RELATED_SHOWN
from .subjects import SubjectIdentifiers, SubjectPath, subject_find
from .webhooks import webhook_enqueue

OBJECT_TYPE = "forget_request"
#: How far in the future a client clock may put ``received_at``.
CLOCK_SKEW = timedelta(minutes=5)

Hook = Callable[[ForgetRequest], None]
_ON_ENTER: dict[Status, list[Hook]] = defaultdict(list)


def on_enter(status: Status) -> Callable[[Hook], Hook]:
    """Register a hook run inside the transaction whenever a request enters ``status``.

    The extension point of the next waves: entering ``approved`` turns on the inference guard,
    ``scheduled`` queues the unlearning job, ``certified`` attaches the certificate. A hook that
    raises rolls the transition back.
    """
    def register(hook: Hook) -> Hook:
        _ON_ENTER[status].append(hook)
        return hook
    return register


def requester_hash(reference: str) -> str:
    """Keyed hash of the requester's own reference (case number, agent id): never stored raw."""
    return keyed_hash(IdentifierKind.REQUESTER, reference) if reference.strip() else ""


def _overlapping_open(path: SubjectPath) -> list[ForgetRequest]:
    """The oldest open request of each subject that is this node, an ancestor or a descendant.

    Duplicates (more open requests about one subject) are represented by their oldest, so a flood
    of duplicates adds one link per request, not one per earlier duplicate: links grow linearly.
    """
    query = Q(institution=path.institution)
    for name in ("patient", "study", "section"):
        node = getattr(path, name)
        if node is not None:
            query &= Q(**{f"{name}__isnull": True}) | Q(**{name: node})
    first_of_subject = Window(RowNumber(), partition_by=[F("level"), F("subject_hash")],
                              order_by=[F("received_at").asc(), F("id").asc()])
    oldest = ForgetRequest.objects.filter(query).exclude(status__in=TERMINAL).annotate(
        rank=first_of_subject).filter(rank=1)
    return list(oldest.only("id").order_by("received_at", "id"))  # ids are all intake needs


#: Path fields are resolved by the service itself; the database enforces its own constraints.
_RESOLVED = ["institution", "patient", "study", "section"]


def _validate(request: ForgetRequest) -> None:
    """Field checks (lengths, choices, dates) in Python, without the database round trips of
    ``full_clean``'s foreign-key and constraint queries (the database checks those on write)."""
    request.full_clean(exclude=_RESOLVED, validate_unique=False, validate_constraints=False)


def _notification(request: ForgetRequest, **extra: Any) -> dict[str, Any]:
    """Webhook data: ids, statuses, dates and keyed hashes only."""
    return {"request_id": str(request.pk), "institution": request.institution.code, "level": request.level,
            "subject_hash": request.subject_hash, "status": request.status,
            "regulation": request.regulation, "deadline": request.deadline.isoformat(), **extra}


def forget_request_create(*, actor: Principal, subject: SubjectIdentifiers, regulation: Regulation,
                          legal_basis: LegalBasis, requester_type: RequesterType,
                          requester_reference: str = "", hipaa_covered: bool = False,
                          received_at: datetime | None = None) -> ForgetRequest:
    """Record a new request in ``received``, with its deadline, linked to overlapping open requests."""
    check_legal_ground(regulation, legal_basis, hipaa_covered)
    now = timezone.now()
    received_at = received_at or now
    if received_at > now + CLOCK_SKEW:
        raise Invalid("received_at lies in the future", field="received_at", code="received_in_future")
    deadline = policy_for(regulation).deadline(timezone.localdate(received_at))
    path = subject_find(principal=actor, identifiers=subject)
    request = ForgetRequest(
        level=path.level, institution=path.institution, patient=path.patient, study=path.study,
        section=path.section, subject_hash=path.subject_hash,
        regulation=regulation, legal_basis=legal_basis, hipaa_covered=hipaa_covered,
        requester_type=requester_type, requester_hash=requester_hash(requester_reference),
        received_at=received_at, base_deadline=deadline, deadline=deadline, status=Status.RECEIVED,
        status_changed_at=now, submitted_by=actor.name)
    _validate(request)
    # Checks and lookups are done: only writes follow, so no savepoint inside a caller's
    # transaction (a failed write aborts it; the idempotency record is part of it).
    with transaction.atomic(savepoint=False):
        related = _overlapping_open(path)
        request.save(force_insert=True)
        links = ForgetRequest.related.through
        links.objects.bulk_create([link for other in related for link in (
            links(from_forgetrequest_id=request.pk, to_forgetrequest_id=other.pk),
            links(from_forgetrequest_id=other.pk, to_forgetrequest_id=request.pk))])
        request.related_shown, request.related_count = related[:RELATED_SHOWN], len(related)  # as listed
        related_ids = [str(other.pk) for other in related]
        webhook_enqueue(institution_id=path.institution.pk, event=WebhookEvent.REQUEST_CREATED,
                        data=_notification(request, related=related_ids))
        # Last: the audit chain's head row stays locked from here until the commit.
        audit_append(actor=actor, action=AuditAction.FORGET_REQUEST_CREATED, object_type=OBJECT_TYPE,
                     object_id=str(request.pk), subject_hash=request.subject_hash,
                     data={"level": request.level, "institution": path.institution.code,
                           "regulation": regulation, "legal_basis": legal_basis,
                           "hipaa_covered": hipaa_covered, "requester_type": requester_type,
                           "received_at": received_at.isoformat(), "deadline": deadline.isoformat(),
                           "related": related_ids})
    return request


def _locked(request_id: uuid.UUID, actor: Principal) -> ForgetRequest:
    """The request, row-locked for this transaction, if ``actor`` may see it."""
    not_found = NotFound("no forget request has this id", field="id", code="request_not_found")
    request = lock_or_not_found(ForgetRequest.objects, not_found, pk=request_id)
    if not actor.sees(request.institution_id):
        raise not_found
    return request


def _transition(request: ForgetRequest, *, to: Status, actor: Principal, fields: dict[str, Any] | None = None,
                data: dict[str, Any] | None = None) -> ForgetRequest:
    """The one place a status changes. Call inside ``transaction.atomic`` with ``request`` locked."""
    check_transition(request.status, to)
    previous = request.status
    for name, value in (fields or {}).items():
        setattr(request, name, value)
    request.status, request.status_changed_at = to, timezone.now()
    _validate(request)
    request.save()
    audit_append(actor=actor, action=AuditAction.FORGET_REQUEST_STATUS_CHANGED, object_type=OBJECT_TYPE,
                 object_id=str(request.pk), subject_hash=request.subject_hash,
                 data={"from": previous, "to": str(to), **(data or {})})
    webhook_enqueue(institution_id=request.institution_id, event=WebhookEvent.STATUS_CHANGED,
                    data=_notification(request, previous_status=previous,
                                       reason_code=request.reason_code or None))
    for hook in _ON_ENTER[to]:
        hook(request)
    return request


def _require_second_person(request: ForgetRequest, actor: Principal) -> None:
    if settings.OBLIVIO_FOUR_EYES and request.submitted_by == actor.name:
        raise Forbidden("four-eyes rule: the submitter of a request cannot decide it",
                        code="four_eyes_required")


def scope_snapshot(request: ForgetRequest) -> dict[str, Any]:
    """Counts of the request's scope in the latest ingested corpus (no PHI)."""
    corpus = Corpus.objects.order_by("-ingested_at", "-pk").first()
    if corpus is None:
        return {"corpus_id": None, "counts": None, "note": "no corpus ingested yet"}
    return scope_resolve(node=request.subject_node, corpus=corpus).summary()


def forget_request_review(*, request_id: uuid.UUID, actor: Principal) -> ForgetRequest:
    """An officer takes the request into review."""
    with transaction.atomic():
        return _transition(_locked(request_id, actor), to=Status.IN_REVIEW, actor=actor)


def forget_request_approve(*, request_id: uuid.UUID, actor: Principal, note: str = "") -> ForgetRequest:
    """Approve the whole request; snapshots the resolved scope (four-eyes when configured)."""
    with transaction.atomic():
        request = _locked(request_id, actor)
        check_transition(request.status, Status.APPROVED)  # before the four-eyes rule and scope work
        _require_second_person(request, actor)
        scope = scope_snapshot(request)
        return _transition(request, to=Status.APPROVED, actor=actor,
                           fields={"decided_by": actor.name, "decided_at": timezone.now(),
                                   "decision_note": note, "scope_summary": scope},
                           data={"corpus_id": scope["corpus_id"], "scope_counts": scope["counts"]})


def forget_request_refuse(*, request_id: uuid.UUID, actor: Principal, reason: RefusalReason, text: str,
                          partial: bool = False) -> ForgetRequest:
    """Refuse, or partially refuse (the rest proceeds), with a reason code and an explanation.

    Both are decisions, so the four-eyes rule applies to both."""
    if not text.strip():
        raise Invalid("a refusal needs an explanation", field="text", code="reason_text_required")
    target = Status.PARTIALLY_REFUSED if partial else Status.REFUSED
    with transaction.atomic():
        request = _locked(request_id, actor)
        check_transition(request.status, target)
        check_refusal_reason(reason, Regulation(request.regulation))
        _require_second_person(request, actor)
        fields: dict[str, Any] = {"decided_by": actor.name, "decided_at": timezone.now(),
                                  "reason_code": reason, "decision_note": text}
        data: dict[str, Any] = {"reason_code": str(reason)}
        if partial:
            fields["scope_summary"] = scope_snapshot(request)
            data["scope_counts"] = fields["scope_summary"]["counts"]
        return _transition(request, to=target, actor=actor, fields=fields, data=data)


def forget_request_cancel(*, request_id: uuid.UUID, actor: Principal, note: str = "") -> ForgetRequest:
    """Withdraw a request before unlearning starts."""
    with transaction.atomic():
        request = _locked(request_id, actor)
        return _transition(request, to=Status.CANCELLED, actor=actor,
                           fields={"decision_note": note} if note else None)


def forget_request_advance(*, request_id: uuid.UUID, to: Status, actor: Principal = SYSTEM,
                           data: dict[str, Any] | None = None) -> ForgetRequest:
    """Move a request through the pipeline statuses (scheduled ... certified / failed / escalated).

    Called by the pipeline jobs of the next wave; ``data`` (PHI-free) goes into the audit event.
    """
    if to not in PIPELINE:
        raise Invalid(f"'{to}' is decided by a person, not by the pipeline", field="status",
                      code="not_a_pipeline_status")
    with transaction.atomic():
        return _transition(_locked(request_id, actor), to=to, actor=actor, data=data)


def forget_request_extend(*, request_id: uuid.UUID, actor: Principal, length: int, unit: ExtensionUnit,
                          notice_sent_at: datetime, note: str = "") -> ForgetRequest:
    """Extend the deadline once, within the regulation's limit, given a notice sent in the first period."""
    with transaction.atomic():
        request = _locked(request_id, actor)
        if request.status in TERMINAL:
            raise Conflict(f"a {request.status} request has no deadline to extend", field="status",
                           code="request_closed")
        if request.extension:
            raise Conflict("the deadline of this request was already extended", code="already_extended")
        policy = policy_for(Regulation(request.regulation))
        if unit != policy.unit:
            raise Invalid(f"{request.regulation} extensions are counted in {policy.unit}", field=str(unit),
                          code="extension_unit_mismatch")
        deadline = policy.check_extension(received=timezone.localdate(request.received_at), length=length,
                                          notice_sent=timezone.localdate(notice_sent_at),
                                          today=timezone.localdate())
        previous = request.deadline
        request.extension, request.deadline = length, deadline
        request.extension_notice_sent_at, request.extension_note = notice_sent_at, note
        _validate(request)
        request.save()
        audit_append(actor=actor, action=AuditAction.FORGET_REQUEST_DEADLINE_EXTENDED,
                     object_type=OBJECT_TYPE, object_id=str(request.pk), subject_hash=request.subject_hash,
                     data={"extension": length, "unit": str(unit), "previous_deadline": previous.isoformat(),
                           "deadline": deadline.isoformat(), "notice_sent_at": notice_sent_at.isoformat()})
        webhook_enqueue(institution_id=request.institution_id, event=WebhookEvent.DEADLINE_EXTENDED,
                        data=_notification(request, previous_deadline=previous.isoformat()))
    return request
