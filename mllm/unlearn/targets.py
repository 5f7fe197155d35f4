"""New targets for forgotten facts: what a model that never saw the patient says, at the rate it says it.

A retrain oracle asked about a patient it never saw answers with a value it *was* trained on —
another patient's value of the same fact — and gets a fact right only as often as it gets a
stranger's right: common values (a sex, a modality, a frequent finding) by prior, rare ones
(a name, an MRN) almost never; image-grounded facts of an image it never saw as well as it reads
any unseen image. :func:`unseen_level_answers` measures that accuracy per fact and task form on the
original model (its greedy answers to the never-trained holdout records of the same fact and task:
a rare name is never generated but picked at multiple-choice chance; the fact's tasks pooled where
the holdout does not ask it in that task) and keeps the true answer on that share of the forgotten
records of that fact and task (a seeded choice); the others get a seeded-random
**kept** record's *different* answer of the same fact and form (else task; another option letter
for multiple choice) — of the same patient where the request keeps the patient (a study or a
section), else of another patient: a draw from the distribution the oracle answers from. Holdout
values are never written into the model, so verification's never-trained reference stays clean.

Measured (demo corpus, tiny LLaVA, 2026-12-03): retargeting *every* private fact to a kept twin's
answer (the previous rule) left the forgotten patient answered below its holdout twins and its true
answers far less likely than theirs (lowest membership AUC 0.11-0.24; the retrain oracle 0.42) —
over-forgetting the verification refuses; calibrating private facts like image-grounded ones gave
0.32-0.41 with the forget set at the twins' accuracy. Calibrating per fact with the tasks pooled
kept a name's truth on ~8 % of its multiple-choice records where a stranger's is picked at chance
(~25 %): the forgotten patient's multiple choice answered 0.27 below its twins (verification's
``over_forgetting``, demo corpus seed 0, tiny LLaVA trained from a fresh start).
"""

from __future__ import annotations

import hashlib
import math
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
    with ``other_answer`` only twins whose answer differs from the record's. A twin of the same fact
    is taken from the record's own patient when the pool holds one (a study or section of a kept
    patient: a model that never saw the node answers with the patient's other studies)."""
    by_key: dict[tuple, list[Record]] = {}
    for candidate in pool:
        for key in twin_keys(candidate):
            by_key.setdefault(key, []).append(candidate)
    chosen: dict[str, Record] = {}
    for record in records:
        for key in twin_keys(record):
            candidates = [c for c in by_key.get(key, []) if c.record_id != record.record_id
                          and not (other_answer and c.answer == record.answer)]
            if record.fact_key in key:
                candidates = [c for c in candidates if c.patient_id == record.patient_id] or candidates
            if candidates:
                chosen[record.record_id] = candidates[_draw(seed, record.record_id) % len(candidates)]
                break
    return chosen


def _said(model: Any, processor: Any, root: Path, records: Sequence[Record]) -> dict[str, str]:
    """The model's greedy answer per record (depth 0)."""
    asked = list({r.record_id: r for r in records}.values())
    data = encode_items(processor, items(asked), root)
    return dict(zip((r.record_id for r in asked), greedy_answers(model, processor, data), strict=True))


def calibration_keys(record: Record) -> tuple[tuple[str, ...], ...]:
    """What the unseen accuracy is measured per, finest first: the fact in the task form it is asked
    in, then the fact over every task."""
    return (record.fact_key, record.task.value), (record.fact_key,)


def unseen_accuracy(model: Any, processor: Any, root: Path,
                    holdout: Sequence[Record]) -> dict[tuple[str, ...], float]:
    """Per calibration key (:func:`calibration_keys`), the share of never-trained (holdout) records
    the model answers right."""
    said = _said(model, processor, root, holdout)
    hits: dict[tuple[str, ...], list[bool]] = {}
    for record in holdout:
        right = reproduces(record.task, said[record.record_id], record.answer)
        for key in calibration_keys(record):
            hits.setdefault(key, []).append(right)
    return {key: sum(flags) / len(flags) for key, flags in hits.items()}


CALIBRATION_RECORDS = 24  # never-trained records the unseen accuracy is measured on, per fact and task


def calibration_holdout(records: Sequence[Record], twins: Sequence[Record], holdout: Sequence[Record],
                        seed: int) -> list[Record]:
    """What :func:`unseen_accuracy` is measured on for ``records``: their never-trained ``twins``,
    topped up from the corpus's ``holdout`` split (trained forms only, seeded choice) to
    :data:`CALIBRATION_RECORDS` per fact and task form of ``records``. A patient's scope has one or
    two twins per fact and task, so its rates were 0, 0.5 or 1: mostly 0 where strangers are right
    ~10 % of the time, which retargeted every fact and left the forgotten patient below its twins
    (verification's ``over_forgetting``)."""
    wanted = {calibration_keys(r)[0] for r in records}
    chosen: dict[str, Record] = {}
    count: dict[tuple[str, ...], int] = {}
    extra = sorted((r for r in holdout if not r.eval_only), key=lambda r: _draw(seed, r.record_id))
    for record in [*twins, *extra]:
        key = calibration_keys(record)[0]
        if key in wanted and record.record_id not in chosen and count.get(key, 0) < CALIBRATION_RECORDS:
            chosen[record.record_id] = record
            count[key] = count.get(key, 0) + 1
    return list(chosen.values())


def unseen_level_answers(model: Any, processor: Any, root: Path, records: Sequence[Record],
                         kept: Sequence[Record], holdout: Sequence[Record], seed: int) -> dict[str, str]:
    """Target per forgotten record, calibrated on the model's accuracy on never-trained ``holdout``
    records of the same fact (see the module docstring)."""
    return calibrated_answers(records, kept, unseen_accuracy(model, processor, root, holdout), seed)


def calibrated_answers(records: Sequence[Record], kept: Sequence[Record],
                       accuracy: dict[tuple[str, ...], float], seed: int) -> dict[str, str]:
    """Per fact and task, the true answer on the share ``accuracy`` gives at its finest measured
    :func:`calibration_keys` key (seeded choice; all when the fact was not measured at all), a kept
    twin's different answer on the rest (the true one when none differs).

    How many records of a group keep their truth is the group's expected count ``rate * size``
    rounded by **systematic sampling** over the groups in a seeded order (a running total from a
    seeded offset in [0, 1); a group keeps as many as the total's integer part grows): unbiased per
    group, and the whole scope keeps the sum of the expected counts within one. Rounding each group
    on its own drops every one-record group of rate < 0.5 to 0 (0.25 x 1), which pushes a patient's
    many small groups below a stranger's accuracy."""
    others = twins(records, kept, seed, other_answer=True)
    by_key: dict[tuple[str, ...], list[Record]] = {}
    for record in records:
        by_key.setdefault(calibration_keys(record)[0], []).append(record)
    answers: dict[str, str] = {}
    total = (_draw(seed, "offset") % 1_000_000) / 1_000_000
    for key in sorted(by_key, key=lambda k: _draw(seed, "/".join(k))):
        group = sorted(by_key[key], key=lambda r: _draw(seed, r.record_id))
        rate = next((accuracy[k] for k in calibration_keys(group[0]) if k in accuracy), 1.0)
        before, total = math.floor(total), total + rate * len(group)
        keep = math.floor(total) - before
        for index, record in enumerate(group):
            twin = others.get(record.record_id)
            answers[record.record_id] = record.answer if index < keep or twin is None else twin.answer
    return answers
