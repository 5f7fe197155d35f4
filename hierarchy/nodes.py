"""A node of the hierarchy (institution, patient, study or section): its level, parent and PHI-free names."""

from __future__ import annotations

from mllm.data.schema import Level

from .identifiers import IdentifierKind, keyed_hash, short
from .models import Institution, Patient, Section, Study

Node = Institution | Patient | Study | Section

_LEVELS: dict[type, Level] = {Institution: Level.INSTITUTION, Patient: Level.PATIENT, Study: Level.STUDY,
                              Section: Level.SECTION}


def node_level(node: Node) -> Level:
    """The hierarchy level of ``node``; ``TypeError`` for anything that is not a node."""
    try:
        return _LEVELS[type(node)]
    except KeyError:
        raise TypeError(f"not a hierarchy node: {type(node).__name__}") from None


def node_parent(node: Node) -> Node | None:
    """The node one level up (``None`` for an institution)."""
    level = node_level(node)
    if level is Level.SECTION:
        return node.study
    if level is Level.STUDY:
        return node.patient
    if level is Level.PATIENT:
        return node.institution
    return None


def node_subject_hash(node: Node) -> str:
    """The keyed hash that names ``node`` in audit events, scopes and certificates."""
    level = node_level(node)
    if level is Level.INSTITUTION:
        return keyed_hash(IdentifierKind.INSTITUTION, node.code)
    if level is Level.PATIENT:
        return node.mrn_hash
    if level is Level.STUDY:
        return node.uid_hash
    return keyed_hash(IdentifierKind.SECTION, f"{node.study.uid_hash}|{node.name}")


def node_label(node: Node) -> str:
    """What people see: the institution code, or the level and a short keyed hash (no PHI)."""
    level = node_level(node)
    if level is Level.INSTITUTION:
        return label_of(level, node.code)
    if level is Level.SECTION:
        return label_of(level, node.study.uid_hash, section=node.name)
    return label_of(level, node_subject_hash(node))


def label_of(level: Level, key: str, *, section: str = "") -> str:
    """:func:`node_label` from stored values, without the node: ``key`` is the institution code, the
    study's hash for a section (named by ``section``), else the node's subject hash."""
    if level is Level.INSTITUTION:
        return f"institution {key}"
    if level is Level.SECTION:
        return f"study {short(key)} / {section}"
    return f"{level.value} {short(key)}"
