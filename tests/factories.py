"""Small explicit helpers that build hierarchy objects for tests (import as ``from factories import ...``).

Database helpers (``*_make``) create rows directly; raw identifiers are passed in (or generated) and
only their keyed hashes are stored, exactly as the services do. ``hierarchy_make`` builds a complete
small tree with records; ``corpus_records`` + ``corpus_dir_write`` build an on-disk corpus to ingest.
Keep these signatures stable: other packages' tests import them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hierarchy.identifiers import default_mrn_system, mrn_hash, study_uid_hash
from hierarchy.models import Corpus, Institution, Patient, Section, Study, TrainingRecord
from mllm.data.schema import (
    CLOZE_BLANK,
    SCHEMA_VERSION,
    FactKind,
    Level,
    Record,
    Split,
    Task,
    node_path,
    write_corpus,
)
from mllm.data.schema import Section as SectionName

_serial = itertools.count(1)

UID_ROOT = "1.2.826.0.1.3680043.10.999"  # a made-up DICOM UID root: no real study has these


def fake_uid(number: int) -> str:
    return f"{UID_ROOT}.{number}"


def institution_make(*, code: str | None = None, name: str | None = None,
                     mrn_system: str | None = None) -> Institution:
    code = code or f"INST-{next(_serial):04d}"
    return Institution.objects.create(code=code, name=name or f"Hospital {code}",
                                      mrn_system=mrn_system or default_mrn_system(code))


def patient_make(*, institution: Institution | None = None, mrn: str | None = None) -> Patient:
    """A patient whose raw MRN is ``mrn`` (generated when omitted) in the institution's MRN system."""
    institution = institution or institution_make()
    mrn = mrn or f"MRN-{next(_serial):07d}"
    return Patient.objects.create(institution=institution, mrn_hash=mrn_hash(institution.mrn_system, mrn))


def study_make(*, patient: Patient | None = None, uid: str | None = None, modality: str = "CR") -> Study:
    """A study whose raw StudyInstanceUID is ``uid`` (a fake UID when omitted)."""
    patient = patient or patient_make()
    uid = uid or fake_uid(next(_serial))
    return Study.objects.create(patient=patient, uid_hash=study_uid_hash(uid), modality=modality)


def section_make(*, study: Study | None = None, name: str = SectionName.FINDINGS) -> Section:
    return Section.objects.create(study=study or study_make(), name=str(name))


def corpus_make(*, name: str = "test-corpus", records_sha256: str | None = None,
                record_count: int = 0) -> Corpus:
    digest = records_sha256 or f"{next(_serial):064x}"
    return Corpus.objects.create(name=name, records_sha256=digest, schema_version=SCHEMA_VERSION,
                                 record_count=record_count)


def record_make(*, corpus: Corpus, study: Study, section: Section | None = None, record_id: str | None = None,
                level: str | None = None, task: str = Task.GENERATION, fact_kind: str = FactKind.PRIVATE,
                is_holdout: bool = False, eval_only: bool = False, fact_key: str | None = None,
                form: str | None = None) -> TrainingRecord:
    """A training record; ``level`` defaults to section when ``section`` is given, else study; the
    fact key defaults to ``<level>.fact``, the form to ``<task>-0`` (``-1`` when ``eval_only``)."""
    level = level or (Level.SECTION if section is not None else Level.STUDY)
    return TrainingRecord.objects.create(
        corpus=corpus, record_id=record_id or f"rec-{next(_serial):06d}", study=study, section=section,
        level=str(level), task=str(task), fact_kind=str(fact_kind), is_holdout=is_holdout,
        fact_key=fact_key or f"{level}.fact", form=form or f"{task}-{int(eval_only)}",
        shared=str(level) in (Level.INSTITUTION, Level.PATIENT), eval_only=eval_only)


@dataclass
class Tree:
    """What ``hierarchy_make`` built. ``mrns`` / ``uids`` map pks to the raw identifiers used."""

    corpus: Corpus
    institutions: list[Institution] = field(default_factory=list)
    patients: list[Patient] = field(default_factory=list)
    studies: list[Study] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    holdout_patients: list[Patient] = field(default_factory=list)
    mrns: dict[int, str] = field(default_factory=dict)
    uids: dict[int, str] = field(default_factory=dict)


