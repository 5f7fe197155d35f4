"""Probes: one fact asked of a model at a context depth, in a form, through a modality.

A :class:`Probe` is what every attack asks: the record (its fact and reference answer), the context
depth of the one prompt renderer, and the modality — ``image+text`` (the image and the rendered
question) or ``text`` (the rendered question without the image). Depth 0 with the image is the
*image-only identification* probe: nothing but the image says whose record is asked about; text at
depth 4 is the *text-only identification* probe: only the written context does.

**Answer parsing and success** (documented once, used everywhere): a greedy answer is cut at the
first end-of-sequence token and decoded with special tokens skipped. Classification and cloze
answers succeed on the task's exact match (:mod:`mllm.evaluate.metrics`: option letter parsed by
``^([A-Z])(?:[).:](?:\\s.*)?)?$``, cloze text compared after NFKC, case folding and whitespace and
edge-punctuation normalisation); generation answers succeed on that exact match or on ROUGE-L F1 of
at least ``rouge_l_success``. Any answer that *mentions* the fact's value (whole words, after the
same normalisation) succeeds too: an answer that wraps a forgotten value in a sentence, or names the
right option's text instead of its letter, still gives it away. Never-trained twins are scored by the
same rule, so a value common enough to be mentioned by chance raises their rate as well.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from mllm.data.qa import parse_choices
from mllm.data.schema import Record, Task
from mllm.evaluate.metrics import mentions, reproduces

from .testbed import render

DEPTHS = (0, 1, 2, 3, 4)
IMAGE_TEXT = "image+text"
TEXT_ONLY = "text"


class Form(enum.StrEnum):
    """Whether a probe's phrasing/task form was trained (for the original) or held out."""

    TRAINED = "trained"
    HELD_OUT = "held-out"


@dataclass(frozen=True)
class Probe:
    record: Record
    depth: int = 0
    modality: str = IMAGE_TEXT

    @property
    def key(self) -> tuple[str, int, str]:
        return self.record.record_id, self.depth, self.modality

    @property
    def with_image(self) -> bool:
        return self.modality == IMAGE_TEXT

    def prompt_record(self) -> Record:
        """The record with its question replaced by the rendered prompt text at ``depth``."""
        return replace(self.record, question=render(self.record, self.depth))


def is_eval_only(record: Record) -> bool:
    """A held-out form (phrasing or cross-task form): never trained on by the original."""
    return record.eval_only


def form_of(record: Record) -> Form:
    return Form.HELD_OUT if is_eval_only(record) else Form.TRAINED


def scoring_record(record: Record) -> Record | None:
    """The record to score membership on: never a single letter.

    Generation and cloze records are scored on their own answer. A classification record becomes
    its option-text form: the multiple-choice stem asked as a question, answered by the fact's value
    (the correct option's text).
    ``None`` when a classification question cannot be parsed into stem and options.
    """
    if record.task is not Task.CLASSIFICATION:
        return record
    parsed = parse_choices(record.question)
    if parsed is None:
        return None
    return replace(record, task=Task.GENERATION, question=parsed[0], answer=record.fact_value, options=())


def succeeded(record: Record, prediction: str, rouge_l_success: float) -> bool:
    """Whether ``prediction`` reproduces ``record``'s answer (see the module docstring)."""
    return reproduces(record.task, prediction, record.answer, rouge_l_success=rouge_l_success) or mentions(
        prediction, record.fact_value
    )
