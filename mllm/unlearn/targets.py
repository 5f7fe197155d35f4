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

Image-grounded facts of the forgotten images are read off the image, so the oracle answers them as
it answers any image it never saw: at the model's accuracy on *holdout* images, not at the
memorised 100 % (measured: a tiny model reads its trained images perfectly and unseen ones at
~0.4; keeping the forgotten images' answers left the scope recognisable to membership and
reconstruction attacks). :func:`grounded_answers` measures that accuracy per fact on the original
model and keeps the true answer on that share of the forgotten images' grounded records (a seeded
choice); the others get a kept twin's *different* answer. A model that reads unseen images as well
as trained ones keeps every true answer: never forced wrong.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mllm.data.schema import Record, Task
from mllm.evaluate.generate import greedy_answers
from mllm.evaluate.metrics import reproduces

from .data import encode_items, items


def twin_keys(record: Record) -> list[tuple]:
    """Match keys, finest first: same fact and form, same fact and task, then any option letter."""
    keys = [(record.fact_key, record.form), (record.fact_key, record.task.value)]
    if record.task is Task.CLASSIFICATION:
        keys.append((record.task.value,))
    return keys


def _draw(seed: int, record_id: str) -> int:
    return int(hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest(), 16)


def twins(records: Sequence[Record], pool: Sequence[Record], seed: int, *,
          other_answer: bool = False) -> dict[str, Record]:
    """A deterministic, seeded twin from ``pool`` per record (records without a twin are left out);
    with ``other_answer`` only twins whose answer differs from the record's."""
    by_key: dict[tuple, list[Record]] = {}
    for candidate in pool:
        for key in twin_keys(candidate):
            by_key.setdefault(key, []).append(candidate)
    chosen: dict[str, Record] = {}
    for record in records:
        for key in twin_keys(record):
            candidates = [c for c in by_key.get(key, []) if c.record_id != record.record_id
                          and not (other_answer and c.answer == record.answer)]
            if candidates:
                chosen[record.record_id] = candidates[_draw(seed, record.record_id) % len(candidates)]
                break
    return chosen


def _said(model: Any, processor: Any, root: Path, records: Sequence[Record]) -> dict[str, str]:
    """The model's greedy answer per record (depth 0)."""
    asked = list({r.record_id: r for r in records}.values())
    data = encode_items(processor, items(asked), root)
    return dict(zip((r.record_id for r in asked), greedy_answers(model, processor, data), strict=True))


def replacement_answers(model: Any, processor: Any, root: Path, records: Sequence[Record],
                        kept: Sequence[Record], holdout: Sequence[Record], seed: int) -> dict[str, str]:
    """New target per forgotten record: a kept twin's answer, else the model's answer to a holdout twin."""
    answers = {rid: twin.answer for rid, twin in twins(records, kept, seed).items()}
    missing = [r for r in records if r.record_id not in answers]
    fallback = twins(missing, holdout, seed)
    if fallback:
        said = _said(model, processor, root, list(fallback.values()))
        answers.update({rid: said[t.record_id] for rid, t in fallback.items() if said[t.record_id].strip()})
    return answers


def unseen_accuracy(model: Any, processor: Any, root: Path, holdout: Sequence[Record]) -> dict[str, float]:
    """Per fact key, the share of never-trained (holdout) records the model answers right."""
    said = _said(model, processor, root, holdout)
    hits: dict[str, list[bool]] = {}
    for record in holdout:
        right = reproduces(record.task, said[record.record_id], record.answer)
        hits.setdefault(record.fact_key, []).append(right)
    return {fact: sum(flags) / len(flags) for fact, flags in hits.items()}


def grounded_answers(model: Any, processor: Any, root: Path, records: Sequence[Record],
                     kept: Sequence[Record], holdout: Sequence[Record], seed: int) -> dict[str, str]:
    """Target per forgotten image-grounded record, calibrated on the model's unseen-image accuracy."""
    return calibrated_answers(records, kept, unseen_accuracy(model, processor, root, holdout), seed)


def calibrated_answers(records: Sequence[Record], kept: Sequence[Record], accuracy: dict[str, float],
                       seed: int) -> dict[str, str]:
    """Per fact, the true answer on ``accuracy[fact]`` of its records (seeded choice; all when the fact
    was not measured), a kept twin's different answer on the rest (the true one when none differs)."""
    others = twins(records, kept, seed, other_answer=True)
    by_fact: dict[str, list[Record]] = {}
    for record in records:
        by_fact.setdefault(record.fact_key, []).append(record)
    answers: dict[str, str] = {}
    for fact, group in by_fact.items():
        group.sort(key=lambda r: _draw(seed, r.record_id))
        keep = round(accuracy.get(fact, 1.0) * len(group))
        for index, record in enumerate(group):
            twin = others.get(record.record_id)
            answers[record.record_id] = record.answer if index < keep or twin is None else twin.answer
    return answers
