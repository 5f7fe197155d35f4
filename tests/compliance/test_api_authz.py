"""Who may call what: role × endpoint × own / other institution, through the HTTP API."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from compliance import forget_requests as services
from core.principals import SYSTEM, Role

pytestmark = pytest.mark.django_db

# endpoint -> (method, path, status the request must be in, body)
ENDPOINTS: dict[str, tuple[str, str, str | None, dict[str, Any] | None]] = {
    "institutions": ("get", "/api/v1/institutions", None, None),
    "lookup": ("post", "/api/v1/subjects/lookup", None, None),
    "list": ("get", "/api/v1/forget-requests", None, None),
    "create": ("post", "/api/v1/forget-requests", None, None),
    "detail": ("get", "/api/v1/forget-requests/{id}", "received", None),
    "review": ("post", "/api/v1/forget-requests/{id}/review", "received", {}),
    "approve": ("post", "/api/v1/forget-requests/{id}/approve", "in_review", {"note": "scope confirmed"}),
    "refuse": ("post", "/api/v1/forget-requests/{id}/refuse", "in_review", {"reason": "other", "text": "x"}),
    "extend": ("post", "/api/v1/forget-requests/{id}/extend", "received", {"months": 1}),
    "cancel": ("post", "/api/v1/forget-requests/{id}/cancel", "received", {}),
    "audit": ("get", "/api/v1/audit-events", None, None),
}
#: Endpoints about one institution's objects (the others have no "other institution" case).
SCOPED = {"lookup", "create", "detail", "review", "approve", "refuse", "extend", "cancel"}

ALLOWED = {
    "officer": set(ENDPOINTS),
    "ml_engineer": {"institutions", "list", "detail"},
    "auditor": {"institutions", "list", "detail", "audit"},
    "hospital": {"institutions", "lookup", "list", "create", "detail", "cancel"},
    "anonymous": set(),
}


def _expected(who: str, endpoint: str, institution: str) -> int:
    if who == "anonymous":
        return 401
    if endpoint not in ALLOWED[who]:
        return 403
    if who == "hospital" and institution == "other":
        return 404  # never 403: another institution's objects do not exist for this key
    return 201 if endpoint == "create" else 200


CASES = [(who, endpoint, institution) for who in ALLOWED for endpoint in ENDPOINTS
         for institution in (("own", "other") if endpoint in SCOPED else ("own",))]


@pytest.fixture
def client_of(make_person, key_a) -> Any:
    def client(who: str) -> Client:
        roles = {"officer": Role.COMPLIANCE_OFFICER, "ml_engineer": Role.ML_ENGINEER, "auditor": Role.AUDITOR}
        if who in roles:
            return make_person(roles[who]).client()
        return key_a.client() if who == "hospital" else Client()
    return client


@pytest.mark.parametrize(("who", "endpoint", "institution"), CASES, ids=lambda value: str(value))
def test_authorisation_matrix(who, endpoint, institution, client_of, make_request, patient_subject,
                              patient_body) -> None:
    method, path, status, body = ENDPOINTS[endpoint]
    patient = 0 if institution == "own" else 2  # patients 0-1 belong to institution A, 2-3 to B
    if status is not None:
        request = make_request(patient_subject(patient))
        if status == "in_review":
            services.forget_request_review(request_id=request.pk, actor=SYSTEM)
        path = path.format(id=request.pk)
    if endpoint == "lookup":
        body = patient_body(patient)["subject"]
    elif endpoint == "create":
        body = patient_body(patient)
    elif endpoint == "extend":
        body = {**body, "notice_sent_at": timezone.now().isoformat()}
    call = getattr(client_of(who), method)
    response = call(path, body, content_type="application/json") if method == "post" else call(path)
    assert response.status_code == _expected(who, endpoint, institution), response.content
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}


def test_an_api_key_sees_only_its_institutions(tree, key_a, make_request, patient_subject) -> None:
    make_request(patient_subject(0))
    make_request(patient_subject(2))
    client = key_a.client()
    institutions = client.get("/api/v1/institutions").json()["results"]
    assert [institution["code"] for institution in institutions] == [tree.institutions[0].code]
    listed = client.get("/api/v1/forget-requests").json()
    assert listed["count"] == 1 and listed["results"][0]["institution"] == tree.institutions[0].code
    other = client.get(f"/api/v1/forget-requests?institution={tree.institutions[1].code}").json()
    assert other["count"] == 0


def test_a_revoked_key_is_refused(key_a, tree) -> None:
    from compliance.accounts import apikey_revoke

    assert key_a.client().get("/api/v1/institutions").status_code == 200
    apikey_revoke(prefix=key_a.token.split("_")[1], actor=SYSTEM)
    response = key_a.client().get("/api/v1/institutions")
    assert response.status_code == 401 and response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize("authorization", ["Basic b2ZmaWNlcjpwdw==", "Token abc", "Bearer", "garbage",
                                           "Bearer obl_nope_nope", ""])
def test_credentials_that_do_not_authenticate_are_refused_beside_a_session(officer, authorization) -> None:
    client = officer.client()
    assert client.get("/api/v1/institutions").status_code == 200
    response = client.get("/api/v1/institutions", HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 401 and response.json()["error"]["code"] == "authentication_failed"


def test_session_writes_need_the_csrf_token(officer, make_request) -> None:
    request = make_request()
    client = officer.client(enforce_csrf_checks=True)
    response = client.post(f"/api/v1/forget-requests/{request.pk}/review", {},
                           content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["error"]["message"]


def test_people_without_a_role_get_nothing(db) -> None:
    client = Client()
    client.force_login(get_user_model().objects.create_user(username="no-role", is_superuser=True))
    response = client.get("/api/v1/forget-requests")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
