"""Duplicates stay linear (issue 11.6): 300 requests about one patient without an Idempotency-Key add
links in proportion to their number, and a list page stays small."""

from __future__ import annotations

import pytest

from compliance.models import ForgetRequest
from compliance.selectors import RELATED_SHOWN

pytestmark = pytest.mark.django_db

CREATE = "/api/v1/forget-requests"
DUPLICATES = 300


def _links() -> int:
    return ForgetRequest.related.through.objects.count()


@pytest.mark.slow
def test_300_duplicates_grow_links_linearly_and_pages_stay_bounded(key_a, patient_body, monkeypatch) -> None:
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "write", "100000/min")
    api = key_a.client()
    for _ in range(DUPLICATES):
        assert api.post(CREATE, patient_body(), content_type="application/json").status_code == 201
    # Symmetric links: two rows per duplicate after the first (147,900 rows before: one per pair).
    assert _links() <= 2 * DUPLICATES
    page = api.get(f"{CREATE}?limit=200")
    assert page.status_code == 200 and len(page.json()["results"]) == 200
    assert len(page.content) < 200 * 2500  # ~1.2 KB per request; before: 3.3 MB for 300
    first = ForgetRequest.objects.order_by("received_at", "id").first()
    detail = api.get(f"{CREATE}/{first.pk}").json()
    assert detail["related_count"] == DUPLICATES - 1 and len(detail["related"]) == RELATED_SHOWN
    newest = page.json()["results"][0]
    assert newest["related"] == [str(first.pk)] and newest["related_count"] == 1


def test_a_new_request_links_the_oldest_open_request_of_each_overlapping_subject(
        tree, make_request, patient_subject) -> None:
    from compliance.subjects import SubjectIdentifiers

    first, second = make_request(patient_subject(0)), make_request(patient_subject(0))
    other = make_request(patient_subject(1))
    institution = make_request(SubjectIdentifiers(institution=tree.institutions[0].code))
    assert set(institution.related.all()) == {first, other}
    assert set(second.related.all()) == {first}


def test_an_intake_costs_a_fixed_number_of_queries_however_many_duplicates(
        key_a, patient_body, django_assert_max_num_queries, monkeypatch) -> None:
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "write", "100000/min")
    api = key_a.client()

    def intake(number: int) -> None:
        response = api.post(CREATE, patient_body(), content_type="application/json",
                            HTTP_IDEMPOTENCY_KEY=f"key-{number}")
        assert response.status_code == 201

    intake(0)
    with django_assert_max_num_queries(14) as second:  # 37 before issue 11.6, 19 before 11.7
        intake(1)
    queries = len(second.captured_queries)  # read now: every request resets Django's query log
    for number in range(2, 30):
        intake(number)
    with django_assert_max_num_queries(queries):
        intake(30)
