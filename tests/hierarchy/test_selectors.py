"""Lookups by raw identifier (hashed on the way in) and the scope tree."""

import pytest
from factories import corpus_make, hierarchy_make, institution_make, patient_make, section_make, study_make

from hierarchy.selectors import (
    corpus_by_digest,
    institution_by_code,
    node_children,
    patient_by_mrn,
    section_get,
    study_by_uid,
)
from mllm.data.schema import Level

pytestmark = pytest.mark.django_db

SYSTEM = "http://hospital-a.example.org/fhir/mrn"
UID = "1.2.826.0.1.3680043.10.999.4242"


def test_patient_by_mrn_needs_system_and_value() -> None:
    institution = institution_make(code="HA", mrn_system=SYSTEM)
    patient = patient_make(institution=institution, mrn="000123")
    assert patient_by_mrn(system=SYSTEM, value="000123") == patient
    assert patient_by_mrn(system=f" {SYSTEM} ", value=" 000123 ") == patient
    assert patient_by_mrn(system="urn:other", value="000123") is None
    assert patient_by_mrn(system=SYSTEM, value="000124") is None


@pytest.mark.parametrize("given", [UID, f"urn:oid:{UID}", f"  URN:OID:{UID} "])
def test_study_by_uid_with_or_without_urn_oid(given: str) -> None:
    study = study_make(uid=UID)
    assert study_by_uid(uid=given) == study


def test_study_by_uid_unknown() -> None:
    study_make(uid=UID)
    assert study_by_uid(uid=UID + "1") is None


def test_institution_section_and_corpus_lookups() -> None:
    institution = institution_make(code="HA")
    section = section_make(name="IMPRESSION")
    corpus = corpus_make(records_sha256="ab" * 32)
    assert institution_by_code(code="HA") == institution
    assert institution_by_code(code="HB") is None
    assert section_get(study=section.study, name="impression") == section
    assert section_get(study=section.study, name="FINDINGS") is None
    assert corpus_by_digest(records_sha256="ab" * 32) == corpus


def test_scope_tree_children_and_counts() -> None:
    tree = hierarchy_make()
    roots = node_children(corpus=tree.corpus)
    assert [node.label for node in roots] == [f"institution {i.code}" for i in tree.institutions]
    assert [(node.children, node.records) for node in roots] == [(3, 23), (3, 23)]
    patients = node_children(node=tree.institutions[0], corpus=tree.corpus)
    assert [(node.level, node.children, node.records) for node in patients] == [
        (Level.PATIENT, 2, 12), (Level.PATIENT, 2, 11), (Level.PATIENT, 2, 0)]
    assert patients[0].subject_hash == tree.patients[0].mrn_hash
    assert tree.mrns[tree.patients[0].pk] not in patients[0].label
    studies = node_children(node=tree.patients[0])
    assert [(node.children, node.records) for node in studies] == [(2, 7), (2, 5)]
    sections = node_children(node=tree.studies[0])
    assert [(node.label.split(" / ")[1], node.children, node.records) for node in sections] == [
        ("FINDINGS", 0, 2), ("IMPRESSION", 0, 2)]
    assert node_children(node=tree.sections[0]) == []
    assert node_children(node=tree.institutions[0], corpus=corpus_make())[0].records == 0
