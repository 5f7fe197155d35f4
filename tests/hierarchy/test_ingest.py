"""Corpus ingest: counts, idempotency, atomicity, configuration, and no raw identifiers stored."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from factories import corpus_dir_write, corpus_records, fake_uid, study_make

from core.models import AuditEvent
from core.principals import SYSTEM
from hierarchy.identifiers import default_mrn_system
from hierarchy.models import Corpus, Institution, Patient, Section, Study, TrainingRecord
from hierarchy.selectors import patient_by_mrn, study_by_uid
from hierarchy.services import corpus_ingest
from mllm.data.entities import load_hierarchy
from mllm.data.schema import CorpusError, Level, Split
from mllm.data.synth import generate_corpus

pytestmark = pytest.mark.django_db

NODE_MODELS = (Institution, Patient, Study, Section)


def _node_counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in NODE_MODELS)


def _nothing_written() -> bool:
    return _node_counts() == (0, 0, 0, 0) and not Corpus.objects.exists() and not AuditEvent.objects.exists()


def test_ingest_counts_and_audit(tmp_path: Path) -> None:
    result = corpus_ingest(corpus_dir=corpus_dir_write(tmp_path), actor=SYSTEM)
    assert result.created
    assert result.counts == {"records": 72, "trainable": 46, "holdout": 22, "eval_only": 4,
                             "institutions_created": 2, "patients_created": 6, "studies_created": 12,
                             "studies_updated": 0, "sections_created": 24}
    assert _node_counts() == (2, 6, 12, 24)
    assert TrainingRecord.objects.filter(corpus=result.corpus).count() == 72
    assert TrainingRecord.objects.filter(is_holdout=True).count() == 22
    held_out = TrainingRecord.objects.filter(eval_only=True)
    assert held_out.count() == 4 and {r.form for r in held_out} == {"generation-1"}
    shared = TrainingRecord.objects.filter(shared=True)
    assert {r.level for r in shared} == {"institution", "patient"} and shared.count() == 2 + 6
    assert {r.fact_key for r in TrainingRecord.objects.all()} == {f"{level}.fact" for level in Level}
    event = AuditEvent.objects.get()
    assert (event.actor, event.action) == ("system", "corpus.ingested")
    assert event.object_id == str(result.corpus.pk)
    assert event.data["records"] == 72 and event.data["records_sha256"] == result.corpus.records_sha256


def test_ingest_is_idempotent(tmp_path: Path) -> None:
    corpus_dir = corpus_dir_write(tmp_path)
    first = corpus_ingest(corpus_dir=corpus_dir, actor=SYSTEM)
    again = corpus_ingest(corpus_dir=corpus_dir, actor=SYSTEM)
    assert not again.created and again.corpus == first.corpus
    assert again.counts["records"] == 72 and again.counts["patients_created"] == 0
    assert _node_counts() == (2, 6, 12, 24) and TrainingRecord.objects.count() == 72
    assert AuditEvent.objects.count() == 1


def test_second_corpus_reuses_the_nodes(tmp_path: Path) -> None:
    corpus_ingest(corpus_dir=corpus_dir_write(tmp_path / "a"), actor=SYSTEM)
    records = [replace(r, question=r.question + " (v2)") for r in corpus_records()[:40]]
    result = corpus_ingest(corpus_dir=corpus_dir_write(tmp_path / "b", records=records), actor=SYSTEM)
    assert result.created and result.counts["patients_created"] == result.counts["sections_created"] == 0
    assert _node_counts() == (2, 6, 12, 24)
    assert Corpus.objects.count() == 2 and TrainingRecord.objects.count() == 72 + 40


def test_lookups_by_raw_identifiers_after_ingest(tmp_path: Path) -> None:
    corpus_ingest(corpus_dir=corpus_dir_write(tmp_path), actor=SYSTEM,
                  institution_names={"H1": "Hospital One"},
                  mrn_systems={"H2": "http://h2.example.org/mrn"})
    h1, h2 = Institution.objects.order_by("code")
    assert (h1.name, h1.mrn_system) == ("Hospital One", default_mrn_system("H1"))
    assert (h2.name, h2.mrn_system) == ("H2", "http://h2.example.org/mrn")
    patient = patient_by_mrn(system=default_mrn_system("H1"), value="MRN1001")
    assert patient is not None and patient.institution == h1
    assert patient_by_mrn(system="http://h2.example.org/mrn", value="MRN2001").institution == h2
    study = study_by_uid(uid=f"urn:oid:{fake_uid(100101)}")
    assert study is not None and study.patient == patient


def test_no_raw_identifiers_in_the_database(tmp_path: Path, db_mentions) -> None:
    records = corpus_records()
    corpus_ingest(corpus_dir=corpus_dir_write(tmp_path, records=records), actor=SYSTEM)
    assert db_mentions(Patient.objects.first().mrn_hash)  # the scan does see the hierarchy tables
    for record in records:
        assert not db_mentions(record.patient_id)
        assert not db_mentions(record.study_id)


def test_broken_manifest_names_file_line_and_field(tmp_path: Path) -> None:
    corpus_dir = corpus_dir_write(tmp_path)
    path = corpus_dir / "records.jsonl"
    lines = path.read_text().splitlines()
    bad = json.loads(lines[4])
    bad["level"] = "ward"
    lines[4] = json.dumps(bad)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorpusError) as caught:
        corpus_ingest(corpus_dir=corpus_dir, actor=SYSTEM)
    assert (caught.value.line, caught.value.field_name) == (5, "level")
    assert caught.value.path.endswith("records.jsonl")
    assert _nothing_written()


def test_study_filed_under_another_patient_is_refused(tmp_path: Path) -> None:
    records = corpus_records()
    existing = study_make(uid=records[0].study_id)
    before = _node_counts()
    with pytest.raises(CorpusError) as caught:
        corpus_ingest(corpus_dir=corpus_dir_write(tmp_path, records=records), actor=SYSTEM)
    assert (caught.value.line, caught.value.field_name) == (1, "study_id")
    assert records[0].study_id not in str(caught.value)
    assert _node_counts() == before and Study.objects.get() == existing


def test_same_study_under_two_patients_in_one_corpus(tmp_path: Path) -> None:
    records = corpus_records()
    other = next(i for i, r in enumerate(records)  # a patient-level record: its owner names no study
                 if r.patient_id != records[0].patient_id and r.level is Level.PATIENT)
    records[other] = replace(records[other], study_id=records[0].study_id)
    with pytest.raises(CorpusError, match="another patient") as caught:
        corpus_ingest(corpus_dir=corpus_dir_write(tmp_path, records=records), actor=SYSTEM)
    assert (caught.value.line, caught.value.field_name) == (other + 1, "study_id")
    assert _nothing_written()


def test_unknown_institution_in_configuration(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="institution H9 does not occur"):
        corpus_ingest(corpus_dir=corpus_dir_write(tmp_path), actor=SYSTEM, institution_names={"H9": "x"})


def test_synthetic_corpus_details_from_hierarchy_json(tmp_path: Path, db_mentions) -> None:
    corpus = generate_corpus(size="tiny", seed=3, out=tmp_path / "tiny")
    hierarchy = load_hierarchy(corpus.root)
    result = corpus_ingest(corpus_dir=corpus.root, actor=SYSTEM)
    assert result.counts["records"] == len(corpus.records)
    assert result.counts["holdout"] == sum(r.split is Split.HOLDOUT for r in corpus.records)
    assert result.counts["trainable"] == len(corpus.select(trainable=True))
    for info in hierarchy.institutions:
        institution = Institution.objects.get(code=info.institution_id)
        assert (institution.name, institution.mrn_system) == (info.name, info.mrn_system)
    record = corpus.records[0]
    patient = patient_by_mrn(system=hierarchy.institutions[0].mrn_system, value=record.patient_id)
    assert patient is not None and patient.institution.code == record.institution_id
    info = next(s for s in hierarchy.studies if s.study_id == record.study_id)
    assert study_by_uid(uid=record.study_id).modality == info.modality
    for raw in [p.patient_id for p in hierarchy.patients] + [p.name for p in hierarchy.patients]:
        assert not db_mentions(raw)


def test_ingest_of_about_9000_records_is_batched(tmp_path: Path) -> None:
    """Bulk writes: the number of queries does not grow with the records (timings: benchmarks)."""
    corpus = generate_corpus(size="medforget", seed=1, out=tmp_path / "medforget")
    assert 8500 <= len(corpus.records) <= 9500
    with CaptureQueriesContext(connection) as queries:
        result = corpus_ingest(corpus_dir=corpus.root, actor=SYSTEM)
    assert result.counts["records"] == len(corpus.records)
    assert len(queries.captured_queries) < 100, len(queries.captured_queries)  # 41 when written