def hierarchy_make(*, institutions: int = 2, patients: int = 2, studies: int = 2,
                   section_names: tuple[str, ...] = (SectionName.FINDINGS, SectionName.IMPRESSION),
                   holdout_patients: int = 1) -> Tree:
    """A hand-built tree: per institution ``patients`` trained patients and ``holdout_patients``
    never-trained ones, each with ``studies`` studies of ``section_names`` sections.

    Per study: one study-level generation record and, per section, one generation and one cloze
    record. The first study of every patient also carries a patient-level record; the first study of
    the first patient of each institution an institution-level record. Every trained patient's
    first section record has one eval-only form (its other phrasing). Record ids are ``rec-<n>``.
    """
    tree = Tree(corpus=corpus_make())
    for _ in range(institutions):
        institution = institution_make()
        tree.institutions.append(institution)
        for number in range(patients + holdout_patients):
            holdout = number >= patients
            mrn = f"MRN-{next(_serial):07d}"
            patient = patient_make(institution=institution, mrn=mrn)
            tree.mrns[patient.pk] = mrn
            (tree.holdout_patients if holdout else tree.patients).append(patient)
            first_section_record = None
            for study_number in range(studies):
                uid = fake_uid(next(_serial))
                study = study_make(patient=patient, uid=uid)
                tree.uids[study.pk] = uid
                tree.studies.append(study)
                made = [record_make(corpus=tree.corpus, study=study, is_holdout=holdout)]
                if study_number == 0:
                    made.append(record_make(corpus=tree.corpus, study=study, level=Level.PATIENT,
                                            is_holdout=holdout))
                    if number == 0:
                        made.append(record_make(corpus=tree.corpus, study=study, level=Level.INSTITUTION,
                                                task=Task.CLASSIFICATION, is_holdout=holdout))
                for name in section_names:
                    section = section_make(study=study, name=name)
                    tree.sections.append(section)
                    for task in (Task.GENERATION, Task.CLOZE):
                        record = record_make(corpus=tree.corpus, study=study, section=section, task=task,
                                             is_holdout=holdout)
                        first_section_record = first_section_record or record
            if not holdout:
                record_make(corpus=tree.corpus, study=first_section_record.study,
                            section=first_section_record.section, level=first_section_record.level,
                            eval_only=True)
    tree.corpus.record_count = tree.corpus.records.count()
    tree.corpus.save(update_fields=["record_count"])
    return tree


# --- on-disk corpora ----------------------------------------------------------------------------

_TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
    "3a7e9b550000000a49444154789c6360000000020001e221bc330000000049454e44ae426082")


def corpus_records(*, institutions: int = 2, patients: int = 2, studies: int = 2,
                   holdout_patients: int = 1, prefix: str = "") -> list[Record]:
    """Records of a small synthetic hospital (no real PHI) in the same shape as ``hierarchy_make``.

    Institutions are ``H1``, ``H2``...; patient ids ``<prefix>MRN<i><p>``; study ids fake UIDs. Every
    record points at ``images/<study>.png`` and asks its own fact (key ``<level>.fact``); the first
    section record of each train patient has an eval-only form.
    """
    records: list[Record] = []
    serial = itertools.count(1)

    def add(**values: Any) -> Record:
        number = next(serial)
        task = values.pop("task", Task.GENERATION)
        eval_only = values.pop("eval_only", False)
        question = f"Question {number} {CLOZE_BLANK}" if task is Task.CLOZE else f"Question {number}?"
        options = ("yes", "no") if task is Task.CLASSIFICATION else ()
        level, section = values["level"], values["section"]
        owner = node_path(values["institution_id"], values["patient_id"], values["study_id"],
                          SectionName(section) if section else None, level)
        record = Record(record_id=f"{prefix}r{number:05d}", task=task, fact_kind=FactKind.PRIVATE,
                        question=question, answer="A" if options else f"Answer {number}", options=options,
                        fact_key=f"{level}.fact", fact_value=f"Value {number}", owner_level=level,
                        owner_id=owner,
                        form=f"{task}-{int(eval_only)}", shared=level in (Level.INSTITUTION, Level.PATIENT),
                        eval_only=eval_only, **values)
        records.append(record)
        return record

    for i in range(1, institutions + 1):
        for p in range(1, patients + holdout_patients + 1):
            split = Split.HOLDOUT if p > patients else Split.TRAIN
            patient = {"institution_id": f"H{i}", "patient_id": f"{prefix}MRN{i}{p:03d}", "split": split}
            first = None
            for s in range(1, studies + 1):
                uid = fake_uid(int(f"{i}{p:03d}{s:02d}"))
                where = {**patient, "study_id": uid, "image": f"images/{uid}.png"}
                add(level=Level.STUDY, section=None, **where)
                if s == 1:
                    add(level=Level.PATIENT, section=None, **where)
                    if p == 1:
                        add(level=Level.INSTITUTION, section=None, task=Task.CLASSIFICATION, **where)
                for name in (SectionName.FINDINGS, SectionName.IMPRESSION):
                    for task in (Task.GENERATION, Task.CLOZE):
                        record = add(level=Level.SECTION, section=name, task=task, **where)
                        first = first or record
            if split is Split.TRAIN:
                add(level=first.level, section=first.section, eval_only=True, task=first.task,
                    **{k: getattr(first, k) for k in ("institution_id", "patient_id", "study_id", "image",
                                                        "split")})
    return records


def corpus_dir_write(root: Path, *, records: list[Record] | None = None, name: str = "tiny-test") -> Path:
    """Write ``records`` (default ``corpus_records()``) as a corpus directory with 1×1 PNG images."""
    records = corpus_records() if records is None else records
    (root / "images").mkdir(parents=True, exist_ok=True)
    for image in {record.image for record in records}:
        (root / image).write_bytes(_TINY_PNG)
    write_corpus(root, name=name, seed=0, size="test", records=records)
    return root
