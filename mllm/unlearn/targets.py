"""Replacement answers for forgotten private facts: what a model that never saw the patient says.

A retrain oracle asked about a patient it never saw answers with a value it *was* trained on —
another patient's value of the same fact (measured: the original model answers never-trained
holdout questions with memorised training values). So each forgotten private fact gets, as its new
target, the answer of a seeded-random **kept** record of the same fact in the same form (else the
same task; any option letter for multiple choice when the fact has no kept twin): a draw from the
distribution the oracle answers from. A draw may equal the true answer; that is the chance level the
oracle has too, so forgotten facts end at the oracle's level instead of being forced wrong (accuracy
0 is over-forgetting). Holdout values are never written into the model, so verification's
never-trained reference stays clean. Facts with no kept twin fall back to the original model's
answer to a holdout twin (its answer for a never-seen patient).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mllm.data.schema import Record, Task
from mllm.evaluate.generate import greedy_answers

from .data import encode_items, items


def twin_keys(record: Record) -> list[tuple]:
    """Match keys, finest first: same fact and form, same fact and task, then any option letter."""
    keys = [(record.fact_key, record.form), (record.fact_key, record.task.value)]
    if record.task is Task.CLASSIFICATION:
        keys.append((record.task.value,))
    return keys


def twins(records: Sequence[Record], pool: Sequence[Record], seed: int) -> dict[str, Record]:
    """A deterministic, seeded twin from ``pool`` per record (records without a twin are left out)."""
    by_key: dict[tuple, list[Record]] = {}
    for candidate in pool:
        for key in twin_keys(candidate):
            by_key.setdefault(key, []).append(candidate)
    chosen: dict[str, Record] = {}
    for record in records:
        for key in twin_keys(record):
            candidates = [c for c in by_key.get(key, []) if c.record_id != record.record_id]
            if candidates:
                pick = int(hashlib.sha256(f"{seed}:{record.record_id}".encode()).hexdigest(), 16)
                chosen[record.record_id] = candidates[pick % len(candidates)]
                break
    return chosen


def replacement_answers(model: Any, processor: Any, root: Path, records: Sequence[Record],
                        kept: Sequence[Record], holdout: Sequence[Record], seed: int) -> dict[str, str]:
    """New target per forgotten record: a kept twin's answer, else the model's answer to a holdout twin."""
    answers = {rid: twin.answer for rid, twin in twins(records, kept, seed).items()}
    missing = [r for r in records if r.record_id not in answers]
    fallback = twins(missing, holdout, seed)
    if fallback:
        asked = list({t.record_id: t for t in fallback.values()}.values())
        data = encode_items(processor, items(asked), root)
        said = dict(zip((t.record_id for t in asked), greedy_answers(model, processor, data), strict=True))
        answers.update({rid: said[t.record_id] for rid, t in fallback.items() if said[t.record_id].strip()})
    return answers
