"""Fixtures for the compliance tests: a small hierarchy, people with roles, API keys, clients."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from factories import Tree, hierarchy_make
from receivers import Receiver

from compliance.accounts import apikey_authenticate, apikey_create, user_create
from compliance.forget_requests import forget_request_create
from compliance.legal import LegalBasis, Regulation, RequesterType
from compliance.models import ForgetRequest
from compliance.subjects import SubjectIdentifiers
from core.principals import SYSTEM, Principal, Role, principal_for_user

PASSWORD = "correct-horse-battery-staple-42"
_names = itertools.count(1)


@pytest.fixture(autouse=True)
def _fast_and_private(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Throttle counters per test (never the shared Redis of the session); cheap password hashing;
    no outage remembered from an earlier test."""
    monkeypatch.setattr("compliance.webhooks._broker_down_until", 0.0)
    monkeypatch.setattr("compliance.api.throttling._shared_down_until", 0.0)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": f"compliance-test-{uuid.uuid4().hex}"}}


@pytest.fixture
def tree(db: None) -> Tree:
    """Two institutions, two trained patients each, one study each with FINDINGS + IMPRESSION."""
    return hierarchy_make(institutions=2, patients=2, studies=1)


@dataclass
class Person:
    username: str
    principal: Principal

    def client(self, **options: Any) -> Client:
        client = Client(**options)
        client.login(username=self.username, password=PASSWORD)
        return client


@pytest.fixture
def make_person(db: None) -> Callable[..., Person]:
    def make(*roles: Role) -> Person:
        username = f"person{next(_names)}"
        user = user_create(username=username, email="", password=PASSWORD, roles=list(roles), actor=SYSTEM)
        return Person(username, principal_for_user(user))
    return make


@pytest.fixture
def officer(make_person: Callable[..., Person]) -> Person:
    return make_person(Role.COMPLIANCE_OFFICER)


@pytest.fixture
def second_officer(make_person: Callable[..., Person]) -> Person:
    return make_person(Role.COMPLIANCE_OFFICER)


@dataclass
class Key:
    token: str
    principal: Principal

    def client(self) -> Client:
        return Client(HTTP_AUTHORIZATION=f"Bearer {self.token}")


@pytest.fixture
def make_key(db: None) -> Callable[..., Key]:
    def make(*institution_codes: str) -> Key:
        _, token = apikey_create(name="hospital EHR", institution_codes=list(institution_codes), actor=SYSTEM)
        return Key(token, apikey_authenticate(token))
    return make


@pytest.fixture
def key_a(tree: Tree, make_key: Callable[..., Key]) -> Key:
    """An API key scoped to the first institution of ``tree``."""
    return make_key(tree.institutions[0].code)


@pytest.fixture
def patient_subject(tree: Tree) -> Callable[[int], SubjectIdentifiers]:
    """Identifiers of trained patient ``index`` of ``tree``."""
    def subject(index: int = 0) -> SubjectIdentifiers:
        patient = tree.patients[index]
        return SubjectIdentifiers(mrn_system=patient.institution.mrn_system, mrn_value=tree.mrns[patient.pk])
    return subject


@pytest.fixture
def patient_body(tree: Tree) -> Callable[..., dict[str, Any]]:
    """A valid POST /forget-requests body about patient ``index`` of ``tree``."""
    def body(index: int = 0, **overrides: Any) -> dict[str, Any]:
        patient = tree.patients[index]
        mrn = {"system": patient.institution.mrn_system, "value": tree.mrns[patient.pk]}
        return {"subject": {"mrn": mrn},
                "regulation": "gdpr", "legal_basis": "gdpr_17_1_b",
                "requester": {"type": "data_subject", "reference": "case-42"}, **overrides}
    return body


@pytest.fixture
def make_request(patient_subject: Callable[[int], SubjectIdentifiers]) -> Callable[..., ForgetRequest]:
    """Create a GDPR request (as the system) about a subject of ``tree``; patient 0 by default."""
    def make(subject: SubjectIdentifiers | None = None, *, actor: Principal = SYSTEM,
             **overrides: Any) -> ForgetRequest:
        arguments = {"regulation": Regulation.GDPR, "legal_basis": LegalBasis.GDPR_17_1_B,
                     "requester_type": RequesterType.DATA_SUBJECT, "requester_reference": "case-42",
                     **overrides}
        return forget_request_create(actor=actor, subject=subject or patient_subject(0), **arguments)
    return make


@pytest.fixture
def receiver(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A loopback webhook receiver; loopback destinations are allowed explicitly (SSRF guard), here
    and in processes the test starts."""
    settings.OBLIVIO_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    monkeypatch.setenv("OBLIVIO_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", "1")
    running = Receiver()
    yield running
    running.stop()
