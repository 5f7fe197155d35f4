"""The scope of one forget request as record groups (the seam to ``mllm.data.scope``).

Testbed v2 brings ``mllm.data.scope.ScopeGroups`` / ``resolve_scope`` / ``load_scope_file``. Until it
lands, this module holds a minimal version with the same names and fields, computed from today's
records (hierarchy from ``institution_id`` / ``patient_id`` / ``study_id`` / ``section``).
Unlearning code reads a scope only through :func:`kept_groups` and the fields below.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from mllm.data.schema import Corpus, FactKind, Level, Record, Split


class ScopeError(ValueError):
    """A scope file is malformed or names a node the corpus does not have."""


@dataclass(frozen=True)
class NodeRef:
    """A node of the hierarchy by the ids on its path (deeper ids ``None``); identifiers stay in files."""

    institution_id: str
    patient_id: str | None = None
    study_id: str | None = None
    section: str | None = None

    @property
    def level(self) -> Level:
        return list(Level)[sum(v is not None for v in (self.patient_id, self.study_id, self.section))]

    def contains(self, record: Record) -> bool:
        path = (record.institution_id, record.patient_id, record.study_id,
                record.section.value if record.section else None)
        depth = list(Level).index(self.level) + 1
        return path[:depth] == (self.institution_id, self.patient_id, self.study_id, self.section)[:depth]


@dataclass(frozen=True)
class ScopeGroups:
    """Record groups of one forget request; ``siblings`` maps an ancestor level to its sibling records."""

    forget: list[Record]
    children: list[Record] = field(default_factory=list)
    siblings: dict[str, list[Record]] = field(default_factory=dict)
    shared: list[Record] = field(default_factory=list)
    retain: list[Record] = field(default_factory=list)
    validation: list[Record] = field(default_factory=list)
    holdout: list[Record] = field(default_factory=list)
    forget_forms: list[Record] = field(default_factory=list)


_PATH_KEYS = ("institution_id", "patient_id", "study_id", "section")


def load_scope_file(path: Path) -> NodeRef:
    """``{"institution_id": .., "patient_id": .., "study_id": .., "section": ..}``, deeper ids optional."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScopeError(f"cannot read the scope file ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ScopeError("the scope file must hold a JSON object")
    unknown = sorted(set(data) - set(_PATH_KEYS))
    if unknown:
        raise ScopeError(f"the scope file has an unknown field {unknown[0]!r}")
    values = [data.get(key) for key in _PATH_KEYS]
    for key, value in zip(_PATH_KEYS, values, strict=True):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ScopeError(f"scope field {key!r} must be null or a non-empty string")
    gaps = any(a is None and b is not None for a, b in zip(values, values[1:], strict=False))
    if values[0] is None or gaps:
        raise ScopeError("a scope names every ancestor: institution_id, then patient_id, then study_id")
    return NodeRef(*values)


def _digest(salt: str, record_id: str) -> str:
    return hashlib.sha256(f"{salt}:{record_id}".encode()).hexdigest()


def resolve_scope(corpus: Corpus, node: NodeRef) -> ScopeGroups:
    """Forget = trainable records under ``node``; siblings = the rest under each ancestor; far retain."""
    trainable = corpus.select(trainable=True)
    forget = [r for r in trainable if node.contains(r)]
    if not forget:
        raise ScopeError("the scope's node has no trainable records in this corpus")
    levels = list(Level)[:list(Level).index(node.level)]
    siblings: dict[str, list[Record]] = {}
    taken = {r.record_id for r in forget}
    for level in reversed(levels):
        ids = [getattr(forget[0], k) for k in _PATH_KEYS[:list(Level).index(level) + 1]]
        ancestor = NodeRef(*ids)
        group = [r for r in trainable if ancestor.contains(r) and r.record_id not in taken]
        siblings[level.value] = group
        taken |= {r.record_id for r in group}
    retain = [r for r in trainable if r.record_id not in taken]
    holdout = corpus.select(split=Split.HOLDOUT)
    holdout = [r for r in holdout if getattr(r, "paraphrase_of", None) is None]
    forms = [r for r in corpus.records if getattr(r, "paraphrase_of", None) in {f.record_id for f in forget}]
    return ScopeGroups(forget=forget, siblings=siblings, retain=retain, validation=[],
                       holdout=holdout, forget_forms=forms)


def is_private(record: Record) -> bool:
    return record.fact_kind is FactKind.PRIVATE


def scope_digest(scope: ScopeGroups) -> str:
    """SHA-256 over the group names and sorted record ids (record ids are not PHI)."""
    groups = {"forget": scope.forget, "children": scope.children, "shared": scope.shared,
              "retain": scope.retain, "validation": scope.validation, "holdout": scope.holdout,
              **{f"siblings.{level}": records for level, records in scope.siblings.items()}}
    text = json.dumps({name: sorted(r.record_id for r in records) for name, records in groups.items()},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def forget_records(scope: ScopeGroups) -> list[Record]:
    """Forget records plus the children's (deduplicated, in order)."""
    return list({r.record_id: r for r in (*scope.forget, *scope.children)}.values())


def kept_groups(scope: ScopeGroups) -> dict[str, list[Record]]:
    """Every group the unlearned model must keep: siblings per level, shared facts, far retain."""
    groups = {f"siblings.{level}": records for level, records in scope.siblings.items()}
    groups["shared"] = scope.shared
    groups["retain"] = scope.retain
    return {name: records for name, records in groups.items() if records}


def sample(records: list[Record], n: int, salt: str) -> list[Record]:
    """A deterministic sample of at most ``n`` records (ordered by a salted hash of the id)."""
    return sorted(records, key=lambda r: _digest(salt, r.record_id))[:n]
