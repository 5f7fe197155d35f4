"""Evaluate named record groups (forget / retain / siblings / holdout ...) and tabulate the scores.

The caller names the groups; every record is answered once per context depth (prompts rendered by
:func:`mllm.data.prompts.render_prompt`; greedy or teacher-forced, see
:mod:`mllm.evaluate.generate`) and scored with ROUGE-L F1, the task's exact match and the
MedForget-comparable score (:mod:`mllm.evaluate.metrics`). Tables average per combination of
grouping keys — ``group``, ``depth`` or any record field (``form``, ``eval_only``, ``fact_key``,
``fact_kind``, ``level`` ...); by default group × task × hierarchy level.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mllm.data.prompts import render_prompt
from mllm.data.schema import Record
from mllm.train.encode import encode_records

from .generate import BatchProgress, greedy_answers, teacher_forced_answers
from .metrics import PRIMARY_METRIC, exact_match, medforget_score, rouge_l_f1

Mode = Literal["greedy", "teacher_forced"]
DEFAULT_KEYS = ("group", "task", "level")


@dataclass(frozen=True)
class ScoredAnswer:
    group: str
    record: Record
    prediction: str
    exact_match: bool
    rouge_l_f1: float
    medforget: float = 0.0
    depth: int = 0

    def key(self, name: str) -> str:
        """``group``, ``depth`` or any record field (enum fields give their value; ``None`` gives ``-``)."""
        value = {"group": self.group, "depth": self.depth}[name] if name in ("group", "depth") \
            else getattr(self.record, name)
        if value is None:
            return "-"
        return value.value if isinstance(value, enum.Enum) else str(value)


@dataclass(frozen=True)
class SummaryRow:
    keys: dict[str, str]
    n: int
    exact_match: float
    rouge_l_f1: float
    medforget: float = float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {**self.keys, "n": self.n, "exact_match": self.exact_match, "rouge_l_f1": self.rouge_l_f1,
                "medforget": self.medforget}


def answer_records(model: Any, processor: Any, root: Path, records: Sequence[Record], *,
                   depth: int = 0, mode: Mode = "greedy", batch_size: int = 32, max_new_tokens: int = 128,
                   progress: BatchProgress | None = None) -> list[str]:
    """The model's answers to ``records`` asked at context ``depth`` (images relative to ``root``)."""
    data = encode_records(processor, records, root, prompts=[render_prompt(r, depth) for r in records])
    if mode == "greedy":
        return greedy_answers(model, processor, data, batch_size=batch_size, max_new_tokens=max_new_tokens,
                              progress=progress)
    return teacher_forced_answers(model, processor, data, batch_size=batch_size, progress=progress)


def score_answer(group: str, record: Record, prediction: str, depth: int = 0) -> ScoredAnswer:
    return ScoredAnswer(group=group, record=record, prediction=prediction,
                        exact_match=exact_match(record.task, prediction, record.answer),
                        rouge_l_f1=rouge_l_f1(prediction, record.answer),
                        medforget=medforget_score(record.task, prediction, record.answer), depth=depth)


def evaluate_groups(model: Any, processor: Any, root: Path, groups: Mapping[str, Sequence[Record]], *,
                    depths: Sequence[int] = (0,), mode: Mode = "greedy", batch_size: int = 32,
                    max_new_tokens: int = 128, progress: BatchProgress | None = None) -> list[ScoredAnswer]:
    """Answer every distinct record once per depth, then score it in each group that contains it."""
    unique = list({record.record_id: record for records in groups.values() for record in records}.values())
    scored: list[ScoredAnswer] = []
    for depth in depths:
        answers = answer_records(model, processor, root, unique, depth=depth, mode=mode,
                                 batch_size=batch_size, max_new_tokens=max_new_tokens, progress=progress)
        by_id = {record.record_id: answer for record, answer in zip(unique, answers, strict=True)}
        scored += [score_answer(name, record, by_id[record.record_id], depth)
                   for name, records in groups.items() for record in records]
    return scored


def summarise(scored: Sequence[ScoredAnswer], keys: Sequence[str] = DEFAULT_KEYS) -> list[SummaryRow]:
    """Mean exact match and ROUGE-L F1 per combination of ``keys``, in first-seen order."""
    buckets: dict[tuple[str, ...], list[ScoredAnswer]] = {}
    for item in scored:
        buckets.setdefault(tuple(item.key(name) for name in keys), []).append(item)
    return [SummaryRow(keys=dict(zip(keys, values, strict=True)), n=len(items),
                       exact_match=sum(i.exact_match for i in items) / len(items),
                       rouge_l_f1=sum(i.rouge_l_f1 for i in items) / len(items),
                       medforget=sum(i.medforget for i in items) / len(items))
            for values, items in buckets.items()]


def markdown_table(rows: Sequence[SummaryRow]) -> str:
    if not rows:
        return "(no records)\n"
    keys = list(rows[0].keys)
    lines = ["| " + " | ".join([*keys, "n", "exact match", "ROUGE-L F1", "MedForget"]) + " |",
             "|" + "---|" * (len(keys) + 4)]
    for row in rows:
        cells = [*row.keys.values(), str(row.n), f"{row.exact_match:.3f}", f"{row.rouge_l_f1:.3f}",
                 f"{row.medforget:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def evaluation_json(scored: Sequence[ScoredAnswer], *, mode: Mode,
                    keys: Sequence[str] = DEFAULT_KEYS) -> dict[str, Any]:
    """The JSON document ``oblivio eval --json`` prints: metric definitions, table, per-record answers."""
    return {
        "mode": mode,
        "metrics": {"exact_match": "task-specific, see mllm.evaluate.metrics",
                    "rouge_l_f1": "rouge-score rougeL F-measure, use_stemmer=True",
                    "medforget": "classification / cloze: ROUGE-L F1 == 1; generation: ROUGE-L F1",
                    "primary": {task.value: metric for task, metric in PRIMARY_METRIC.items()}},
        "table": [row.as_dict() for row in summarise(scored, keys)],
        "answers": [{"group": s.group, "record_id": s.record.record_id, "depth": s.depth,
                     "prediction": s.prediction, "exact_match": s.exact_match, "rouge_l_f1": s.rouge_l_f1,
                     "medforget": s.medforget} for s in scored],
    }
