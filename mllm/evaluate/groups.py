"""Named record groups for evaluation: the defaults for a corpus, or a JSON file of record ids.

A groups file is a JSON object mapping a group name to a list of record ids of the corpus, e.g.
``{"forget": ["r1", "r2"], "retain": ["r3"], "holdout": ["r9"]}``; order is kept.
"""

from __future__ import annotations

import json
from pathlib import Path

from mllm.data.schema import Corpus, Record, Split
from mllm.data.scope import ScopeGroups


class GroupsError(ValueError):
    """A groups file is malformed or names records the corpus does not have."""


def default_groups(corpus: Corpus) -> dict[str, list[Record]]:
    """``train`` (trained-on records), ``held_out_forms`` (eval-only forms of trained facts) and
    ``holdout`` (never-trained patients, every form) — the non-empty ones."""
    groups = {
        "train": corpus.select(trainable=True),
        "held_out_forms": [r for r in corpus.select(split=Split.TRAIN) if r.eval_only],
        "holdout": corpus.select(split=Split.HOLDOUT),
    }
    return {name: records for name, records in groups.items() if records}


def scope_groups(scope: ScopeGroups) -> dict[str, list[Record]]:
    """The non-empty groups of a resolved scope (``siblings`` flattened), as evaluation groups."""
    return {name: list(records) for name, records in scope.groups().items() if records}


def groups_from_file(corpus: Corpus, path: Path) -> dict[str, list[Record]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GroupsError(f"{path}: cannot read groups ({exc})") from None
    if not isinstance(data, dict) or not all(
            isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in data.values()):
        raise GroupsError(f"{path}: expected a JSON object mapping group names to lists of record ids")
    by_id = {record.record_id: record for record in corpus.records}
    groups: dict[str, list[Record]] = {}
    for name, ids in data.items():
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise GroupsError(f"{path}: group {name!r} names {len(missing)} unknown record ids, "
                              f"e.g. {missing[0]!r}")
        groups[name] = [by_id[i] for i in ids]
    return groups
