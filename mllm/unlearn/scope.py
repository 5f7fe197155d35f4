"""How unlearning reads a scope (Testbed v2's :mod:`mllm.data.scope`): what to forget, what to keep.

``forget`` holds the facts the node owns (its children's included); ``shared`` holds ancestor-owned
facts asked on the node's images (the patient's name on a forgotten study's image): the request
covers the image, not the fact, so they are kept, like the siblings at each ancestor level and the
far retain set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

from mllm.data.schema import FactKind, Level, Record
from mllm.data.scope import NodeRef, ScopeError, ScopeGroups, load_scope_file, resolve_scope

__all__ = ["KEPT_GROUPS", "NodeRef", "ScopeError", "ScopeGroups", "forget_records", "is_private",
           "kept_groups", "lineage_forgotten_ids", "load_scope_file", "resolve_scope", "sample",
           "scope_digest"]


def is_private(record: Record) -> bool:
    return record.fact_kind is FactKind.PRIVATE


def _unique(records: Iterable[Record]) -> list[Record]:
    return list({r.record_id: r for r in records}.values())


def forget_records(scope: ScopeGroups) -> list[Record]:
    """The facts to forget: the node's and its children's (deduplicated, in order)."""
    return _unique((*scope.forget, *scope.children))


def lineage_forgotten_ids(scope: ScopeGroups) -> list[str]:
    """Every record id the unlearned model must not know: this scope's and earlier jobs' removals."""
    return [r.record_id for r in (*forget_records(scope), *scope.earlier_forgotten)]


#: Every group name :func:`kept_groups` can return.
KEPT_GROUPS = (*(f"siblings.{level.value}" for level in Level), "shared", "retain")


def kept_groups(scope: ScopeGroups) -> dict[str, list[Record]]:
    """Every non-empty group the unlearned model must keep: ``siblings.<ancestor level>`` (nearest
    ancestor first), ``shared`` and far ``retain``; none of their records is in the forget set."""
    forget = {r.record_id for r in forget_records(scope)}
    levels = sorted(scope.siblings, key=lambda level: -list(type(level)).index(level))
    groups = {f"siblings.{level.value}": scope.siblings[level] for level in levels}
    groups["shared"] = scope.shared
    groups["retain"] = scope.retain
    return {name: [r for r in records if r.record_id not in forget]
            for name, records in groups.items() if records}


def sample(records: Sequence[Record], n: int, salt: str) -> list[Record]:
    """A deterministic sample of at most ``n`` records (ordered by a salted hash of the id)."""
    return sorted(records, key=lambda r: hashlib.sha256(f"{salt}:{r.record_id}".encode()).hexdigest())[:n]


def scope_digest(scope: ScopeGroups) -> str:
    """SHA-256 over group names and sorted record ids (record ids are not PHI)."""
    ids = {name: sorted(ids) for name, ids in scope.ids().items()}
    return hashlib.sha256(json.dumps(ids, sort_keys=True).encode()).hexdigest()
