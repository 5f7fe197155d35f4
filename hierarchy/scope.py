"""Scope of a forget request on one hierarchy node of an ingested corpus, as record-id sets.

The groups and their definitions are those of :mod:`mllm.data.scope` (forget, children, shared,
siblings, retain, validation, holdout, forget_forms, holdout_forms): this module reads the corpus's
training records from the database as placement rows — database ids in place of the hashed
identifiers — and runs the same :func:`~mllm.data.scope.resolve_records`, salted with the node's
keyed hash so deterministic choices do not depend on database ids.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mllm.data.schema import FactKind, Level, Section, Split, Task
from mllm.data.scope import GROUPS, NodeRef, resolve_records

from .models import Corpus, TrainingRecord
from .nodes import Node, node_label, node_level, node_subject_hash

_COLUMNS = ("record_id", "study__patient__institution_id", "study__patient_id", "study_id", "section__name",
            "level", "task", "fact_kind", "fact_key", "form", "is_holdout", "eval_only")


@dataclass(frozen=True)
class _Row:
    """A training record's placement with database ids as node ids (a :class:`~mllm.data.scope.Placed`)."""

    record_id: str
    institution_id: str
    patient_id: str
    study_id: str
    section: Section | None
    level: Level
    task: Task
    fact_kind: FactKind
    fact_key: str
    form: str
    split: Split
    eval_only: bool

    @property
    def owner_level(self) -> Level:
        return self.level  # corpus schema version 2: a record's fact is owned by its node at ``level``


def _row(values: tuple) -> _Row:
    record_id, institution, patient, study, section, level, task, kind, key, form, holdout, eval_only = values
    split = Split.HOLDOUT if holdout else Split.TRAIN
    return _Row(record_id, str(institution), str(patient), str(study), Section(section) if section else None,
                Level(level), Task(task), FactKind(kind), key, form, split, eval_only)


def _node_ref(node: Node) -> NodeRef:
    level = node_level(node)
    if level is Level.SECTION:
        study = node.study
        return NodeRef(str(study.patient.institution_id), str(study.patient_id), str(study.pk),
                       Section(node.name))
    if level is Level.STUDY:
        return NodeRef(str(node.patient.institution_id), str(node.patient_id), str(node.pk))
    if level is Level.PATIENT:
        return NodeRef(str(node.institution_id), str(node.pk))
    return NodeRef(str(node.pk))


@dataclass(frozen=True)
class Scope:
    """The record-id sets of one node in one corpus (record ids are not PHI)."""

    corpus_id: int
    level: Level
    node_id: int
    subject_hash: str
    label: str
    forget: frozenset[str]
    children: frozenset[str]
    shared: frozenset[str]
    siblings: frozenset[str]
    retain: frozenset[str]
    validation: frozenset[str]
    holdout: frozenset[str]
    forget_forms: frozenset[str]
    holdout_forms: frozenset[str]
    counts_by_level: dict[str, dict[str, int]] = field(default_factory=dict)
    siblings_by_ancestor: dict[str, int] = field(default_factory=dict)
    holdout_match: dict[str, dict[str, int]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts and keyed hashes only: safe for audit events and API responses."""
        return {"corpus_id": self.corpus_id, "level": self.level.value, "node_id": self.node_id,
                "subject_hash": self.subject_hash, "label": self.label,
                "counts": {name: len(getattr(self, name)) for name in GROUPS},
                "counts_by_level": self.counts_by_level, "siblings_by_ancestor": self.siblings_by_ancestor,
                "holdout_match": self.holdout_match}


def scope_resolve(*, node: Node, corpus: Corpus) -> Scope:
    """Resolve the groups of ``node`` in ``corpus`` (all empty when the node owns no trainable
    record of it, e.g. a patient of an older corpus)."""
    level = node_level(node)
    rows = [_row(values) for values in TrainingRecord.objects.filter(corpus=corpus).order_by("record_id")
            .values_list(*_COLUMNS).iterator(chunk_size=5000)]
    subject_hash = node_subject_hash(node)
    groups = resolve_records(rows, _node_ref(node), salt=subject_hash, allow_empty=True)
    sets = {name: frozenset(r.record_id for r in records) for name, records in groups.groups().items()}
    by_level = {name: dict(sorted(Counter(r.level.value for r in records).items()))
                for name, records in groups.groups().items()}
    return Scope(corpus_id=corpus.pk, level=level, node_id=node.pk, subject_hash=subject_hash,
                 label=node_label(node), counts_by_level=by_level,
                 siblings_by_ancestor={lv.value: len(rs) for lv, rs in groups.siblings.items()},
                 holdout_match=groups.holdout_match, **sets)
