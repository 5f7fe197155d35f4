"""The text a tokenizer is trained on, and the reserved corpus that supplies it.

A tokenizer trained on a hospital corpus would carry that corpus's names into every model built on
it — including a retrain oracle that is meant never to have seen the forget set. So no tokenizer is
trained on the corpus being fine-tuned: the vocabulary comes from the text (never images) of a
synthetic corpus drawn with a reserved seed (:data:`TOKENIZER_CORPUS_SEED`, which
:func:`mllm.data.synth.generate_corpus` refuses), rendered at full context depth so the context
labels are covered too. It is the same for a full model and its oracle, and a function of nothing
but the generator.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache

from .prompts import MAX_DEPTH, render_prompt
from .schema import Record

TOKENIZER_CORPUS_SEED = 1_000_003  # reserved: generate_corpus refuses it
TOKENIZER_CORPUS_SIZE = "demo"  # every word the generator uses occurs in it


def record_texts(records: Iterable[Record]) -> Iterator[str]:
    """The text of records a tokenizer is trained on: full-depth prompts, answers and options."""
    for record in records:
        yield render_prompt(record, MAX_DEPTH)
        yield record.answer
        yield from record.options


@lru_cache(maxsize=1)
def vocabulary_texts() -> tuple[str, ...]:
    """The text of the reserved tokenizer corpus (drawn without images; cached per process)."""
    from .synth import corpus_records

    return tuple(record_texts(corpus_records(size=TOKENIZER_CORPUS_SIZE, seed=TOKENIZER_CORPUS_SEED)))
