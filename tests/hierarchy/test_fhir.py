"""FHIR R4 Bundle import: mapping, idempotency, clear errors that never echo identifiers."""

import json
from pathlib import Path

import pytest
from factories import corpus_dir_write, corpus_records, institution_make

from core.models import AuditEvent
from core.principals import SYSTEM
from hierarchy.fhir import FhirImportError, fhir_bundle_import
from hierarchy.identifiers import default_mrn_system
from hierarchy.models import Institution, Patient, Section, Study
from hierarchy.selectors import patient_by_mrn, section_get, study_by_uid
from hierarchy.services import corpus_ingest

pytestmark = pytest.mark.django_db


def _node_counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Institution, Patient, Study, Section))


def _sections(study: Study) -> set[str]:
    return set(study.sections.values_list("name", flat=True))


def test_happy_path_maps_every_resource(bundle_make, db_mentions) -> None:
    sample = bundle_make()
    result = fhir_bundle_import(bundle=sample.data, actor=SYSTEM)
    assert result.created
    assert result.counts == {"entries": 17, "organizations": 1, "patients": 2, "imaging_studies": 4,
                             "reports": 4, "compositions": 1, "institutions_created": 1,
                             "patients_created": 2, "studies_created": 4, "studies_updated": 0,
                             "sections_created": 17}
    institution = Institution.objects.get()
    assert (institution.code, institution.mrn_system) == ("HOSP-A", sample.mrn_system)
    patient = patient_by_mrn(system=sample.mrn_system, value=sample.mrns[0])
    assert patient is not None and patient.institution == institution
    first = study_by_uid(uid=f"urn:oid:{sample.uids[0]}")
    assert first == study_by_uid(uid=sample.uids[0]) and first.patient == patient and first.modality == "CR"
    assert _sections(first) == {"EXAMINATION", "INDICATION", "FINDINGS", "IMPRESSION", "LAB"}
    linked_by_order = study_by_uid(uid=sample.uids[1])  # its report has no imagingStudy, only basedOn
    assert _sections(linked_by_order) == {"EXAMINATION", "INDICATION", "FINDINGS", "IMPRESSION"}
    assert section_get(study=first, name="lab") is not None
    event = AuditEvent.objects.get()
    assert (event.action, event.object_type, event.object_id) == ("fhir_bundle.imported", "fhir_bundle",
                                                                  result.bundle_sha256)
    assert db_mentions(result.bundle_sha256)  # the search sees the audit log
    for raw in (*sample.mrns, *sample.uids, *sample.names):
        assert not db_mentions(raw)


def test_import_is_idempotent(bundle_make) -> None:
    sample = bundle_make()
    fhir_bundle_import(bundle=sample.data, actor=SYSTEM)
    again = fhir_bundle_import(bundle=json.dumps(sample.data), actor=SYSTEM)
    assert not again.created
    assert again.counts["patients_created"] == again.counts["sections_created"] == 0
    assert _node_counts() == (1, 2, 4, 17) and AuditEvent.objects.count() == 1


def test_missing_mr_identifier(bundle_make) -> None:
    sample = bundle_make()
    number, patient = sample.entry("Patient", 1)
    del patient["identifier"][0]["type"]
    with pytest.raises(FhirImportError) as caught:
        fhir_bundle_import(bundle=sample.data, actor=SYSTEM)
    assert (caught.value.entry, caught.value.field) == (number, "Patient.identifier")
    assert str(caught.value).startswith(f"entry[{number}] Patient.identifier: needs a medical record number")
    assert sample.mrns[1] not in str(caught.value)
    assert _node_counts() == (0, 0, 0, 0)


def test_unknown_reference(bundle_make) -> None:
    sample = bundle_make()
    number, study = sample.entry("ImagingStudy", 2)
    study["subject"] = {"reference": "Patient/not-in-bundle"}
    with pytest.raises(FhirImportError, match="does not resolve to a Patient") as caught:
        fhir_bundle_import(bundle=sample.data, actor=SYSTEM)
    assert (caught.value.entry, caught.value.field) == (number, "ImagingStudy.subject")
    assert _node_counts() == (0, 0, 0, 0) and not AuditEvent.objects.exists()


def test_references_by_logical_identifier(bundle_make) -> None:
    sample = bundle_make()
    _, study = sample.entry("ImagingStudy", 2)
    _, report = sample.entry("DiagnosticReport", 2)
    mrn = {"system": sample.mrn_system, "value": sample.mrns[0]}
    study["subject"] = report["subject"] = {"identifier": mrn}
    fhir_bundle_import(bundle=sample.data, actor=SYSTEM)
    moved = study_by_uid(uid=sample.uids[2])  # patient 1's first study, now filed under patient 0
    assert moved.patient == patient_by_mrn(system=sample.mrn_system, value=sample.mrns[0])


def test_an_identifier_of_no_or_of_two_patients_does_not_resolve(bundle_make) -> None:
    sample = bundle_make()
    number, study = sample.entry("ImagingStudy", 2)
    study["subject"] = {"identifier": {"system": sample.mrn_system, "value": "no-such-mrn"}}
    with pytest.raises(FhirImportError, match="does not resolve to a Patient") as caught:
        fhir_bundle_import(bundle=sample.data, actor=SYSTEM)
    assert (caught.value.entry, caught.value.field) == (number, "ImagingStudy.subject")
    assert "no-such-mrn" not in str(caught.value)
    _, second = sample.entry("Patient", 1)
    second["identifier"][0]["value"] = sample.mrns[0]  # two patients share one MRN
    study["subject"] = {"identifier": {"system": sample.mrn_system, "value": sample.mrns[0]}}
    with pytest.raises(FhirImportError, match="does not resolve to a Patient"):
        fhir_bundle_import(bundle=sample.data, actor=SYSTEM)
    assert _node_counts() == (0, 0, 0, 0)


