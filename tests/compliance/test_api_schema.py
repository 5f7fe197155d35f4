"""The published OpenAPI schema says what the API accepts: a body the schema admits is not refused
for a rule the schema could have stated, and a body the API refuses for such a rule is outside it."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db

CREATE = "/api/v1/forget-requests"
LOOKUP = "/api/v1/subjects/lookup"


@pytest.fixture(scope="module")
def published(django_db_blocker) -> dict[str, Any]:
    with django_db_blocker.unblock():
        return Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()


def _admits(published: dict[str, Any], component: str, body: Any) -> bool:
    schema = {"$ref": f"#/components/schemas/{component}", "components": published["components"]}
    return jsonschema_rs.validator_for(schema, validate_formats=True).is_valid(body)


def _bodies(patient_body) -> list[tuple[str, dict[str, Any]]]:
    """(what, body): accepted and refused intakes, the refused ones for cross-field and text rules."""
    valid = patient_body()
    mrn = valid["subject"]["mrn"]
    study = {"study_uid": "1.2.3", "section": "FINDINGS"}  # unknown study: 404, but schema-valid
    return [
        ("a patient under GDPR", valid),
        ("HIPAA-covered, recorded under institution policy",
         patient_body(regulation="institution_policy", legal_basis="consent_withdrawn", hipaa_covered=True)),
        ("a section of a study", patient_body(subject=study)),
        ("a section named without its study", patient_body(subject={"mrn": mrn, "section": "FINDINGS"})),
        ("two subjects at once", patient_body(subject={"mrn": mrn, "institution": "H1"})),
        ("a section of a study and an institution", patient_body(subject={**study, "institution": "H1"})),
        ("no subject", patient_body(subject={})),
        ("a CCPA ground under GDPR", patient_body(legal_basis="ccpa_1798_105")),
        ("HIPAA-covered under GDPR", patient_body(hipaa_covered=True)),
        ("a NUL character in a reference", patient_body(requester={"type": "dpo", "reference": "a\x00b"})),
        ("an empty MRN", patient_body(subject={"mrn": {**mrn, "value": ""}})),
        ("an MRN of spaces", patient_body(subject={"mrn": {**mrn, "value": "   "}})),
        ("a number for a reference", patient_body(requester={"type": "dpo", "reference": 42})),
        ("received at a time with its offset", patient_body(received_at="2026-01-31T09:30:00.5+01:00")),
        ("received at a naive time", patient_body(received_at="2026-01-31T09:30:00")),
        ("received on a bare date", patient_body(received_at="2026-01-31")),
        ("received in 1999", patient_body(received_at="1999-12-31T23:59:59Z")),
        ("received on a day February lacks", patient_body(received_at="2026-02-30T09:30:00Z")),
    ]


def test_the_schema_admits_exactly_the_intakes_the_api_accepts(published, key_a, patient_body) -> None:
    api = key_a.client()
    disagreements = []
    for what, body in _bodies(patient_body):
        response = api.post(CREATE, json.dumps(body), content_type="application/json")
        accepted = response.status_code in (201, 404)  # 404: well-formed, about a subject not found
        if _admits(published, "ForgetRequestCreateIn", body) != accepted:
            disagreements.append(f"{what}: API {response.status_code}, schema admits it: {not accepted}")
    assert not disagreements, "\n".join(disagreements)


def test_the_subject_rule_is_the_lookups_too(published, key_a, patient_body) -> None:
    api = key_a.client()
    for what, body in _bodies(patient_body)[2:7]:
        response = api.post(LOOKUP, json.dumps(body["subject"]), content_type="application/json")
        assert _admits(published, "SubjectIn", body["subject"]) == (response.status_code in (200, 404)), what
    assert api.post(LOOKUP, content_type="application/json").status_code == 400  # no body: refused
    assert published["paths"][LOOKUP]["post"]["requestBody"]["required"]  # and the schema says so


def test_an_extension_names_months_or_days(published, officer, make_request) -> None:
    extend = f"{CREATE}/{make_request().pk}/extend"
    api = officer.client()
    for body, status in (({"months": 1, "days": 10}, 400), ({}, 400), ({"months": 1}, 200)):
        body = {**body, "notice_sent_at": timezone.now().isoformat()}
        assert _admits(published, "ExtendIn", body) == (status == 200), body
        response = api.post(extend, json.dumps(body), content_type="application/json")
        assert response.status_code == status, response.content


def test_every_operation_documents_what_the_server_answers_before_the_api(published) -> None:
    """gunicorn's own refusals (``oblivio_site.serving``) can meet any operation."""
    for path, operations in published["paths"].items():
        for method, operation in operations.items():
            assert {"408", "414", "431"} <= set(operation["responses"]), f"{method.upper()} {path}"
