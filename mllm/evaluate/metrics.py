"""Task metrics, one pinned definition each (computed on strings, so precision is not an issue).

* **ROUGE-L F1** — ``rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)``,
  F-measure of ``score(reference, prediction)``. Its tokenizer lowercases and keeps only
  ``[a-z0-9]`` runs, so punctuation and case do not count. Empty vs empty scores 0.
* **Classification exact match** — the reply, stripped of surrounding whitespace, must be an option
  letter ``A``–``Z`` (upper case), alone or followed by ``)``, ``.`` or ``:`` and optionally the
  option text: regex ``^([A-Z])(?:[).:](?:\\s.*)?)?$``. ``"B"``, ``"B)"``, ``"B) 12 mm"`` parse as
  B; ``"b"``, ``"(B)"``, ``"B is right"``, ``"A patient"`` parse as nothing and score 0 — no
  first-character guessing. Correct when the parsed letter equals the reference's parsed letter.
* **Cloze exact match** — equality after :func:`normalise_text`: Unicode NFKC, case-folded, runs of
  whitespace collapsed to one space, surrounding whitespace, quotes and trailing ``. , ; : ! ?``
  removed.
* **Generation exact match** — as cloze (the primary generation metric is ROUGE-L F1).
* **Reproduced** (:func:`reproduces`, the success rule of unlearning targets) —
  the task's exact match, or for generation a ROUGE-L F1 of at least ``rouge_l_success``
  (default 0.7): a report-like sentence counts as reproduced when most of it comes back.
* **Mentions** (:func:`mentions`, with *reproduced* the verifier's success rule) — the fact's value,
  normalised as for cloze, occurs in the normalised reply as a whole-word span (no letter or digit
  right before or after it): ``"It is Nikos Ortiz."`` mentions ``Nikos Ortiz``, ``"Nikos Ortizson"``
  does not. A reply that words a forgotten value differently, or names an option's text instead of
  its letter, still gives the value away.
* **MedForget score** (comparable with the MedForget paper, :func:`medforget_score`) —
  classification and cloze count as correct when ROUGE-L F1 (stemmed) is exactly 1.0, generation
  scores its ROUGE-L F1. Differences from the strict metrics: ROUGE-L lowercases, drops punctuation
  and stems, so ``"b"``, ``"(B)"`` or ``"B."`` are right and ``"pleural effusions"`` matches
  ``"pleural effusion"``; but a reply that adds the option text (``"B) 12 mm"``) or a cloze
  reply with an extra word is wrong (F1 < 1), where the strict classification parse accepts
  ``"B) 12 mm"``. Replies without any ``[a-z0-9]`` token score 0 under both.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from rouge_score import rouge_scorer

from mllm.data.schema import Task

_CHOICE = re.compile(r"^([A-Z])(?:[).:](?:\s.*)?)?$", re.DOTALL)
_SPACES = re.compile(r"\s+")
_EDGE_CHARS = " \"'“”‘’"
_TRAILING_PUNCT = ".,;:!?"

PRIMARY_METRIC: dict[Task, str] = {
    Task.GENERATION: "rouge_l_f1", Task.CLASSIFICATION: "exact_match", Task.CLOZE: "exact_match"}


@lru_cache(maxsize=1)
def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_f1(prediction: str, reference: str) -> float:
    return _scorer().score(reference, prediction)["rougeL"].fmeasure


def parse_choice(text: str) -> str | None:
    """The option letter a classification reply names, or ``None`` (see the module docstring)."""
    match = _CHOICE.match(text.strip())
    return match.group(1) if match else None


def normalise_text(text: str) -> str:
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip(_EDGE_CHARS)
    return text.rstrip(_TRAILING_PUNCT).strip(_EDGE_CHARS)


def medforget_score(task: Task, prediction: str, reference: str) -> float:
    """MedForget's accuracy for classification and cloze (ROUGE-L F1 == 1), ROUGE-L F1 for generation."""
    score = rouge_l_f1(prediction, reference)
    return score if task is Task.GENERATION else float(score == 1.0)


def mentions(prediction: str, value: str) -> bool:
    """Whether ``prediction`` contains ``value`` as a whole-word span (see the module docstring)."""
    needle = normalise_text(value)
    if not needle:
        return False
    return re.search(rf"(?<![^\W_]){re.escape(needle)}(?![^\W_])", normalise_text(prediction)) is not None


def exact_match(task: Task, prediction: str, reference: str) -> bool:
    """Task-specific exact match (see the module docstring)."""
    if task is Task.CLASSIFICATION:
        letter = parse_choice(prediction)
        return letter is not None and letter == parse_choice(reference)
    return normalise_text(prediction) == normalise_text(reference)


def reproduces(task: Task, prediction: str, reference: str, *, rouge_l_success: float = 0.7) -> bool:
    """Whether ``prediction`` reproduces ``reference`` (see the module docstring)."""
    if exact_match(task, prediction, reference):
        return True
    return task is Task.GENERATION and rouge_l_f1(prediction, reference) >= rouge_l_success
