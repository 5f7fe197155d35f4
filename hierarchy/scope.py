"""Scope resolution: which training records a forget request on one node covers, and what to compare with.

For a node (institution, patient, study or section) and a corpus, a record is *under* the node when its
study (or, for a section node, its section) lies in the node's subtree. *Trainable* records are those
the model was fine-tuned on: not holdout and not a paraphrase.

- ``forget``: trainable records under the node.
- ``retain``: every other trainable record of the corpus.
- ``neighbour``: the retain records under the node's parent (same study for a section, same patient
  for a study, same institution for a patient; for an institution, all of retain).
- ``holdout``: never-trained holdout records matched one-to-one to the forget records on
  level × task × section name, falling back to level × task, then level, then any holdout record
  when the holdout slice runs short; at most ``len(forget)``, chosen in a deterministic order.
- ``forget_paraphrases``: evaluation-only rewordings of forget records.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from mllm.data.schema import Level

from .models import Corpus, TrainingRecord
from .nodes import Node, node_label, node_level, node_parent, node_subject_hash

GROUPS = ("forget", "retain", "neighbour", "holdout", "forget_paraphrases")
# How closely a holdout twin matches its forget record, best first (key prefix length).
MATCH_TIERS = (("level_task_section", 3), ("level_task", 2), ("level", 1), ("any", 0))

_COLUMNS = ("record_id", "level", "task", "section__name", "is_holdout", "paraphrase_of",
            "section_id", "study_id", "study__patient_id", "study__patient__institution_id")
_NODE_COLUMN = {Level.SECTION: 6, Level.STUDY: 7, Level.PATIENT: 8, Level.INSTITUTION: 9}

MatchKey = tuple[str, str, str]  # level, task, section name ("" when none)


@dataclass(frozen=True)
class Scope:
    """The record-id sets of one node in one corpus (record ids are not PHI)."""

    corpus_id: int
    level: Level
    node_id: int
    subject_hash: str
    label: str
    forget: frozenset[str]
    retain: frozenset[str]
    neighbour: frozenset[str]
    holdout: frozenset[str]
    forget_paraphrases: frozenset[str]
    counts_by_level: dict[str, dict[str, int]] = field(default_factory=dict)
    holdout_match: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts and keyed hashes only: safe for audit events and API responses."""
        return {"corpus_id": self.corpus_id, "level": self.level.value, "node_id": self.node_id,
                "subject_hash": self.subject_hash, "label": self.label,
                "counts": {name: len(getattr(self, name)) for name in GROUPS},
                "counts_by_level": self.counts_by_level, "holdout_match": self.holdout_match}


def _twins(forget: dict[str, MatchKey], pool: dict[str, MatchKey], *, salt: str) -> tuple[list[str], dict]:
    """Pick holdout records matching the forget set's mix of keys, coarsening the key tier by tier."""
    demand = Counter(forget.values())
    available = sorted(pool, key=lambda rid: hashlib.sha256(f"{salt}:{rid}".encode()).hexdigest())
    chosen: list[str] = []
    quality: dict[str, int] = {}
    for tier, width in MATCH_TIERS:
        by_prefix: dict[tuple, list[str]] = defaultdict(list)
        for rid in available:
            by_prefix[pool[rid][:width]].append(rid)
        taken = 0
        for key in sorted(demand):
            candidates = by_prefix[key[:width]]
            count = min(demand[key], len(candidates))
            chosen.extend(candidates[:count])
            del candidates[:count]
            demand[key] -= count
            taken += count
        quality[tier] = taken
        picked = set(chosen)
        available = [rid for rid in available if rid not in picked]
        demand = +demand
    return chosen, quality


def scope_resolve(*, node: Node, corpus: Corpus) -> Scope:
    """Resolve the forget / retain / neighbour / holdout / paraphrase sets of ``node`` in ``corpus``."""
    level = node_level(node)
    parent = node_parent(node)
    own_column = _NODE_COLUMN[level]
    parent_column = None if parent is None else _NODE_COLUMN[node_level(parent)]
    forget: dict[str, MatchKey] = {}
    pool: dict[str, MatchKey] = {}
    retain: set[str] = set()
    neighbour: set[str] = set()
    paraphrases: list[tuple[str, str]] = []
    levels: dict[str, str] = {}
    for row in TrainingRecord.objects.filter(corpus=corpus).values_list(*_COLUMNS).iterator(chunk_size=5000):
        record_id, record_level, task, section_name, is_holdout, paraphrase_of = row[:6]
        levels[record_id] = record_level
        if paraphrase_of:
            paraphrases.append((record_id, paraphrase_of))
        elif is_holdout:
            pool[record_id] = (record_level, task, section_name or "")
        elif row[own_column] == node.pk:
            forget[record_id] = (record_level, task, section_name or "")
        else:
            retain.add(record_id)
            if parent is None or row[parent_column] == parent.pk:
                neighbour.add(record_id)
    subject_hash = node_subject_hash(node)
    holdout, quality = _twins(forget, pool, salt=subject_hash)
    sets = {"forget": frozenset(forget), "retain": frozenset(retain), "neighbour": frozenset(neighbour),
            "holdout": frozenset(holdout),
            "forget_paraphrases": frozenset(rid for rid, source in paraphrases if source in forget)}
    counts = {name: dict(sorted(Counter(levels[rid] for rid in ids).items())) for name, ids in sets.items()}
    return Scope(corpus_id=corpus.pk, level=level, node_id=node.pk, subject_hash=subject_hash,
                 label=node_label(node), counts_by_level=counts, holdout_match=quality, **sets)
