"""Hostile input (issue 11.5): every request below is a 4xx in the one error shape, never a 500, and no
error message repeats what was submitted (a name or MRN typed into the wrong field is PHI)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from compliance.models import ForgetRequest

pytestmark = pytest.mark.django_db

CREATE = "/api/v1/forget-requests"
#: Looks like PHI: must never come back in an error.
MARKER = "Jane Doe MRN-ECHO-7731"


def _refused(response, status: int | None = None) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    if status is not None:
        assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
    return body


@pytest.fixture
def api(key_a) -> Client:
    return key_a.client()


@pytest.mark.parametrize("query", [
    "limit=²", "offset=²", "limit=١٢", "offset=٣", "limit=1%00", "offset=%00",
    "offset=99999999999999999999999999", "limit=99999999999999999999999999&offset=1e3",
    "offset=9223372036854775808", "limit=" + "9" * 5000,
    "status=%ED%A0%80", "institution=%00", "regulation=%F0%9F%92%A9", "overdue=%00",
])
def test_hostile_query_strings_are_refused_cleanly(api, query) -> None:
    response = api.get(f"{CREATE}?{query}")
    if response.status_code != 200:
        _refused(response, 400)


@pytest.mark.parametrize("field", ["regulation", "legal_basis"])
def test_a_lone_surrogate_in_an_enum_field_is_a_400(api, patient_body, field) -> None:
    raw = json.dumps(patient_body()).replace('"gdpr"' if field == "regulation" else '"gdpr_17_1_b"',
                                             '"\\ud800"', 1)
    _refused(api.post(CREATE, raw, content_type="application/json"), 400)
    assert not ForgetRequest.objects.exists()


@pytest.mark.parametrize("raw_change", [
    ('"type": "data_subject"', '"type": "\\udfff"'),
    ('"reference": "case-42"', '"reference": "\\ud83d"'),
    ('"value": "', '"value": "\\udc00'),
])
def test_lone_surrogates_anywhere_in_a_body_are_a_400(api, patient_body, raw_change) -> None:
    raw = json.dumps(patient_body())
    assert raw_change[0] in raw
    _refused(api.post(CREATE, raw.replace(raw_change[0], raw_change[1], 1), content_type="application/json"),
             400)
    assert not ForgetRequest.objects.exists()


def test_duplicate_json_keys_are_refused(api, patient_body) -> None:
    raw = json.dumps(patient_body())[:-1] + ', "regulation": "ccpa"}'
    body = _refused(api.post(CREATE, raw, content_type="application/json"), 400)
    assert body["error"]["code"] == "parse_error" and "duplicate" in body["error"]["message"]
    assert not ForgetRequest.objects.exists()


@pytest.mark.parametrize("raw", [
    "[" * 10_000 + "]" * 10_000,
    '{"a":' * 10_000 + "1" + "}" * 10_000,
    '{"regulation": 1' + "0" * 5000 + "}",
    '{"regulation": 1e999999}',
    '{"subject": {"mrn": {"system": "x", "value": "\\u0000"}}}',
])
def test_absurd_json_is_a_400(api, raw) -> None:
    _refused(api.post(CREATE, raw, content_type="application/json"), 400)


@pytest.mark.parametrize("received_at", ["0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z",
                                         "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_received_at_is_bounded(api, patient_body, received_at) -> None:
    body = _refused(api.post(CREATE, patient_body(received_at=received_at), content_type="application/json"))
    assert body["error"]["field"] == "received_at"
    assert not ForgetRequest.objects.exists()


@pytest.mark.parametrize("change", [
    lambda body: body.update(regulation=MARKER),
    lambda body: body.update(legal_basis=MARKER),
    lambda body: body["requester"].update(type=MARKER),
    lambda body: body["subject"].update(section=MARKER, study_uid="1.2.3", mrn=None),
    lambda body: body.update(received_at=MARKER),
    lambda body: body.update(hipaa_covered=MARKER),
    lambda body: body.update(requester=MARKER),
    lambda body: body.update(subject={"mrn": MARKER}),
])
def test_error_messages_never_repeat_submitted_values(api, patient_body, change) -> None:
    body = patient_body()
    change(body)
    if body["subject"].get("mrn", "") is None:
        del body["subject"]["mrn"]
    error = _refused(api.post(CREATE, body, content_type="application/json"), 400)
    assert "MRN-ECHO" not in json.dumps(error) and "Jane" not in json.dumps(error)


def test_filters_and_headers_never_echo_either(api, officer, make_request) -> None:
    for query in (f"status={MARKER}", f"regulation={MARKER}", f"overdue={MARKER}", f"limit={MARKER}"):
        assert "MRN-ECHO" not in api.get(f"{CREATE}?{query}").content.decode()
    auditor_view = officer.client().get(f"/api/v1/audit-events?action={MARKER}&since={MARKER}")
    assert auditor_view.status_code in (400, 403) and "MRN-ECHO" not in auditor_view.content.decode()
    media = api.post(CREATE, "{}", content_type=f"text/{MARKER.replace(' ', '-')}")
    assert _refused(media, 415) and "MRN-ECHO" not in media.content.decode()
    request = make_request()
    refusal = officer.client().post(f"{CREATE}/{request.pk}/refuse", {"reason": MARKER, "text": "x"},
                                    content_type="application/json")
    assert _refused(refusal, 400) and "MRN-ECHO" not in refusal.content.decode()


def test_the_schema_states_the_rules(client) -> None:
    schema = client.get("/api/schema/?format=json").json()
    parameters = schema["paths"]["/api/v1/forget-requests"]["get"]["parameters"]
    listing = {parameter["name"]: parameter["schema"] for parameter in parameters}
    assert listing["limit"]["maximum"] >= 200 and listing["offset"]["maximum"] > 0
    create = schema["components"]["schemas"]["ForgetRequestCreateIn"]["properties"]["received_at"]
    assert "2000" in create["description"]
    refuse = schema["components"]["schemas"]["RefuseIn"]["properties"]["text"]
    assert refuse["minLength"] == 1 and refuse.get("pattern")


def test_the_safety_net_hides_echoes_but_keeps_allowed_value_lists(api, patient_body) -> None:
    body = _refused(api.post(CREATE, patient_body(legal_basis="nonsense"), content_type="application/json"))
    assert "gdpr_17_1_b" in body["error"]["message"]  # the API's own vocabulary stays helpful
    wrong = api.post(CREATE, patient_body(received_at="Jane Doe MRN-ECHO-7731 2020"),
                     content_type="application/json")
    assert "MRN-ECHO" not in wrong.content.decode()
