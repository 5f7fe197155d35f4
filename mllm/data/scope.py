"""Scope of a forget request on one node: which records it covers, and what to compare them with.

A node (:data:`NodeRef`, written ``institution[/patient[/study[/SECTION]]]``) is named in a
``SCOPE.json`` file, never on a command line (:func:`load_scope_file`). :func:`resolve_scope`
splits a corpus's records into (``trainable`` = train split and not ``eval_only``):

- ``forget``: trainable records whose fact the node owns — the node itself or a descendant
  (a record's owner always lies on its own path);
- ``children``: the part of ``forget`` owned by a strict descendant (a study's section facts);
- ``shared``: trainable records asked on the node's images about facts owned by an *ancestor*
  (the patient's name on a forgotten study's image) — the request covers the image, not the fact;
- ``siblings``: per ancestor level, trainable records under that ancestor but outside the branch
  leading to the node (``siblings[STUDY]`` of a section: the study's other sections and study facts;
  ``[PATIENT]``: the patient's other studies; ``[INSTITUTION]``: the institution's other patients);
- ``retain``: every other trainable record (the far retain set); forget, shared, siblings and
  retain partition the trainable records;
- ``validation``: the ``forget`` set of another node of the same level under another patient (another
  institution for an institution node), for choosing hyperparameters without touching the real
  target; it overlaps siblings / retain by design;
- ``holdout``: never-trained holdout records (not eval-only) matched to ``forget`` on
  level × fact kind × task × section, preferring the same fact key and form, coarsening only when
  the holdout slice runs short (``holdout_match`` counts each tier): one twin per forget record, or
  ``ceil(MIN_TWINS / |forget|)`` of them for a scope smaller than :data:`MIN_TWINS`
  (:func:`twins_per_record`) — a section of one fact (a few records) is otherwise compared with as
  few never-seen records, and one of them decides each reference rate;
- ``forget_forms``: eval-only forms (held-out phrasings and cross-task forms) of forget facts, and
  ``holdout_forms`` their holdout twins, matched the same way;
- ``earlier_forgotten`` (not filled here, empty by default): records that earlier unlearning jobs
  already removed from the model under test; the pipeline names them so that verification can check
  that a new version does not bring them back.

The algorithm reads only the placement fields of a record (:class:`Placed`), so the Django side
(``hierarchy.scope``) runs the same code on rows that carry database ids instead of identifiers.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from .entities import HierarchyNode
from .schema import Corpus, FactKind, Level, Section, Split, Task

NodeRef = HierarchyNode  # a node: level and the node's ids within the corpus
LEVELS = tuple(Level)
GROUPS = ("forget", "children", "shared", "siblings", "retain", "validation", "holdout", "forget_forms",
          "holdout_forms")
MIN_TWINS = 24  # the fewest holdout twins a scope is compared with, when the holdout slice has them
# How closely a holdout twin matches, best first: width of the matched prefix of MatchKey.
MATCH_TIERS = (("fact_form", 6), ("level_kind_task_section", 4), ("level_kind_task", 3), ("level_kind", 2),
               ("level", 1), ("any", 0))
SCOPE_FIELDS = ("institution_id", "patient_id", "study_id", "section")


class ScopeError(ValueError):
    """A scope file is malformed, or its node has nothing to forget in the corpus (no identifiers
    in the message)."""

    def __init__(self, message: str, field_name: str | None = None) -> None:
        self.field_name = field_name
        super().__init__(message)


class Placed(Protocol):
    """What scope resolution reads of a record (a :class:`~mllm.data.schema.Record` is one)."""

    @property
    def record_id(self) -> str: ...
    @property
    def institution_id(self) -> str: ...
    @property
    def patient_id(self) -> str: ...
    @property
    def study_id(self) -> str: ...
    @property
    def section(self) -> Section | None: ...
    @property
    def level(self) -> Level: ...
    @property
    def task(self) -> Task: ...
    @property
    def fact_kind(self) -> FactKind: ...
    @property
    def fact_key(self) -> str: ...
    @property
    def form(self) -> str: ...
    @property
    def owner_level(self) -> Level: ...
    @property
    def split(self) -> Split: ...
    @property
    def eval_only(self) -> bool: ...


R = TypeVar("R", bound=Placed)


@dataclass(frozen=True)
class ScopeGroups(Generic[R]):
    """The record groups of one node (see the module docstring)."""

    node: NodeRef
    forget: tuple[R, ...]
    children: tuple[R, ...]
    shared: tuple[R, ...]
    siblings: dict[Level, tuple[R, ...]]
    retain: tuple[R, ...]
    validation: tuple[R, ...]
    holdout: tuple[R, ...]
    forget_forms: tuple[R, ...]
    holdout_forms: tuple[R, ...]
    validation_node: NodeRef | None = None
    earlier_forgotten: tuple[R, ...] = ()
    holdout_match: dict[str, dict[str, int]] = field(default_factory=dict)
    # A batch of several requests: the level of the (coarsest) request node that forgets each record of
    # ``forget`` / ``forget_forms``, by record id; empty when every record is forgotten at ``node``'s level.
    forget_levels: dict[str, Level] = field(default_factory=dict)

    def level_of(self, record: Placed) -> Level:
        """The level of the request node that forgets ``record`` (``node``'s unless a batch says)."""
        return self.forget_levels.get(record.record_id, self.node.level)  # type: ignore[arg-type]

    @property
    def all_siblings(self) -> tuple[R, ...]:
        return tuple(r for level in LEVELS for r in self.siblings.get(level, ()))

    def groups(self) -> dict[str, tuple[R, ...]]:
        """Every group by name (``siblings`` flattened), in :data:`GROUPS` order."""
        return {name: self.all_siblings if name == "siblings" else getattr(self, name) for name in GROUPS}

    def ids(self) -> dict[str, frozenset[str]]:
        return {name: frozenset(r.record_id for r in records) for name, records in self.groups().items()}

    def summary(self) -> dict[str, Any]:
        """Counts only (no identifiers): per group, per group and level, siblings per ancestor level."""
        groups = self.groups()
        return {"level": self.node.level.value,
                "counts": {name: len(records) for name, records in groups.items()},
                "counts_by_level": {name: dict(sorted(Counter(r.level.value for r in records).items()))
                                    for name, records in groups.items()},
                "siblings_by_ancestor": {level.value: len(records)
                                         for level, records in self.siblings.items()},
                "holdout_match": self.holdout_match}


def load_scope_file(path: Path | str) -> NodeRef:
    """Read ``SCOPE.json``: ``{"institution_id": .., "patient_id": .., "study_id": .., "section": ..}``,
    the deeper ids optional (null or absent) but never given below a missing one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScopeError(f"cannot read the scope file ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ScopeError("the scope file must hold a JSON object")
    unknown = sorted(set(data) - set(SCOPE_FIELDS))
    if unknown:
        raise ScopeError("unknown field", field_name=unknown[0])
    values: list[Any] = []
    for name in SCOPE_FIELDS:
        value = data.get(name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ScopeError("must be null or a non-empty string", field_name=name)
        values.append(value)
    if values[0] is None:
        raise ScopeError("is required", field_name="institution_id")
    try:
        section = Section(values[3]) if values[3] is not None else None
    except ValueError:
        allowed = ", ".join(s.value for s in Section)
        raise ScopeError(f"must be one of: {allowed}", field_name="section") from None
    try:
        return NodeRef(values[0], values[1], values[2], section)
    except ValueError:
        raise ScopeError("a node names every ancestor: institution, then patient, then study",
                         field_name="patient_id" if values[1] is None else "study_id") from None


def _depth(level: Level) -> int:
    return LEVELS.index(level)


def _ancestor(node: NodeRef, level: Level) -> NodeRef:
    ids = [node.patient_id, node.study_id, node.section]
    depth = _depth(level)
    return NodeRef(node.institution_id, *ids[:depth], *(None,) * (3 - depth))


def _match_key(record: Placed) -> tuple[str, ...]:
    return (record.level.value, record.fact_kind.value, record.task.value,
            record.section.value if record.section else "", record.fact_key, record.form)


def twins_per_record(forget_count: int) -> int:
    """How many holdout twins each of ``forget_count`` records is matched with: one, or enough for a
    scope smaller than :data:`MIN_TWINS` to reach it."""
    return max(1, math.ceil(MIN_TWINS / forget_count)) if forget_count else 1


def _twins(targets: Sequence[R], pool: Sequence[R], salt: str) -> tuple[list[R], dict[str, int]]:
    """Pick pool records matching the targets' mix of keys (:func:`twins_per_record` per target),
    coarsening the key tier by tier."""
    per_target = twins_per_record(len(targets))
    demand = Counter({key: count * per_target for key, count in Counter(map(_match_key, targets)).items()})
    available = sorted(pool, key=lambda r: hashlib.sha256(f"{salt}:{r.record_id}".encode()).hexdigest())
    chosen: list[R] = []
    quality: dict[str, int] = {}
    for tier, width in MATCH_TIERS:
        by_prefix: dict[tuple[str, ...], list[R]] = defaultdict(list)
        for record in available:
            by_prefix[_match_key(record)[:width]].append(record)
        taken = 0
        for key in sorted(demand):
            candidates = by_prefix[key[:width]]
            count = min(demand[key], len(candidates))
            chosen.extend(candidates[:count])
            del candidates[:count]
            demand[key] -= count
            taken += count
        quality[tier] = taken
        picked = {r.record_id for r in chosen}
        available = [r for r in available if r.record_id not in picked]
        demand = +demand
    return chosen, quality


def _owned(node: NodeRef, record: Placed) -> bool:
    """The record's fact is owned by ``node`` or a descendant (its owner lies on its own path)."""
    return node.contains(record) and _depth(record.owner_level) >= _depth(node.level)  # type: ignore[arg-type]


def _validation_node(node: NodeRef, trainable: Sequence[Placed], salt: str) -> NodeRef | None:
    """Another node of ``node``'s level, under another patient (institution for an institution node)."""
    apart = Level.INSTITUTION if node.level is Level.INSTITUTION else Level.PATIENT
    mine = _ancestor(node, apart)
    candidates = {NodeRef.of(r, node.level) for r in trainable  # type: ignore[arg-type]
                  if (node.level is not Level.SECTION or r.section is not None)
                  and not mine.contains(r) and _depth(r.owner_level) >= _depth(node.level)}  # type: ignore[arg-type]
    if not candidates:
        return None
    return min(candidates, key=lambda n: hashlib.sha256(f"{salt}:validation:{n}".encode()).hexdigest())


def resolve_records(records: Sequence[R], node: NodeRef, *, salt: str = "",
                    allow_empty: bool = False) -> ScopeGroups[R]:
    """Resolve ``node``'s groups among ``records`` (``salt`` varies the deterministic choices).

    A node that owns no trainable record raises :class:`ScopeError` unless ``allow_empty``.
    """
    salt = salt or hashlib.sha256(str(node).encode()).hexdigest()
    trainable = [r for r in records if r.split is Split.TRAIN and not r.eval_only]
    forget = [r for r in trainable if _owned(node, r)]
    if not forget and not allow_empty:
        raise ScopeError("the node owns no trainable record of this corpus")
    branch = [_ancestor(node, level) for level in LEVELS[:_depth(node.level) + 1]]
    shared, siblings, retain = [], defaultdict(list), []
    for record in trainable:
        if _owned(node, record):
            continue
        if node.contains(record):  # type: ignore[arg-type]
            shared.append(record)
            continue
        inside = [level for level, ancestor in zip(LEVELS, branch, strict=False)
                  if ancestor.contains(record)]  # type: ignore[arg-type]
        (siblings[inside[-1]] if inside else retain).append(record)
    children = [r for r in forget if _depth(r.owner_level) > _depth(node.level)]
    forget_forms = [r for r in records if r.split is Split.TRAIN and r.eval_only and _owned(node, r)]
    holdout_pool = [r for r in records if r.split is Split.HOLDOUT]
    holdout, match = _twins(forget, [r for r in holdout_pool if not r.eval_only], salt)
    holdout_forms, forms_match = _twins(forget_forms, [r for r in holdout_pool if r.eval_only], salt)
    other = _validation_node(node, trainable, salt)
    validation = [r for r in trainable if other is not None and _owned(other, r)]
    return ScopeGroups(
        node=node, forget=tuple(forget), children=tuple(children), shared=tuple(shared),
        siblings={level: tuple(siblings[level]) for level in LEVELS if level in siblings},
        retain=tuple(retain), validation=tuple(validation), holdout=tuple(holdout),
        forget_forms=tuple(forget_forms), holdout_forms=tuple(holdout_forms), validation_node=other,
        holdout_match={"holdout": match, "holdout_forms": forms_match})


def resolve_scope(corpus: Corpus, node: NodeRef, *, salt: str = "") -> ScopeGroups:
    """The groups of ``node`` in ``corpus`` (see the module docstring); :class:`ScopeError` if the
    node owns no trainable record."""
    return resolve_records(corpus.records, node, salt=salt)
