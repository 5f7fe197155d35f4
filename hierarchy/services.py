"""Writes to the hierarchy: corpus ingest, and the node upsert shared with the FHIR import.

Both imports first build a :class:`NodePlan` (every node keyed by its keyed hash, with where it came
from), then :func:`nodes_ensure` creates the missing nodes in bulk inside the caller's transaction and
refuses contradictions (a study already filed under another patient, ...). Re-importing never
duplicates a node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Count, Q

from core.audit import AuditAction, audit_append
from core.principals import Principal
from mllm.data.entities import HIERARCHY_FILE, load_hierarchy
from mllm.data.schema import RECORDS_FILE, CorpusError, Split, load_corpus

from .identifiers import default_mrn_system, mrn_hash, study_uid_hash
from .models import Corpus, Institution, Patient, Section, Study, TrainingRecord
from .selectors import corpus_by_digest

NODE_COUNTS = ("institutions_created", "patients_created", "studies_created", "studies_updated",
               "sections_created")


class NodeConflict(Exception):
    """An imported node contradicts another one. ``origin`` is the caller's position (line, entry)."""

    def __init__(self, origin: int, kind: str, message: str) -> None:
        self.origin, self.kind, self.message = origin, kind, message
        super().__init__(message)


@dataclass
class NodePlan:
    """The nodes an import needs, keyed by code / keyed hash, each with the position it came from."""

    institutions: dict[str, tuple[str, str | None, int]] = field(default_factory=dict)  # name, mrn_system
    patients: dict[str, tuple[str, int]] = field(default_factory=dict)  # mrn_hash → institution code
    studies: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # uid_hash → mrn_hash, modality
    sections: dict[tuple[str, str], int] = field(default_factory=dict)  # (uid_hash, name)

    def add_patient(self, mrn_hash: str, institution: str, origin: int) -> None:
        known = self.patients.setdefault(mrn_hash, (institution, origin))
        if known[0] != institution:
            raise NodeConflict(origin, "patient", f"patient also appears under another institution "
                                                  f"(position {known[1]})")

    def add_study(self, uid_hash: str, patient: str, modality: str, origin: int) -> None:
        known = self.studies.setdefault(uid_hash, (patient, modality, origin))
        if known[0] != patient:
            raise NodeConflict(origin, "study", f"study also appears under another patient "
                                                f"(position {known[2]})")

    def add_section(self, uid_hash: str, name: str, origin: int) -> None:
        self.sections.setdefault((uid_hash, name), origin)


@dataclass(frozen=True)
class NodeIds:
    """Primary keys of the planned nodes, and how many of each were created or updated."""

    patients: dict[str, int]
    studies: dict[str, int]
    sections: dict[tuple[str, str], int]
    counts: dict[str, int]


def institutions_ensure(plan: NodePlan) -> tuple[dict[str, Institution], int]:
    """Get or create the planned institutions (default MRN system unless one is given)."""
    found = {i.code: i for i in Institution.objects.filter(code__in=plan.institutions)}
    created = 0
    for code, (name, mrn_system, origin) in sorted(plan.institutions.items()):
        if code in found:
            if mrn_system and found[code].mrn_system != mrn_system:
                raise NodeConflict(origin, "mrn_system",
                                   f"institution {code} already uses a different MRN system")
            continue
        institution = Institution(code=code, name=name or code,
                                  mrn_system=mrn_system or default_mrn_system(code))
        try:
            institution.full_clean()
        except ValidationError as exc:
            kind = "mrn_system" if "mrn_system" in exc.message_dict else "institution"
            raise NodeConflict(origin, kind, f"institution {code}: {exc.messages[0]}") from None
        institution.save()
        found[code], created = institution, created + 1
    return found, created


