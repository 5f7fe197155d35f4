"""Reads of the hierarchy. Lookups take raw identifiers, hash them and compare hashes."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, IntegerField, Q, QuerySet, Value

from mllm.data.schema import Level

from .identifiers import mrn_hash, study_uid_hash
from .models import Corpus, Institution, Patient, Section, Study
from .nodes import Node, node_label, node_level, node_subject_hash


def institution_by_code(*, code: str) -> Institution | None:
    return Institution.objects.filter(code=code.strip()).first()


def patient_by_mrn(*, system: str, value: str) -> Patient | None:
    """The patient whose medical record number is ``value`` in identifier system ``system``."""
    return Patient.objects.select_related("institution").filter(mrn_hash=mrn_hash(system, value)).first()


def study_by_uid(*, uid: str) -> Study | None:
    """The study with this StudyInstanceUID, given bare or as ``urn:oid:...``."""
    return Study.objects.select_related("patient__institution").filter(uid_hash=study_uid_hash(uid)).first()


def section_get(*, study: Study, name: str) -> Section | None:
    """A section of ``study`` by name (``FINDINGS``, ``impression``, ...)."""
    return Section.objects.select_related("study").filter(study=study, name=name.strip().upper()).first()


def corpus_by_digest(*, records_sha256: str) -> Corpus | None:
    return Corpus.objects.filter(records_sha256=records_sha256).first()


@dataclass(frozen=True)
class TreeNode:
    """One child in the scope tree: ``children`` nodes below it, ``records`` trainable records under it."""

    level: Level
    id: int
    label: str
    subject_hash: str
    children: int
    records: int


# For each parent level: the child queryset filter, the child model, its own children and its records.
_CHILDREN: dict[Level | None, tuple[type, str, str | None, str]] = {
    None: (Institution, "", "patients", "patients__studies__records"),
    Level.INSTITUTION: (Patient, "institution", "studies", "studies__records"),
    Level.PATIENT: (Study, "patient", "sections", "records"),
    Level.STUDY: (Section, "study", None, "records"),
}


def node_children(*, node: Node | None = None, corpus: Corpus | None = None) -> list[TreeNode]:
    """The children of ``node`` (institutions when ``None``) with their child and record counts.

    ``records`` counts trainable records (not holdout, not eval-only forms), in ``corpus`` when given.
    """
    level = None if node is None else node_level(node)
    if level is Level.SECTION:
        return []
    model, parent_field, child_path, records_path = _CHILDREN[level]
    trainable = Q(**{f"{records_path}__is_holdout": False, f"{records_path}__eval_only": False})
    if corpus is not None:
        trainable &= Q(**{f"{records_path}__corpus": corpus})
    queryset: QuerySet = model.objects.all()
    if parent_field:
        queryset = queryset.filter(**{parent_field: node})
    if model is Section:
        queryset = queryset.select_related("study")
    queryset = queryset.annotate(
        record_count=Count(records_path, filter=trainable, distinct=True),
        child_count=(Count(child_path, distinct=True) if child_path
                     else Value(0, output_field=IntegerField())))
    return [TreeNode(level=node_level(child), id=child.pk, label=node_label(child),
                     subject_hash=node_subject_hash(child), children=child.child_count,
                     records=child.record_count) for child in queryset]
