"""Forget-request lifecycle: every transition of the table, allowed and forbidden, through the services."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance import forget_requests as services
from compliance.errors import Forbidden, Invalid, NotFound
from compliance.legal import LegalBasis, RefusalReason, Regulation
from compliance.lifecycle import PIPELINE, TRANSITIONS, Status, TransitionNotAllowed, check_transition
from compliance.models import ForgetRequest
from compliance.subjects import SubjectIdentifiers
from core.audit import AuditAction
from core.models import AuditEvent
from core.principals import SYSTEM
from mllm.data.schema import Level

pytestmark = pytest.mark.django_db


def _move(request: ForgetRequest, status: Status) -> None:
    """Test set-up only: put a request in ``status`` without going through the services."""
    ForgetRequest.objects.filter(pk=request.pk).update(status=status, reason_code=RefusalReason.OTHER)


def _perform(target: Status, request: ForgetRequest, actor) -> ForgetRequest:
    """Reach ``target`` through the public service that owns it."""
    if target == Status.IN_REVIEW:
        return services.forget_request_review(request_id=request.pk, actor=actor)
    if target == Status.APPROVED:
        return services.forget_request_approve(request_id=request.pk, actor=actor)
    if target in (Status.REFUSED, Status.PARTIALLY_REFUSED):
        return services.forget_request_refuse(request_id=request.pk, actor=actor, reason=RefusalReason.OTHER,
                                              text="explained", partial=target == Status.PARTIALLY_REFUSED)
    if target == Status.CANCELLED:
        return services.forget_request_cancel(request_id=request.pk, actor=actor)
    return services.forget_request_advance(request_id=request.pk, to=target, actor=actor)


TARGETS = [status for status in Status if status != Status.RECEIVED]

#: The lifecycle as the design states it, written out by hand (not read from ``TRANSITIONS``): a
#: forbidden edge added to the table, or an allowed one removed, fails the matrix below.
EXPECTED_EDGES = {
    ("received", "in_review"), ("received", "refused"), ("received", "cancelled"),
    ("in_review", "approved"), ("in_review", "refused"), ("in_review", "partially_refused"),
    ("in_review", "cancelled"),
    ("approved", "scheduled"), ("approved", "cancelled"),
    ("partially_refused", "scheduled"), ("partially_refused", "cancelled"),
    # an earlier certified job already removed every record in scope: certified by reference
    ("approved", "certified"), ("partially_refused", "certified"), ("escalated", "certified"),
    ("scheduled", "unlearning"), ("scheduled", "cancelled"),
    ("scheduled", "failed"),  # its job was cancelled before unlearning started
    ("unlearning", "verifying"), ("unlearning", "failed"),
    ("verifying", "certified"), ("verifying", "failed"),
    ("failed", "scheduled"), ("failed", "escalated"),
    ("escalated", "scheduled"),
}


def test_the_table_has_exactly_the_designed_edges() -> None:
    table = {(str(source), str(target)) for source, targets in TRANSITIONS.items() for target in targets}
    assert table == EXPECTED_EDGES


@pytest.mark.parametrize(("source", "target"), list(itertools.product(Status, TARGETS)),
                         ids=lambda status: str(status))
def test_every_transition_follows_the_design(source, target, make_request, officer) -> None:
    request = make_request()
    _move(request, source)
    events_before = AuditEvent.objects.count()
    if (str(source), str(target)) in EXPECTED_EDGES:
        changed = _perform(target, request, officer.principal)
        assert changed.status == target
        request.refresh_from_db()
        assert request.status == target
        # hooks may append their own events after it (approval turns the inference guard on)
        changes = AuditEvent.objects.filter(action=AuditAction.FORGET_REQUEST_STATUS_CHANGED)
        event = changes.order_by("seq").last()
        assert event.seq > events_before
        assert event.object_id == str(request.pk) and event.actor == officer.principal.name
        assert (event.data["from"], event.data["to"]) == (source, target)
    else:
        with pytest.raises(TransitionNotAllowed) as refused:
            _perform(target, request, officer.principal)
        assert refused.value.code == "invalid_transition"
        request.refresh_from_db()
        assert request.status == source
        assert AuditEvent.objects.count() == events_before


@pytest.mark.parametrize("source", list(Status), ids=str)
def test_nothing_returns_to_received(source) -> None:
    with pytest.raises(TransitionNotAllowed):
        check_transition(source, Status.RECEIVED)


def test_terminal_statuses_have_no_way_out() -> None:
    for status in (Status.CERTIFIED, Status.REFUSED, Status.CANCELLED):
        assert not TRANSITIONS[status]


def test_advance_only_drives_pipeline_statuses(make_request) -> None:
    request = make_request()
    services.forget_request_review(request_id=request.pk, actor=SYSTEM)
    with pytest.raises(Invalid, match="decided by a person"):
        services.forget_request_advance(request_id=request.pk, to=Status.APPROVED)
    assert Status.APPROVED not in PIPELINE


def test_four_eyes_keeps_the_submitter_from_approving(make_request, officer, second_officer) -> None:
    request = make_request(actor=officer.principal)
    services.forget_request_review(request_id=request.pk, actor=officer.principal)
    with pytest.raises(Forbidden) as refused:
        services.forget_request_approve(request_id=request.pk, actor=officer.principal)
    assert refused.value.code == "four_eyes_required"
    approved = services.forget_request_approve(request_id=request.pk, actor=second_officer.principal)
    assert approved.decided_by == second_officer.principal.name


def test_four_eyes_can_be_switched_off(make_request, officer, settings) -> None:
    settings.OBLIVIO_FOUR_EYES = False
    request = make_request(actor=officer.principal)
    services.forget_request_review(request_id=request.pk, actor=officer.principal)
    approved = services.forget_request_approve(request_id=request.pk, actor=officer.principal)
    assert approved.status == "approved"


def test_approval_snapshots_scope_counts_without_phi(tree, make_request, officer) -> None:
    request = make_request()
    services.forget_request_review(request_id=request.pk, actor=officer.principal)
    approved = services.forget_request_approve(request_id=request.pk, actor=officer.principal)
    summary = approved.scope_summary
    patient = tree.patients[0]
    trained = patient.studies.first().records.filter(is_holdout=False, eval_only=False)
    # design "Scope": forget = the facts the patient (or a study/section below) owns; the
    # institution-level record on the patient's image is about an ancestor's fact: shared, not forget
    owned_by_patient = trained.exclude(level=Level.INSTITUTION).count()
    about_the_institution = trained.filter(level=Level.INSTITUTION).count()
    assert summary["counts"]["forget"] == owned_by_patient > 0
    assert summary["counts"]["shared"] == about_the_institution == 1
    assert summary["subject_hash"] == patient.mrn_hash
    event = AuditEvent.objects.filter(action=AuditAction.FORGET_REQUEST_STATUS_CHANGED).order_by("seq").last()
    assert event.data["scope_counts"] == summary["counts"]
    assert tree.mrns[patient.pk] not in json.dumps(summary) + json.dumps(event.data)


def test_refusal_needs_text_and_an_applicable_reason(make_request, officer) -> None:
    request = make_request(regulation=Regulation.CCPA, legal_basis=LegalBasis.CCPA_1798_105)
    with pytest.raises(Invalid, match="explanation"):
        services.forget_request_refuse(request_id=request.pk, actor=officer.principal,
                                       reason=RefusalReason.OTHER, text="  ")
    with pytest.raises(Invalid) as refused:
        services.forget_request_refuse(request_id=request.pk, actor=officer.principal,
                                       reason=RefusalReason.GDPR_17_3_C, text="public health")
    assert refused.value.code == "reason_not_applicable"
    done = services.forget_request_refuse(request_id=request.pk, actor=officer.principal,
                                          reason=RefusalReason.IDENTITY_NOT_VERIFIED, text="no ID")
    assert (done.status, done.reason_code, done.decision_note) == (
        "refused", "identity_not_verified", "no ID")


def test_partial_refusal_keeps_scope_and_reason(make_request, officer) -> None:
    request = make_request()
    services.forget_request_review(request_id=request.pk, actor=officer.principal)
    done = services.forget_request_refuse(request_id=request.pk, actor=officer.principal, partial=True,
                                          reason=RefusalReason.GDPR_17_3_D, text="research archive")
    assert done.status == Status.PARTIALLY_REFUSED and done.scope_summary["counts"]["forget"] > 0


def test_database_refuses_a_refusal_without_reason(make_request) -> None:
    request = make_request()
    with pytest.raises(IntegrityError), transaction.atomic():
        ForgetRequest.objects.filter(pk=request.pk).update(status=Status.REFUSED, reason_code="")


def test_database_refuses_a_subject_path_that_does_not_match_its_level(tree, make_request) -> None:
    request = make_request()  # a patient-level request
    with pytest.raises(IntegrityError), transaction.atomic():
        ForgetRequest.objects.filter(pk=request.pk).update(study=tree.studies[0])


def test_a_failing_hook_rolls_the_transition_back(make_request, monkeypatch) -> None:
    seen: list[str] = []

    def guard_on(request: ForgetRequest) -> None:
        seen.append(request.status)
        raise RuntimeError("guard unavailable")

    monkeypatch.setitem(services._ON_ENTER, Status.IN_REVIEW, [guard_on])
    request = make_request()
    events = AuditEvent.objects.count()
    with pytest.raises(RuntimeError):
        services.forget_request_review(request_id=request.pk, actor=SYSTEM)
    request.refresh_from_db()
    assert seen == ["in_review"] and request.status == "received" and AuditEvent.objects.count() == events


def test_on_enter_registers_a_hook(monkeypatch, make_request) -> None:
    monkeypatch.setitem(services._ON_ENTER, Status.IN_REVIEW, [])
    calls: list[str] = []
    services.on_enter(Status.IN_REVIEW)(lambda request: calls.append(str(request.pk)))
    request = make_request()
    services.forget_request_review(request_id=request.pk, actor=SYSTEM)
    assert calls == [str(request.pk)]


# --- intake ---------------------------------------------------------------------------------------


def test_create_records_hashes_deadline_and_audit(tree, make_request) -> None:
    request = make_request(requester_reference="case-42")
    assert request.status == Status.RECEIVED and request.level == "patient"
    assert request.subject_hash == tree.patients[0].mrn_hash
    assert request.requester_hash and "case-42" not in request.requester_hash
    event = AuditEvent.objects.get(action=AuditAction.FORGET_REQUEST_CREATED)
    assert event.subject_hash == request.subject_hash
    recorded = json.dumps(event.data)
    assert "case-42" not in recorded and tree.mrns[tree.patients[0].pk] not in recorded


def test_create_checks_legal_basis_and_hipaa(make_request) -> None:
    with pytest.raises(Invalid) as wrong_basis:
        make_request(regulation=Regulation.CCPA, legal_basis=LegalBasis.GDPR_17_1_A)
    assert wrong_basis.value.code == "legal_basis_mismatch"
    with pytest.raises(Invalid) as hipaa:
        make_request(hipaa_covered=True)
    assert hipaa.value.code == "hipaa_no_erasure_right"
    recorded = make_request(hipaa_covered=True, regulation=Regulation.INSTITUTION_POLICY,
                            legal_basis=LegalBasis.CONSENT_WITHDRAWN)
    assert recorded.hipaa_covered and recorded.regulation == "institution_policy"


def test_create_refuses_a_future_receipt(make_request) -> None:
    with pytest.raises(Invalid, match="future"):
        make_request(received_at=timezone.now() + timedelta(days=1))


def test_subject_of_an_unseen_institution_is_not_found(tree, make_request, key_a, patient_subject) -> None:
    with pytest.raises(NotFound):
        make_request(patient_subject(2), actor=key_a.principal)  # patient 2 belongs to institution B
    with pytest.raises(NotFound):
        make_request(SubjectIdentifiers(mrn_system="urn:x", mrn_value="nobody"))
    assert make_request(patient_subject(0), actor=key_a.principal).institution == tree.institutions[0]


def test_overlapping_open_requests_are_linked(tree, make_request, patient_subject) -> None:
    patient_request = make_request(patient_subject(0))
    uid = tree.uids[tree.patients[0].studies.first().pk]
    section_request = make_request(SubjectIdentifiers(study_uid=uid, section="FINDINGS"))
    assert set(section_request.related.all()) == {patient_request}  # an ancestor's request
    other_patient = make_request(patient_subject(1))
    assert not other_patient.related.exists()  # a sibling is no overlap
    institution_request = make_request(SubjectIdentifiers(institution=tree.institutions[0].code))
    assert set(institution_request.related.all()) == {patient_request, section_request, other_patient}
    assert set(patient_request.related.all()) == {section_request, institution_request}  # symmetric
    services.forget_request_cancel(request_id=other_patient.pk, actor=SYSTEM)
    again = make_request(patient_subject(1))
    assert set(again.related.all()) == {institution_request}  # closed requests are not linked