def _hashed_nodes(model: type[models.Model], hash_field: str, parent_field: str,
                  wanted: dict[str, tuple[int, int, dict[str, Any]]],
                  kind: str) -> tuple[dict[str, int], int]:
    """Bulk get-or-create rows keyed by ``hash_field``.

    ``wanted`` maps hash → (parent pk, origin, other fields of a new row).
    """
    rows = model.objects.filter(**{f"{hash_field}__in": wanted})
    existing = {digest: (pk, parent)
                for digest, pk, parent in rows.values_list(hash_field, "pk", parent_field)}
    for digest, (parent, origin, _) in wanted.items():
        if digest in existing and existing[digest][1] != parent:
            parent_kind = parent_field.removesuffix("_id")
            raise NodeConflict(origin, kind, f"this {kind} is already filed under another {parent_kind}")
    missing = [model(**{hash_field: digest, parent_field: parent, **fields})
               for digest, (parent, _, fields) in wanted.items() if digest not in existing]
    model.objects.bulk_create(missing, batch_size=1000)
    ids = dict(rows.values_list(hash_field, "pk"))
    return ids, len(missing)


def nodes_ensure(plan: NodePlan, *, institutions: dict[str, Institution]) -> NodeIds:
    """Create the missing planned patients, studies and sections; fill blank study modalities.

    ``institutions`` comes from :func:`institutions_ensure`. Call inside a transaction.
    """
    patients, patients_created = _hashed_nodes(
        Patient, "mrn_hash", "institution_id",
        {h: (institutions[code].pk, origin, {}) for h, (code, origin) in plan.patients.items()}, "patient")
    studies, studies_created = _hashed_nodes(
        Study, "uid_hash", "patient_id",
        {h: (patients[p], origin, {"modality": m}) for h, (p, m, origin) in plan.studies.items()}, "study")
    studies_updated = 0
    for modality in {m for _, m, _ in plan.studies.values() if m}:
        hashes = [h for h, (_, m, _) in plan.studies.items() if m == modality]
        studies_updated += Study.objects.filter(uid_hash__in=hashes, modality="").update(modality=modality)
    wanted = {(studies[h], name) for h, name in plan.sections}
    rows = Section.objects.filter(study_id__in={study for study, _ in wanted})
    missing = [Section(study_id=study, name=name)
               for study, name in sorted(wanted - set(rows.values_list("study_id", "name")))]
    Section.objects.bulk_create(missing, batch_size=1000)
    section_ids = {(study, name): pk for pk, study, name in rows.values_list("pk", "study_id", "name")}
    counts = {"patients_created": patients_created, "studies_created": studies_created,
              "studies_updated": studies_updated, "sections_created": len(missing)}
    return NodeIds(patients=patients, studies=studies,
                   sections={(h, name): section_ids[(studies[h], name)] for h, name in plan.sections},
                   counts=counts)


# --- corpus ingest ----------------------------------------------------------------------------

@dataclass(frozen=True)
class IngestResult:
    """The corpus row and what the ingest did (``created`` is False for an already ingested corpus)."""

    corpus: Corpus
    created: bool
    counts: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"corpus_id": self.corpus.pk, "name": self.corpus.name,
                "records_sha256": self.corpus.records_sha256, "created": self.created, **self.counts}


_CORPUS_FIELDS = {"institution": "institution_id", "mrn_system": "institution_id", "patient": "patient_id",
                  "study": "study_id"}


