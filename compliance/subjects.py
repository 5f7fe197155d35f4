"""Find the hierarchy node a forget request is about, from the identifiers a hospital holds.

Identifiers (MRN, StudyInstanceUID) are hashed by the hierarchy selectors and never kept or echoed.
A node the caller may not see is reported exactly like one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.principals import Principal
from hierarchy import selectors as hierarchy
from hierarchy.models import Institution, Patient, Section, Study
from hierarchy.nodes import Node, node_label, node_level, node_parent, node_subject_hash
from mllm.data.schema import Level

from .errors import NotFound


@dataclass(frozen=True)
class SubjectIdentifiers:
    """Exactly one of ``institution`` (code), ``mrn_system`` + ``mrn_value``, or ``study_uid``
    (with ``section`` for a report section). The API serializer enforces the combination."""

    institution: str | None = None
    mrn_system: str | None = None
    mrn_value: str | None = None
    study_uid: str | None = None
    section: str | None = None


@dataclass(frozen=True)
class SubjectPath:
    """A node and its ancestors, as stored on a forget request."""

    level: Level
    institution: Institution
    patient: Patient | None = None
    study: Study | None = None
    section: Section | None = None

    @property
    def node(self) -> Node:
        """The subject itself: the deepest node of the path."""
        return self.section or self.study or self.patient or self.institution

    @property
    def subject_hash(self) -> str:
        return node_subject_hash(self.node)

    @property
    def label(self) -> str:
        return node_label(self.node)


def _find(identifiers: SubjectIdentifiers) -> Node | None:
    if identifiers.institution is not None:
        return hierarchy.institution_by_code(code=identifiers.institution)
    if identifiers.mrn_system is not None and identifiers.mrn_value is not None:
        return hierarchy.patient_by_mrn(system=identifiers.mrn_system, value=identifiers.mrn_value)
    if identifiers.study_uid is not None:
        study = hierarchy.study_by_uid(uid=identifiers.study_uid)
        if study is None or identifiers.section is None:
            return study
        return hierarchy.section_get(study=study, name=identifiers.section)
    return None


def subject_path(node: Node) -> SubjectPath:
    """``node`` with its ancestors up to the institution."""
    chain: dict[Level, Node] = {}
    current: Node | None = node
    while current is not None:
        chain[node_level(current)] = current
        current = node_parent(current)
    return SubjectPath(level=node_level(node), institution=chain[Level.INSTITUTION],
                       patient=chain.get(Level.PATIENT), study=chain.get(Level.STUDY),
                       section=chain.get(Level.SECTION))


def subject_find(*, principal: Principal, identifiers: SubjectIdentifiers) -> SubjectPath:
    """The node the identifiers name, if ``principal`` may see its institution; else :class:`NotFound`."""
    node = _find(identifiers)
    path = subject_path(node) if node is not None else None
    if path is None or not principal.sees(path.institution.pk):
        raise NotFound("no subject matches these identifiers", field="subject", code="subject_not_found")
    return path
