"""The API as a careless or hostile hospital integration uses it: one error shape, never a 500."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.throttling import ScopedRateThrottle

from compliance.api.errors import handler500
from compliance.models import ForgetRequest, IdempotencyRecord
from compliance.tasks import idempotency_purge_task
from core.models import AuditEvent

pytestmark = pytest.mark.django_db

CREATE = "/api/v1/forget-requests"


def _error(response, status: int, code: str, field: str | None = None) -> dict:
    """Assert the one error shape and return its body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["code"] == code and body["error"]["field"] == field
    assert body["error"]["message"]
    return body


@pytest.fixture
def api(key_a) -> Client:
    return key_a.client()


@pytest.mark.parametrize(("body", "content_type", "status", "code"), [
    ("{not json", "application/json", 400, "parse_error"),
    ('{"a": NaN}', "application/json", 400, "parse_error"),
    ("[" * 50_000 + "]" * 50_000, "application/json", 400, "parse_error"),
    (b"\xff\xfe", "application/json", 400, "parse_error"),
    ("regulation=gdpr", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("hello", "text/plain", 415, "unsupported_media_type"),
    ("[]", "application/json", 400, "invalid"),
    ('"text"', "application/json", 400, "invalid"),
])
def test_bad_bodies(api, body, content_type, status, code) -> None:
    _error(api.post(CREATE, body, content_type=content_type), status, code)
    assert not ForgetRequest.objects.exists()


def test_oversize_body_is_413_and_chunked_body_411(api, patient_body, settings) -> None:
    payload = json.dumps({"padding": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    _error(api.post(CREATE, payload, content_type="application/json"), 413, "request_too_large")
    chunked = api.post(CREATE, patient_body(), content_type="application/json",
                       HTTP_TRANSFER_ENCODING="chunked")
    _error(chunked, 411, "length_required")


@pytest.mark.parametrize(("change", "code", "field"), [
    (lambda body: body.pop("regulation"), "required", "regulation"),
    (lambda body: body["subject"]["mrn"].pop("system"), "required", "subject.mrn.system"),
    (lambda body: body["subject"].update(study_uid="1.2.3"), "subject_ambiguous", "subject"),
    (lambda body: body["subject"].update(section="FINDINGS"), "section_without_study", "subject.section"),
    (lambda body: body.update(regulation="hipaa"), "invalid_choice", "regulation"),
    (lambda body: body.update(received_at="yesterday"), "invalid", "received_at"),
    (lambda body: body["requester"].update(reference="\x00"), "null_characters_not_allowed",
     "requester.reference"),
    (lambda body: body.update(hipaa_covered="perhaps"), "invalid", "hipaa_covered"),
])
def test_validation_errors_name_the_field(api, patient_body, change, code, field) -> None:
    body = patient_body()
    change(body)
    _error(api.post(CREATE, body, content_type="application/json"), 400, code, field)


def test_rule_violations_are_422_and_conflicts_409(api, patient_body, officer, make_request) -> None:
    _error(api.post(CREATE, patient_body(legal_basis="ccpa_1798_105"), content_type="application/json"),
           422, "legal_basis_mismatch", "legal_basis")
    request = make_request()
    response = officer.client().post(f"{CREATE}/{request.pk}/approve", {}, content_type="application/json")
    body = _error(response, 409, "invalid_transition", "status")
    assert "in_review" in body["error"]["message"]


def test_unknown_and_foreign_objects_are_404(api, make_request, patient_subject) -> None:
    _error(api.get(f"{CREATE}/{uuid.uuid4()}"), 404, "request_not_found", "id")
    _error(api.get(f"{CREATE}/not-a-uuid"), 404, "not_found")
    _error(api.get("/api/v1/no-such-thing"), 404, "not_found")
    foreign = make_request(patient_subject(2))  # institution B
    _error(api.get(f"{CREATE}/{foreign.pk}"), 404, "request_not_found", "id")
    _error(api.post(f"{CREATE}/{foreign.pk}/cancel", {}, content_type="application/json"),
           404, "request_not_found", "id")
    lookup = api.post("/api/v1/subjects/lookup", {"mrn": {"system": "urn:x", "value": "MRN-UNKNOWN"}},
                      content_type="application/json")
    body = _error(lookup, 404, "subject_not_found", "subject")
    assert "MRN-UNKNOWN" not in json.dumps(body)


def test_django_level_errors_keep_the_shape_on_api_paths(rf) -> None:
    _error(Client(HTTP_HOST="evil.example").get(CREATE), 400, "bad_request")
    assert Client(HTTP_HOST="evil.example").get("/healthz").status_code == 400  # not an API path
    _error(handler500(rf.get(CREATE)), 500, "internal_error")
    assert handler500(rf.get("/admin/")).status_code == 500


def test_method_accept_and_credentials_errors(api, key_a) -> None:
    _error(api.delete(CREATE), 405, "method_not_allowed")
    _error(api.options(CREATE), 405, "method_not_allowed")
    _error(api.get(CREATE, HTTP_ACCEPT="text/html"), 406, "not_acceptable")
    response = Client().get(CREATE)
    _error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")
    _error(Client(HTTP_AUTHORIZATION="Bearer obl_nope_nope").get(CREATE), 401, "authentication_failed")
    _error(Client(HTTP_AUTHORIZATION="Bearer a b").get(CREATE), 401, "authentication_failed")
    _error(Client(HTTP_AUTHORIZATION=f"Bearer {key_a.token}x").get(CREATE), 401, "authentication_failed")


def test_throttling_answers_429_with_retry_after(api, monkeypatch) -> None:
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "read", "2/min")
    assert api.get(CREATE).status_code == api.get(CREATE).status_code == 200
    response = api.get(CREATE)
    _error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0


def test_listing_costs_the_same_queries_for_1_or_20_requests(api, make_request, patient_subject,
                                                            django_assert_max_num_queries) -> None:
    make_request(patient_subject(0))
    with django_assert_max_num_queries(4) as one:  # 8 before issue 11.7
        assert api.get(CREATE).json()["count"] == 1
    for _ in range(19):
        make_request(patient_subject(1))
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert api.get(CREATE).json()["count"] == 20


def test_filters_are_validated(api) -> None:
    _error(api.get(f"{CREATE}?status=lost"), 400, "invalid_choice", "status")
    _error(api.get(f"{CREATE}?overdue=maybe"), 400, "invalid", "overdue")
    _error(api.get(f"{CREATE}?limit=oops"), 400, "invalid", "limit")
    _error(api.get(f"{CREATE}?offset=-3"), 400, "invalid", "offset")
    _error(api.get(f"{CREATE}?limit=0"), 400, "invalid", "limit")
    page = api.get(f"{CREATE}?limit=100000&offset=0")
    assert page.status_code == 200 and page.json()["count"] == 0


def test_an_empty_filter_is_refused_not_read_as_absent(api) -> None:
    """``overdue=`` used to list every request, as if the filter were not there."""
    _error(api.get(f"{CREATE}?overdue="), 400, "invalid", "overdue")
    _error(api.get(f"{CREATE}?institution="), 400, "blank", "institution")
    assert api.get(f"{CREATE}?overdue=false").status_code == 200


def test_a_query_parameter_given_twice_is_refused_without_naming_it(api) -> None:
    """``?limit=5&limit=500`` is ambiguous (the last one used to win), as a JSON key given twice is."""
    for query in ("limit=5&limit=500", "status=received&status=approved", "mrn0001=a&mrn0001=b"):
        body = _error(api.get(f"{CREATE}?{query}"), 400, "duplicate_parameter")
        assert not {"limit", "status", "mrn0001"} & set(json.dumps(body).replace('"', " ").split())
    assert api.get(f"{CREATE}?limit=5&offset=0").status_code == 200


# --- idempotent intake (sequential retries; concurrent ones: test_idempotency_concurrency) -------


def test_a_retry_with_the_same_key_replays_the_first_response(api, patient_body) -> None:
    first = api.post(CREATE, patient_body(), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first
    reordered = json.dumps(dict(reversed(list(patient_body().items()))))
    retry = api.post(CREATE, reordered, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert retry.status_code == 201 and retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert ForgetRequest.objects.count() == 1 and IdempotencyRecord.objects.count() == 1


def test_the_same_key_with_another_body_is_refused(api, patient_body) -> None:
    api.post(CREATE, patient_body(), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-2")
    response = api.post(CREATE, patient_body(1), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-2")
    _error(response, 422, "idempotency_key_reused", "Idempotency-Key")
    assert ForgetRequest.objects.count() == 1


def test_keys_are_purged_after_their_retention_window(api, patient_body, settings) -> None:
    api.post(CREATE, patient_body(), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-old")
    api.post(CREATE, patient_body(1), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-new")
    hours = settings.OBLIVIO_IDEMPOTENCY_TTL_HOURS
    IdempotencyRecord.objects.filter(key="k-old").update(
        created_at=timezone.now() - dt.timedelta(hours=hours, minutes=1))
    assert idempotency_purge_task.apply().get() == 1  # the beat task, run eagerly
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k-new"]
    again = api.post(CREATE, patient_body(1), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-old")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again  # a new request now
    assert ForgetRequest.objects.count() == 3


def test_keys_are_per_caller_and_failures_are_not_stored(api, officer, patient_body) -> None:
    bad = api.post(CREATE, patient_body(legal_basis="dua_terms"), content_type="application/json",
                   HTTP_IDEMPOTENCY_KEY="k-3")
    assert bad.status_code == 422 and not IdempotencyRecord.objects.exists()
    assert api.post(CREATE, patient_body(), content_type="application/json",
                    HTTP_IDEMPOTENCY_KEY="k-3").status_code == 201
    assert officer.client().post(CREATE, patient_body(), content_type="application/json",
                                 HTTP_IDEMPOTENCY_KEY="k-3").status_code == 201
    assert ForgetRequest.objects.count() == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "ünïcode"])
def test_malformed_idempotency_keys_are_refused(api, patient_body, key) -> None:
    response = api.post(CREATE, patient_body(), content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)
    _error(response, 422, "invalid_idempotency_key", "Idempotency-Key")
    assert not ForgetRequest.objects.exists()


def test_no_phi_in_responses_or_audit(api, tree, patient_body) -> None:
    mrn = tree.mrns[tree.patients[0].pk]
    created = api.post(CREATE, patient_body(), content_type="application/json")
    looked_up = api.post("/api/v1/subjects/lookup", patient_body()["subject"],
                         content_type="application/json")
    listed = api.get(CREATE)
    for response in (created, looked_up, listed):
        assert mrn not in response.content.decode() and "case-42" not in response.content.decode()
    events = json.dumps(list(AuditEvent.objects.values("subject_hash", "data", "object_id")))
    assert mrn not in events and "case-42" not in events
