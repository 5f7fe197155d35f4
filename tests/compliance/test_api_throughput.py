"""The intake and the list stay lean (issue 11.7): statements per request are pinned, the audit head
lock is taken last, and the list's row path answers exactly what single requests answer."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.throttling import ScopedRateThrottle

from compliance.subjects import SubjectIdentifiers

pytestmark = pytest.mark.django_db

CREATE = "/api/v1/forget-requests"
#: Statements of one intake with an Idempotency-Key: the key and its institutions (1), the
#: idempotency record (2), the subject (1), overlapping open requests (1), the request and its links
#: (2), webhook endpoints (1), the audit append (3), the stored response (1), and the savepoint the
#: test's own transaction turns the outermost atomic block into (2; BEGIN/COMMIT in production).
#: 19 before the throughput work, 37 before issue 11.6.
INTAKE_STATEMENTS = 14
#: A list page: the key (1), COUNT (1), the page's rows (1), related ids and counts (1). 6 before.
LIST_STATEMENTS = 4


@pytest.fixture(autouse=True)
def _unthrottled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "write", "100000/min")


def _intake(api, body: dict, key: str) -> tuple[dict, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = api.post(CREATE, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 201, response.content
    return response.json(), [query["sql"] for query in captured.captured_queries]


def test_an_intake_costs_pinned_statements_and_locks_the_audit_head_last(key_a, patient_body) -> None:
    api = key_a.client()
    _intake(api, patient_body(), "first")
    _, statements = _intake(api, patient_body(), "second")  # a duplicate: links are written too
    assert len(statements) <= INTAKE_STATEMENTS, "\n".join(statements)
    lock = next(index for index, sql in enumerate(statements)
                if "compliance_audithead" in sql and "FOR UPDATE" in sql)
    held = [sql.split(" (")[0].split(" SET ")[0] for sql in statements[lock + 1:]]
    assert held == ['INSERT INTO "compliance_auditevent"', 'UPDATE "compliance_audithead"',
                    'UPDATE "compliance_idempotencyrecord"', held[-1]], held
    assert held[-1].startswith("RELEASE SAVEPOINT")  # then the commit


def test_a_list_page_costs_pinned_statements_however_many_rows(key_a, make_request, patient_subject,
                                                                django_assert_max_num_queries) -> None:
    api = key_a.client()
    for index in (0, 0, 1):
        make_request(patient_subject(index))
    with django_assert_max_num_queries(LIST_STATEMENTS):
        assert api.get(CREATE).json()["count"] == 3
    for _ in range(40):
        make_request(patient_subject(1))
    with django_assert_max_num_queries(LIST_STATEMENTS):
        assert len(api.get(CREATE).json()["results"]) == 43


def test_list_detail_intake_and_actions_answer_the_same_json(tree, key_a, officer, patient_body,
                                                             make_request, settings) -> None:
    settings.OBLIVIO_FOUR_EYES = False
    api, people = key_a.client(), officer.client()
    created, _ = _intake(api, patient_body(0), "a")
    duplicate, _ = _intake(api, patient_body(0), "b")
    study = next(study for study in tree.studies if study.patient_id == tree.patients[1].pk)
    section = make_request(SubjectIdentifiers(study_uid=tree.uids[study.pk], section="FINDINGS"))
    assert people.post(f"{CREATE}/{section.pk}/review").status_code == 200
    refused = people.post(f"{CREATE}/{section.pk}/refuse", {"reason": "other", "text": "in part",
                                                            "partial": True}, content_type="application/json")
    assert refused.status_code == 200
    listed = {item["id"]: item for item in people.get(CREATE).json()["results"]}
    for answered in (duplicate, refused.json()):
        assert listed[answered["id"]] == answered == people.get(f"{CREATE}/{answered['id']}").json()
    # Created before its duplicate: what the intake answered then, plus the link made since.
    assert listed[created["id"]] == {**created, "related": [duplicate["id"]], "related_count": 1}
    assert refused.json()["subject"]["label"] == f"study {study.uid_hash[:12]} / FINDINGS"
    assert list(refused.json()) == list(created)  # same keys in the same order