def test_report_and_study_linked_by_an_order_outside_the_bundle(bundle_make) -> None:
    sample = bundle_make(patients=1)
    _, study = sample.entry("ImagingStudy", 1)
    _, report = sample.entry("DiagnosticReport", 1)
    study["basedOn"] = report["basedOn"] = [{"reference": "ServiceRequest/accession-42"}]
    fhir_bundle_import(bundle=sample.data, actor=SYSTEM)
    assert "FINDINGS" in _sections(study_by_uid(uid=sample.uids[1]))


def test_report_linked_to_no_study(bundle_make) -> None:
    sample = bundle_make()
    number, report = sample.entry("DiagnosticReport", 1)
    del report["basedOn"]
    with pytest.raises(FhirImportError, match="linked to no ImagingStudy") as caught:
        fhir_bundle_import(bundle=sample.data, actor=SYSTEM)
    assert (caught.value.entry, caught.value.field) == (number, "DiagnosticReport.imagingStudy")


def test_schema_errors_name_entry_and_field_without_values(bundle_make) -> None:
    sample = bundle_make()
    number, patient = sample.entry("Patient", 0)
    patient["birthDate"] = f"born-{sample.mrns[0]}"
    with pytest.raises(FhirImportError) as caught:
        fhir_bundle_import(bundle=sample.data, actor=SYSTEM)
    assert (caught.value.entry, caught.value.field) == (number, "Patient.birthDate")
    assert sample.mrns[0] not in str(caught.value)


def test_wrongly_typed_identifier_value(bundle_make) -> None:
    sample = bundle_make()
    number, study = sample.entry("ImagingStudy", 0)
    study["identifier"][0]["value"] = {"oid": sample.uids[0]}
    with pytest.raises(FhirImportError) as caught:
        fhir_bundle_import(bundle=sample.data, actor=SYSTEM)
    assert (caught.value.entry, caught.value.field) == (number, "ImagingStudy.identifier[0].value")
    assert sample.uids[0] not in str(caught.value)


@pytest.mark.parametrize(("bundle", "message"), [
    ("{not json", "not valid JSON"),
    ({"resourceType": "Patient"}, "resourceType 'Bundle'"),
    ({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Nope"}}]},
     "entry[0] resource.resourceType: unknown"),
    ({"resourceType": "Bundle", "type": "collection",
      "entry": [{"resource": {"resourceType": "ImagingStudy", "status": "available",
                              "subject": {"reference": "Patient/x"}}}]},
     "entry[0] ImagingStudy.identifier: needs an identifier with system urn:dicom:uid"),
    ({"resourceType": "Bundle", "type": "collection",
      "entry": [{"resource": {"resourceType": "Patient", "contained": [{"resourceType": "Nope"}]}}]},
     "not a valid FHIR R4 Bundle"),
])
def test_not_an_importable_bundle(bundle, message: str) -> None:
    with pytest.raises(FhirImportError, match=message.replace("[", r"\[").replace("]", r"\]")):
        fhir_bundle_import(bundle=bundle, actor=SYSTEM)


def test_mrn_system_must_match_the_institution(bundle_make) -> None:
    institution_make(code="HOSP-A", mrn_system="urn:other:mrn")
    sample = bundle_make()
    number, _ = sample.entry("Patient", 0)
    with pytest.raises(FhirImportError, match="different MRN system") as caught:
        fhir_bundle_import(bundle=sample.data, actor=SYSTEM)
    assert (caught.value.entry, caught.value.field) == (number, "Patient.identifier")
    assert _node_counts() == (1, 0, 0, 0)


def test_study_already_filed_under_another_patient(bundle_make) -> None:
    fhir_bundle_import(bundle=bundle_make().data, actor=SYSTEM)
    moved = bundle_make(mrn_start=800001)  # same study UIDs, other patients
    number, _ = moved.entry("ImagingStudy", 0)
    with pytest.raises(FhirImportError, match="already filed under another patient") as caught:
        fhir_bundle_import(bundle=moved.data, actor=SYSTEM)
    assert (caught.value.entry, caught.value.field) == (number, "ImagingStudy.subject")
    assert _node_counts() == (1, 2, 4, 17)


def test_fhir_joins_an_ingested_corpus(tmp_path: Path, bundle_make) -> None:
    records = corpus_records(institutions=1, patients=1, studies=1, holdout_patients=0)
    corpus_ingest(corpus_dir=corpus_dir_write(tmp_path, records=records), actor=SYSTEM)
    study = Study.objects.get()
    assert study.modality == ""
    uid_start = int(records[0].study_id.rsplit(".", 1)[1])
    sample = bundle_make(org_code="H1", mrn_system=default_mrn_system("H1"), patients=1, studies=1,
                         mrn_start=0, uid_start=uid_start)
    sample.entry("Patient")[1]["identifier"][0]["value"] = records[0].patient_id
    result = fhir_bundle_import(bundle=sample.data, actor=SYSTEM)
    assert result.counts["institutions_created"] == result.counts["patients_created"] == 0
    assert result.counts["studies_created"] == 0 and result.counts["studies_updated"] == 1
    study.refresh_from_db()
    assert study.modality == "CR"
    assert _sections(study) == {"EXAMINATION", "INDICATION", "FINDINGS", "IMPRESSION", "LAB"}
