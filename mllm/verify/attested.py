"""Attested answers: whether an answer is one the corpus holds for the kind of fact it was asked.

A model that never saw a record answers it with a value it was trained on for that kind of fact —
another patient's name for a name, a finding for a finding (:mod:`mllm.unlearn.targets`) — right or
wrong. An answer that no record of the corpus holds for the record's fact key and task (``"I don't
know."`` taught into the weights, a date given for a name, a phrase of no record) is
**unattested**: where a candidate gives such answers in scope and not to never-trained twins asked
the same way, the answers themselves tell that the node was removed (``unattested_answers``,
:mod:`mllm.verify.attacks.reconstruction`).

An answer is attested when it succeeds (:func:`mllm.verify.probes.succeeded`, the one success rule)
against any corpus record of the same fact key and task — as an exact match, a ROUGE-L match for
generation, or a mention of that record's value; a multiple-choice answer is attested when it names
any option letter or option text the corpus holds for that fact key.
"""

from __future__ import annotations

from collections.abc import Iterable

from mllm.data.schema import Record, Task
from mllm.evaluate.metrics import normalise_text

from .probes import succeeded


class AnswerBook:
    """The answers and values the corpus holds per fact key and task."""

    def __init__(self, records: Iterable[Record], rouge_l_success: float) -> None:
        self.rouge_l_success = rouge_l_success
        self._entries: dict[tuple[str, Task], dict[tuple[str, str], Record]] = {}
        self._exact: dict[tuple[str, Task], set[str]] = {}
        self._seen: dict[tuple[str, Task, str], bool] = {}
        for record in records:
            kind = (record.fact_key, record.task)
            self._entries.setdefault(kind, {}).setdefault((record.answer, record.fact_value), record)
            if record.task is not Task.CLASSIFICATION:  # a letter is matched by its parsed form
                self._exact.setdefault(kind, set()).update(
                    normalise_text(text) for text in (record.answer, record.fact_value)
                )

    def attested(self, record: Record, answer: str) -> bool:
        """Whether ``answer`` is one the corpus holds for ``record``'s fact key and task."""
        kind = (record.fact_key, record.task)
        key = (*kind, answer)
        if key not in self._seen:
            self._seen[key] = normalise_text(answer) in self._exact.get(kind, ()) or any(
                succeeded(entry, answer, self.rouge_l_success)
                for entry in self._entries.get(kind, {}).values()
            )
        return self._seen[key]
