"""REST endpoints of the pipeline: shapes, authorisation (an API key sees only its institution), errors."""

from __future__ import annotations

import uuid

import pytest
import yaml
from django.test import Client
from pipeline_support import *  # noqa: F403
from pipeline_support import Served, drive, plan_one

from compliance.attestation import certificate_check, load_public_pem, public_key_id
from compliance.models import Certificate, UnlearningJob
from core.principals import Role


@pytest.fixture
def certified(served: Served, approve) -> tuple:
    request = approve()
    job = drive(plan_one())
    return request, job


def test_a_hospital_key_follows_its_job_and_fetches_its_certificate(certified, make_key) -> None:
    request, job = certified
    client = make_key("H1").client()
    listing = client.get("/api/v1/jobs").json()
    assert [item["id"] for item in listing["results"]] == [str(job.pk)]
    detail = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert detail["state"] == "succeeded" and detail["progress"] == 100.0
    assert detail["requests"] == [str(request.pk)] and detail["candidate_digest"]
    report = client.get(f"/api/v1/verification-reports/{detail['verification_reports'][0]}").json()
    assert report["passed"] is True and report["summary"]["checks"]
    body = client.get(f"/api/v1/forget-requests/{request.pk}/certificate").json()
    keys = {item["key_id"]: load_public_pem(item["public_key_pem"])
            for item in Client().get("/api/v1/public-keys").json()}
    check = certificate_check(body["bundle"], keys=keys, request_id=str(request.pk),
                              model_after=detail["candidate_digest"])
    assert check.ok, check.problems
    pdf = client.get(f"/api/v1/forget-requests/{request.pk}/certificate.pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    verify = client.get(f"/api/v1/certificates/{body['id']}/verify").json()
    assert verify["ok"] is True and verify["request_id"] == str(request.pk)


def test_another_institutions_key_sees_nothing(certified, make_key) -> None:
    request, job = certified
    other = make_key("H2").client()
    report_id = job.verifications.get().pk
    certificate_id = Certificate.objects.get().pk
    assert other.get("/api/v1/jobs").json()["results"] == []
    for url in (f"/api/v1/jobs/{job.pk}", f"/api/v1/verification-reports/{report_id}",
                f"/api/v1/forget-requests/{request.pk}/certificate",
                f"/api/v1/forget-requests/{request.pk}/certificate.pdf",
                f"/api/v1/certificates/{certificate_id}/verify"):
        response = other.get(url)
        assert response.status_code == 404, url
        assert set(response.json()["error"]) == {"code", "message", "field"}
    assert other.post(f"/api/v1/jobs/{job.pk}/cancel").status_code == 403  # hospital systems cannot
    assert other.get("/api/v1/deployments").status_code == 403


def test_model_registry_endpoints_and_rollback_rules(certified, make_person, served: Served) -> None:
    engineer = make_person(Role.ML_ENGINEER).client()
    deployments = engineer.get("/api/v1/deployments").json()["results"]
    assert deployments[0]["name"] == "default"
    served_now = deployments[0]["served"]
    assert served_now["parent"] == str(served.version.pk) and served_now["forgotten_record_count"] > 0
    assert served_now["utility_baseline"] == {"items": 1, "success_rate": 1.0}  # the scripted engine's panel
    versions = engineer.get("/api/v1/deployments/default/versions").json()["results"]
    assert [v["status"] for v in versions] == ["served", "deleted"]
    refused = engineer.post("/api/v1/deployments/default/rollback",
                            {"version": str(served.version.pk), "reason": "regression"},
                            content_type="application/json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "version_not_retired"
    missing = engineer.post("/api/v1/deployments/default/rollback", {"version": str(uuid.uuid4())},
                            content_type="application/json")
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "reason"
    assert engineer.get("/api/v1/deployments/nope/versions").status_code == 404


def test_cancel_over_the_api(served: Served, approve, officer) -> None:
    approve()
    job = plan_one()
    client = officer.client()
    response = client.post(f"/api/v1/jobs/{job.pk}/cancel")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    again = client.post(f"/api/v1/jobs/{job.pk}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_not_active"
    assert UnlearningJob.objects.get().state == "cancelled"


def test_an_officer_reschedules_the_escalated_request_of_a_cancelled_job(served: Served, approve, officer,
                                                                        make_key) -> None:
    request = approve()
    client = officer.client()
    url = f"/api/v1/forget-requests/{request.pk}/reschedule"
    early = client.post(url, {}, content_type="application/json")
    assert early.status_code == 409 and early.json()["error"]["code"] == "request_not_escalated"
    client.post(f"/api/v1/jobs/{plan_one().pk}/cancel")
    assert client.get(f"/api/v1/forget-requests/{request.pk}").json()["status"] == "escalated"
    assert make_key("H1").client().post(url, {}, content_type="application/json").status_code == 403
    response = client.post(url, {"note": "retry after maintenance"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["status"] == "scheduled"
    assert UnlearningJob.objects.filter(state="planned").count() == 1


def test_bad_input_and_unknown_ids_answer_in_the_error_shape(db, officer) -> None:
    client = officer.client()
    assert client.get("/api/v1/jobs?state=bogus").json()["error"]["field"] == "state"
    for url in (f"/api/v1/jobs/{uuid.uuid4()}", f"/api/v1/verification-reports/{uuid.uuid4()}",
                f"/api/v1/forget-requests/{uuid.uuid4()}/certificate"):
        response = client.get(url)
        assert response.status_code == 404 and "error" in response.json()
    assert Client().get("/api/v1/jobs").status_code == 401


def test_the_openapi_schema_documents_the_pipeline(db) -> None:
    document = yaml.safe_load(Client().get("/api/schema/").content)
    for path in ("/api/v1/jobs", "/api/v1/jobs/{id}/cancel", "/api/v1/deployments/{name}/rollback",
                 "/api/v1/forget-requests/{id}/certificate.pdf", "/api/v1/public-keys",
                 "/api/v1/verification-reports/{id}", "/api/v1/certificates/{id}/verify"):
        assert path in document["paths"], path
    cancel = document["paths"]["/api/v1/jobs/{id}/cancel"]["post"]["responses"]
    assert cancel["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


def test_public_keys_name_the_key_id_certificates_carry(db) -> None:
    keys = Client().get("/api/v1/public-keys").json()
    assert keys and all(public_key_id(load_public_pem(k["public_key_pem"])) == k["key_id"] for k in keys)


def test_the_serving_gateway_screens_prompts(served: Served, approve, make_person, make_key) -> None:
    gateway = make_person(Role.ML_ENGINEER).client()
    mrn = served.mrns[0]

    def screen(**body: object) -> dict:
        response = gateway.post("/api/v1/inference/screen", body, content_type="application/json")
        assert response.status_code == 200, response.content
        return response.json()

    assert screen(prompt=f"Findings for {mrn}?")["refused"] is False
    approve(mrn)
    refused = screen(prompt=f"Findings for {mrn}?")
    assert refused["refused"] is True and mrn not in refused["message"]
    assert screen(prompt="Findings?", identifiers=[mrn])["refused"] is True
    bad = gateway.post("/api/v1/inference/screen", {"prompt": "x", "images": ["%%"]},
                       content_type="application/json")
    assert bad.status_code == 400 and bad.json()["error"] | {"message": ""} == {
        "code": "invalid_image", "field": "images.0", "message": ""}
    assert make_key("H1").client().post("/api/v1/inference/screen", {"prompt": mrn},
                                        content_type="application/json").status_code == 403
