"""Replacement answers for forgotten private facts: what the model says about a never-seen patient.

For each forget record the original model answers its **holdout twin** — the same fact asked about
a never-trained patient (matched on fact key and task when records carry fact keys, else on level ×
section × task, coarsening to task). That answer is the forgotten fact's new target: drawn from the
holdout distribution as the model itself sees it, so a forgotten fact ends at the level a model that
never saw the patient reaches (chance for private facts) instead of being forced wrong. Holdout
values are never written into the model (the twin's own answer is not used), so the never-trained
reference of verification stays clean.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mllm.data.schema import Record
from mllm.evaluate.generate import greedy_answers

from .data import encode_items, items


def twin_keys(record: Record) -> list[tuple]:
    """Match keys from finest to coarsest."""
    fact = getattr(record, "fact_key", None)
    section = record.section.value if record.section else ""
    finest = (fact, record.task.value) if fact else (record.level.value, section, record.task.value)
    return [finest, (record.level.value, record.task.value), (record.task.value,)]


def holdout_twins(records: Sequence[Record], holdout: Sequence[Record], seed: int) -> dict[str, Record]:
    """A deterministic, seeded holdout twin per record (records without any twin are left out)."""
    pools: dict[tuple, list[Record]] = {}
    for candidate in holdout:
        for key in twin_keys(candidate):
            pools.setdefault(key, []).append(candidate)
    twins: dict[str, Record] = {}
    for record in records:
        for key in twin_keys(record):
            pool = pools.get(key)
            if pool:
                pick = int(hashlib.sha256(f"{seed}:{record.record_id}".encode()).hexdigest(), 16) % len(pool)
                twins[record.record_id] = pool[pick]
                break
    return twins


def prior_answers(model: Any, processor: Any, root: Path, records: Sequence[Record],
                  holdout: Sequence[Record], seed: int, *, max_new_tokens: int = 48) -> dict[str, str]:
    """The model's greedy answer to each record's holdout twin (non-empty answers only)."""
    twins = holdout_twins(records, holdout, seed)
    asked = list(dict.fromkeys(twin.record_id for twin in twins.values()))
    by_id = {twin.record_id: twin for twin in twins.values()}
    if not asked:
        return {}
    data = encode_items(processor, items(by_id[i] for i in asked), root)
    said = greedy_answers(model, processor, data, max_new_tokens=max_new_tokens)
    answers = dict(zip(asked, said, strict=True))
    return {rid: answers[twin.record_id] for rid, twin in twins.items() if answers[twin.record_id].strip()}
