"""Fixtures for the hierarchy tests: a database search for identifiers, sample FHIR bundles."""

import base64
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection
from factories import UID_ROOT


@pytest.fixture
def db_mentions() -> Callable[[str], bool]:
    """Whether any text or JSON value of any table in the test database holds a string as a whole token.
    Timestamps and numbers are left out and a token must not sit inside a longer run of letters and
    digits: a six-digit MRN turns up by chance in a timestamp's microseconds or inside a hex digest."""

    def mentions(raw: str) -> bool:
        chunks = []
        with connection.cursor() as cursor:
            for table in connection.introspection.table_names():
                cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
                chunks.extend(repr(value) for row in cursor.fetchall() for value in row
                              if isinstance(value, str | dict | list))
        return re.search(rf"(?<![0-9A-Za-z]){re.escape(raw)}(?![0-9A-Za-z])", "\n".join(chunks)) is not None

    return mentions


MRN_SYSTEM = "http://hospital-a.example.org/fhir/sid/mrn"
LOINC = "http://loinc.org"
REPORT_TEXT = ("EXAMINATION: Chest radiograph, two views.\nINDICATION: Cough for two weeks.\n"
               "FINDINGS: No focal consolidation. Heart size normal.\nIMPRESSION: No acute disease.\n")


@dataclass
class SampleBundle:
    """A synthetic FHIR R4 transaction bundle (no real PHI) and the raw identifiers it carries."""

    data: dict[str, Any]
    mrn_system: str
    mrns: list[str] = field(default_factory=list)
    uids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def entry(self, resource_type: str, number: int = 0) -> tuple[int, dict[str, Any]]:
        found = [(i, e["resource"]) for i, e in enumerate(self.data["entry"])
                 if e["resource"]["resourceType"] == resource_type]
        return found[number]


def _url(*parts: object) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, '/'.join(map(str, parts)))}"


def _post(url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": url, "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]}}


def sample_bundle(*, org_code: str = "HOSP-A", mrn_system: str = MRN_SYSTEM, patients: int = 2,
                  studies: int = 2, mrn_start: int = 700001, uid_start: int = 5000) -> SampleBundle:
    """Organization, patients with an MR identifier, per study an order (ServiceRequest), an ImagingStudy
    and a DiagnosticReport (even studies link ``imagingStudy``, odd ones only share ``basedOn``), a
    Composition with a Lab section for the first study, and an Observation the import skips."""
    org = _url(org_code)
    entries = [_post(org, {"resourceType": "Organization", "name": f"{org_code} General (synthetic)",
                           "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.999", "value": org_code}]})]
    bundle = SampleBundle(mrn_system=mrn_system,
                          data={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    for p in range(patients):
        mrn, name = str(mrn_start + p), f"Testperson{p}"
        bundle.mrns.append(mrn)
        bundle.names.append(name)
        patient = _url(org_code, mrn)
        entries.append(_post(patient, {
            "resourceType": "Patient", "name": [{"family": "Synthetic", "given": [name]}],
            "identifier": [{"use": "usual", "system": mrn_system, "value": mrn, "type": {"coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}],
            "gender": "female", "birthDate": "1970-01-01", "managingOrganization": {"reference": org}}))
        for s in range(studies):
            uid = f"{UID_ROOT}.{uid_start + p * studies + s}"
            bundle.uids.append(uid)
            order, study, report = _url(uid, "order"), _url(uid), _url(uid, "report")
            entries.append(_post(order, {"resourceType": "ServiceRequest", "status": "completed",
                                         "intent": "order", "subject": {"reference": patient},
                                         "code": {"text": "XR chest 2 views"}}))
            entries.append(_post(study, {
                "resourceType": "ImagingStudy", "status": "available", "subject": {"reference": patient},
                "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
                "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CR"}],
                "basedOn": [{"reference": order}], "numberOfSeries": 1,
                "series": [{"uid": f"{uid}.1", "modality": {"code": "CR"}}]}))
            link = {"imagingStudy": [{"reference": study}]} if s % 2 == 0 else {}
            entries.append(_post(report, {
                "resourceType": "DiagnosticReport", "status": "final", "subject": {"reference": patient},
                "code": {"coding": [{"system": LOINC, "code": "18748-4"}]}, "basedOn": [{"reference": order}],
                "conclusion": "No acute disease.", **link,
                "presentedForm": [{"contentType": "text/plain",
                                   "data": base64.b64encode(REPORT_TEXT.encode()).decode()}]}))
            if p == 0 and s == 0:
                entries.append(_post(_url(uid, "composition"), {
                    "resourceType": "Composition", "status": "final", "date": "2026-01-05",
                    "type": {"coding": [{"system": LOINC, "code": "18748-4"}]}, "title": "Radiology report",
                    "subject": {"reference": patient}, "author": [{"reference": org}],
                    "section": [{"title": "Laboratory", "entry": [{"reference": report}]},
                                {"title": "Comparison", "entry": [{"reference": report}]}]}))
                entries.append(_post(_url(uid, "obs"), {
                    "resourceType": "Observation", "status": "final", "code": {"text": "SpO2"},
                    "subject": {"reference": patient}}))
    return bundle


@pytest.fixture
def bundle_make() -> Callable[..., SampleBundle]:
    return sample_bundle
