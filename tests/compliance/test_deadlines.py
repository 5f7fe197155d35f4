"""Deadline arithmetic (GDPR months, CCPA days, policy days) and the extension rules."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.utils import timezone

from compliance import forget_requests as services
from compliance.deadlines import ExtensionUnit, add_months, days_left, policy_for
from compliance.errors import Conflict, Invalid
from compliance.legal import LegalBasis, Regulation
from compliance.selectors import forget_request_list, is_overdue
from core.audit import AuditAction
from core.models import AuditEvent

GDPR = policy_for(Regulation.GDPR)
CCPA = policy_for(Regulation.CCPA)


@pytest.mark.parametrize(("start", "months", "expected"), [
    (date(2026, 1, 31), 1, date(2026, 2, 28)),  # no 31 Feb: the month's last day
    (date(2028, 1, 31), 1, date(2028, 2, 29)),  # leap year
    (date(2026, 3, 31), 1, date(2026, 4, 30)),
    (date(2026, 1, 30), 1, date(2026, 2, 28)),
    (date(2026, 2, 28), 1, date(2026, 3, 28)),  # not moved to month-end
    (date(2026, 12, 15), 1, date(2027, 1, 15)),  # year boundary
    (date(2026, 11, 30), 3, date(2027, 2, 28)),
    (date(2027, 11, 30), 3, date(2028, 2, 29)),
    (date(2026, 1, 31), 3, date(2026, 4, 30)),
])
def test_add_months_clamps_to_month_end(start, months, expected) -> None:
    assert add_months(start, months) == expected


@pytest.mark.parametrize(("received", "extension", "expected"), [
    (date(2026, 1, 31), 0, date(2026, 2, 28)),
    (date(2028, 1, 31), 0, date(2028, 2, 29)),
    (date(2026, 5, 15), 0, date(2026, 6, 15)),
    (date(2026, 1, 31), 1, date(2026, 3, 31)),
    (date(2026, 1, 31), 2, date(2026, 4, 30)),  # three months from receipt in all
])
def test_gdpr_one_month_plus_up_to_two(received, extension, expected) -> None:
    assert GDPR.deadline(received, extension) == expected


def test_ccpa_45_days_plus_45() -> None:
    assert CCPA.deadline(date(2026, 1, 1)) == date(2026, 2, 15)
    assert CCPA.deadline(date(2026, 1, 1), 45) == date(2026, 4, 1)
    assert CCPA.check_extension(received=date(2026, 1, 1), length=45, notice_sent=date(2026, 2, 15),
                                today=date(2026, 2, 20)) == date(2026, 4, 1)


def test_policy_deadlines_come_from_settings(settings) -> None:
    settings.OBLIVIO_POLICY_DEADLINES = {**settings.OBLIVIO_POLICY_DEADLINES,
                                         "institution_policy": {"days": 10, "extension_days": 5}}
    policy = policy_for(Regulation.INSTITUTION_POLICY)
    assert (policy.unit, policy.max_extension) == ("days", 5)
    assert policy.deadline(date(2026, 1, 1)) == date(2026, 1, 11)
    assert policy_for(Regulation.DATA_USE_AGREEMENT).deadline(date(2026, 1, 1)) == date(2026, 1, 31)


@pytest.mark.parametrize(("policy", "length", "notice", "code"), [
    (GDPR, 2, date(2026, 3, 1), "extension_notice_late"),  # the first month ended on 28 Feb
    (GDPR, 3, date(2026, 2, 10), "extension_too_long"),
    (GDPR, 0, date(2026, 2, 10), "extension_too_long"),
    (GDPR, 1, date(2026, 1, 30), "extension_notice_before_receipt"),
    (GDPR, 1, date(2026, 6, 1), "extension_notice_in_future"),
    (CCPA, 46, date(2026, 2, 10), "extension_too_long"),
    (CCPA, 45, date(2026, 3, 18), "extension_notice_late"),  # 45 days from 31 Jan end on 17 Mar
])
def test_extension_rules(policy, length, notice, code) -> None:
    with pytest.raises(Invalid) as refused:
        policy.check_extension(received=date(2026, 1, 31), length=length, notice_sent=notice,
                               today=date(2026, 5, 1))
    assert refused.value.code == code


def test_notice_on_the_last_day_of_the_first_month_counts() -> None:
    assert GDPR.check_extension(received=date(2026, 1, 31), length=2, notice_sent=date(2026, 2, 28),
                                today=date(2026, 3, 5)) == date(2026, 4, 30)


def test_days_left_and_overdue() -> None:
    assert days_left(date(2026, 3, 1), date(2026, 2, 27)) == 2
    assert days_left(date(2026, 3, 1), date(2026, 3, 1)) == 0
    assert days_left(date(2026, 3, 1), date(2026, 3, 4)) == -3


# --- through the services -----------------------------------------------------------------------


@pytest.mark.django_db
def test_create_computes_the_deadline_from_receipt(make_request) -> None:
    received = timezone.now() - timedelta(days=3)
    request = make_request(received_at=received)
    assert request.deadline == request.base_deadline == GDPR.deadline(timezone.localdate(received))
    ccpa = make_request(regulation=Regulation.CCPA, legal_basis=LegalBasis.CCPA_1798_105,
                        received_at=received)
    assert ccpa.deadline == timezone.localdate(received) + timedelta(days=45)


@pytest.mark.django_db
def test_extend_once_with_timely_notice(make_request, officer) -> None:
    now = timezone.now()
    request = make_request(received_at=now - timedelta(days=10))
    extended = services.forget_request_extend(request_id=request.pk, actor=officer.principal, length=2,
                                              unit=ExtensionUnit.MONTHS,
                                              notice_sent_at=now - timedelta(days=1))
    assert extended.deadline == GDPR.deadline(timezone.localdate(request.received_at), 2)
    assert extended.base_deadline == request.base_deadline and extended.extension == 2
    event = AuditEvent.objects.get(action=AuditAction.FORGET_REQUEST_DEADLINE_EXTENDED)
    assert event.data["deadline"] == extended.deadline.isoformat()
    with pytest.raises(Conflict, match="already extended"):
        services.forget_request_extend(request_id=request.pk, actor=officer.principal, length=1,
                                       unit=ExtensionUnit.MONTHS, notice_sent_at=now)


@pytest.mark.django_db
def test_extend_refuses_late_notice_wrong_unit_and_closed_requests(make_request, officer) -> None:
    now = timezone.now()
    request = make_request(received_at=now - timedelta(days=70))
    with pytest.raises(Invalid) as late:
        services.forget_request_extend(request_id=request.pk, actor=officer.principal, length=1,
                                       unit=ExtensionUnit.MONTHS, notice_sent_at=now - timedelta(days=2))
    assert late.value.code == "extension_notice_late"
    with pytest.raises(Invalid) as unit:
        services.forget_request_extend(request_id=request.pk, actor=officer.principal, length=30,
                                       unit=ExtensionUnit.DAYS, notice_sent_at=now - timedelta(days=65))
    assert unit.value.code == "extension_unit_mismatch"
    services.forget_request_cancel(request_id=request.pk, actor=officer.principal)
    with pytest.raises(Conflict) as closed:
        services.forget_request_extend(request_id=request.pk, actor=officer.principal, length=1,
                                       unit=ExtensionUnit.MONTHS, notice_sent_at=now - timedelta(days=65))
    assert closed.value.code == "request_closed"


@pytest.mark.django_db
def test_overdue_means_open_and_past_the_deadline(make_request, patient_subject, officer) -> None:
    late = make_request(received_at=timezone.now() - timedelta(days=70))
    fresh = make_request(patient_subject(1))
    closed = make_request(received_at=timezone.now() - timedelta(days=70))
    services.forget_request_cancel(request_id=closed.pk, actor=officer.principal)
    closed.refresh_from_db()
    today = timezone.localdate()
    assert [is_overdue(r.status, r.deadline, today) for r in (late, fresh, closed)] == [True, False, False]
    overdue = forget_request_list(principal=officer.principal, today=today, overdue=True)
    assert list(overdue) == [late]
    on_time = forget_request_list(principal=officer.principal, today=today, overdue=False)
    assert set(on_time) == {fresh, closed}