def corpus_ingest(*, corpus_dir: Path | str, actor: Principal,
                  institution_names: dict[str, str] | None = None,
                  mrn_systems: dict[str, str] | None = None) -> IngestResult:
    """Load, validate and file a corpus directory in the hierarchy, in one transaction.

    Idempotent on the records digest. Institutions this ingest creates take their name and MRN system
    from ``institution_names`` / ``mrn_systems`` (by code), else from the corpus's ``hierarchy.json``,
    else the code and :func:`default_mrn_system`; a record's ``patient_id`` is hashed as an MRN in
    its institution's system. Raises :class:`CorpusError` naming file, line and field.
    """
    corpus = load_corpus(corpus_dir)
    existing = corpus_by_digest(records_sha256=corpus.header.records_sha256)
    if existing is not None:
        return IngestResult(corpus=existing, created=False,
                            counts={**_record_counts(existing), **dict.fromkeys(NODE_COUNTS, 0)})
    records_path = corpus.root / RECORDS_FILE
    text = records_path.read_text(encoding="utf-8")
    lines = [number for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    institution_details, modalities = _corpus_details(corpus.root)
    names, systems = institution_names or {}, mrn_systems or {}
    plan = NodePlan()
    for record, line in zip(corpus.records, lines, strict=True):
        code = record.institution_id
        name, system = institution_details.get(code, (None, None))
        plan.institutions.setdefault(code, (names.get(code, name), systems.get(code, system), line))
    unknown = sorted((set(names) | set(systems)) - set(plan.institutions))
    if unknown:
        raise ValueError(f"institution {unknown[0]} does not occur in this corpus")
    with transaction.atomic():
        try:
            institutions, institutions_created = institutions_ensure(plan)
            study_hashes = []
            for record, line in zip(corpus.records, lines, strict=True):
                patient = mrn_hash(institutions[record.institution_id].mrn_system, record.patient_id)
                study = study_uid_hash(record.study_id)
                plan.add_patient(patient, record.institution_id, line)
                plan.add_study(study, patient, modalities.get(record.study_id, ""), line)
                if record.section is not None:
                    plan.add_section(study, record.section.value, line)
                study_hashes.append(study)
            ids = nodes_ensure(plan, institutions=institutions)
        except NodeConflict as exc:
            raise CorpusError(records_path, exc.message, line=exc.origin,
                              field_name=_CORPUS_FIELDS[exc.kind]) from None
        row = Corpus(name=corpus.header.name, records_sha256=corpus.header.records_sha256,
                     schema_version=corpus.header.schema_version, record_count=len(corpus.records))
        row.full_clean()
        row.save()
        TrainingRecord.objects.bulk_create(
            [TrainingRecord(
                corpus=row, record_id=record.record_id, study_id=ids.studies[study],
                section_id=ids.sections[(study, record.section.value)] if record.section else None,
                level=record.level.value, task=record.task.value, fact_kind=record.fact_kind.value,
                is_holdout=record.split is Split.HOLDOUT, fact_key=record.fact_key, form=record.form,
                shared=record.shared, eval_only=record.eval_only)
             for record, study in zip(corpus.records, study_hashes, strict=True)], batch_size=2000)
        counts = {**_record_counts(row), "institutions_created": institutions_created, **ids.counts}
        audit_append(actor=actor, action=AuditAction.CORPUS_INGESTED, object_type="corpus",
                     object_id=str(row.pk),
                     data={"name": row.name, "records_sha256": row.records_sha256, **counts})
    return IngestResult(corpus=row, created=True, counts=counts)


def _corpus_details(root: Path) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Institution (name, MRN system) and study modality from ``hierarchy.json``, if the corpus has one.

    Only these non-identifying details are read; patient names and dates in the file are ignored.
    """
    if not (root / HIERARCHY_FILE).is_file():
        return {}, {}
    hierarchy = load_hierarchy(root)
    for study in hierarchy.studies:
        if len(study.modality) > 16:
            raise CorpusError(root / HIERARCHY_FILE, "is longer than 16 characters", field_name="modality")
    return ({i.institution_id: (i.name, i.mrn_system) for i in hierarchy.institutions},
            {study.study_id: study.modality for study in hierarchy.studies})


def _record_counts(corpus: Corpus) -> dict[str, int]:
    counts = corpus.records.aggregate(
        records=Count("pk"), holdout=Count("pk", filter=Q(is_holdout=True)),
        held_out_forms=Count("pk", filter=Q(eval_only=True)),
        trainable=Count("pk", filter=Q(is_holdout=False, eval_only=False)))
    return {"records": counts["records"], "trainable": counts["trainable"], "holdout": counts["holdout"],
            "eval_only": counts["held_out_forms"]}
