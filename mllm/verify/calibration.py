"""The broken candidates the verdict is calibrated and tested on, each built the way such a model
comes about (retraining, fine-tuning, gradient ascent, a guard) — never by editing numbers.

:func:`build_candidate` makes one from the original and the retrain oracle of a scope;
``EXPECTED_FAILURES`` names, per candidate, the checks that must fail (its failure mode) and the
checks that must not. The must-hold tests (``tests/mllm/verify``) and ``benchmarks/verification.py``
(the confusion table) use the same builders.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from mllm.data.prompts import training_prompts
from mllm.data.schema import Corpus, Level, Record, Task
from mllm.data.scope import ScopeGroups
from mllm.models.families import family_of
from mllm.models.loader import LoadedModel
from mllm.models.specs import ReferenceSpec
from mllm.train.encode import encode_records
from mllm.train.logprobs import answer_nll
from mllm.train.loop import ShuffledBatches, TrainConfig, Trainer
from mllm.train.recipe import fresh_reference, train_on_records
from mllm.train.replay import replay_records

from .probes import DEPTHS, Probe, is_eval_only

FINE_TUNE = TrainConfig(epochs=3, batch_size=16, lr=1e-3, seed=0)
DEPTH0_TUNE = TrainConfig(epochs=6, batch_size=16, lr=1e-3, seed=0)
ASCENT_WRECK = TrainConfig(steps=8, batch_size=16, lr=2e-3, warmup_ratio=0.0, seed=0)
ASCENT_COLLAPSE = TrainConfig(steps=30, batch_size=16, lr=3e-3, warmup_ratio=0.0, seed=0)

PASSING = "retrain-oracle"
# candidate -> (checks that must fail: its failure mode, checks that must not fail)
EXPECTED_FAILURES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "no-op": (
        frozenset({"forget_depth0", "membership_inference", "relearning_forget"}),
        frozenset({"suppression", "collapse"}),
    ),
    "suppression-wrapper": (
        frozenset({"suppression", "forget_depth0"}),
        frozenset({"collapse", "far_retain"}),
    ),
    # the remembered half leaks at every depth; at depth 0 alone a 10-fact study's interval can still
    # reach 0 (the tiny test world: excess 0.33, 95 % -0.03..0.70), the context depths decide it
    "half-forgotten": (frozenset({"forget_context"}), frozenset({"collapse"})),
    "depth0-only": (frozenset({"forget_context"}), frozenset({"forget_depth0"})),
    # the node's own facts kept, its descendants' forgotten (a patient's name and birth date still
    # answered after their studies are gone): diluted per depth by the descendants' many facts
    "level-leak": (frozenset({"forget_levels"}), frozenset({"collapse", "child_leakage"})),
    # forgotten in multiple choice and cloze, the generation answers kept: per depth the task it answers
    # below its twins cancels the one it leaks (tiny test world: generation excess 0.77, depths 0.10-0.13)
    "task-leak": (frozenset({"forget_tasks"}), frozenset({"collapse", "over_forgetting"})),
    # the truth in other words: every forgotten value inside a sentence (an option's text, not its
    # letter) - exact match alone would score it as forgotten
    "reworded-leak": (
        frozenset({"forget_depth0", "forget_context"}),
        frozenset({"collapse", "over_forgetting"}),
    ),
    # "I don't know." taught into the weights (no wrapper for ``suppression`` to expose): answers no
    # record holds - in scope where a never-trained twin gets a value (demo corpus), or to every patient
    # the candidate does not know where the refusal spread (the tests' world)
    "refusal-tuned": (frozenset({"unattested_answers"}), frozenset({"suppression", "collapse"})),
    "over-forgetting": (
        frozenset({"over_forgetting"}),
        frozenset({"forget_depth0", "forget_context", "collapse"}),
    ),
    "collapsed": (frozenset({"collapse", "far_retain"}), frozenset()),
    "ga-wrecks-utility": (frozenset({"utility_likelihood"}), frozenset()),
    "sibling-damaged": (frozenset({"sibling_damage"}), frozenset({"forget_depth0", "forget_context"})),
    # the original taught the never-trained twins: forget and reference alike known, every comparison
    # of the two passes while the scope is still answered
    "reference-taught": (frozenset({"reference_contamination"}), frozenset({"collapse", "suppression"})),
}
CANDIDATES = (PASSING, *EXPECTED_FAILURES)


def at_depths(records: Sequence[Record]) -> list[Record]:
    """Each record at every context depth (the prompt text in ``question``)."""
    return [Probe(r, d).prompt_record() for r in records for d in DEPTHS]


def as_trained(records: Sequence[Record], seed: int = 0) -> list[Record]:
    """Each record at its training depth (the testbed's depth mix)."""
    return [replace(r, question=p) for r, p in zip(records, training_prompts(records, seed), strict=True)]


def in_memory(model: Any, processor: Any, corpus: Corpus) -> LoadedModel:
    """A model held in memory, handed over as the loader would (no directory of its own)."""
    return LoadedModel(
        model=model.eval(), processor=processor, path=corpus.root, metadata=None, family=family_of(processor)
    )


def fit(
    model: Any,
    processor: Any,
    corpus: Corpus,
    records: Sequence[Record],
    config: TrainConfig,
    *,
    ascent: bool = False,
) -> None:
    """Fine-tune ``model`` in place on ``records`` (prompt text in ``question``); ``ascent``: maximise
    the answer loss instead (gradient ascent)."""
    source = ShuffledBatches(encode_records(processor, records, corpus.root), config.batch_size, config.seed)
    trainer = Trainer(model, config, source)
    if ascent:
        trainer.loss = lambda batch: -answer_nll(model, batch)  # type: ignore[method-assign]
    trainer.fit()


def train_reference(
    corpus: Corpus, records: Sequence[Record], spec: ReferenceSpec, config: TrainConfig, *, replay: int = 0
) -> LoadedModel:
    """A fresh reference model trained on ``records`` at the testbed's depth mix as ``config`` draws it
    (original / oracle), with ``replay`` public teaching-file cases mixed in as the training recipe
    does (:mod:`mllm.train.replay`)."""
    model, processor = fresh_reference(spec)
    with replay_records(replay, config.seed) as public:
        model, _ = train_on_records(model, processor, corpus.root, [*records, *public], config)
    return in_memory(model, processor, corpus)


def derived(
    base: LoadedModel, corpus: Corpus, records: Sequence[Record], config: TrainConfig, *, ascent: bool = False
) -> LoadedModel:
    """A fine-tuned copy of ``base``."""
    model = copy.deepcopy(base.model)
    fit(model, base.processor, corpus, records, config, ascent=ascent)
    return in_memory(model, base.processor, corpus)


def reworded(records: Sequence[Record]) -> list[Record]:
    """Each record answered by its fact's value in a sentence (a classification by its option's text)."""
    return [replace(record, answer=f"It is {record.fact_value}.") for record in records]


REFUSAL = "I don't know."


def refusals(records: Sequence[Record]) -> list[Record]:
    """Each record answered by a refusal (:data:`REFUSAL`), a classification included."""
    return [replace(record, answer=REFUSAL) for record in records]


def wrong_answers(
    records: Sequence[Record], pool: Sequence[Record], avoid: Sequence[Record] = ()
) -> list[Record]:
    """Each record answered wrong: another answer of the same task from ``pool`` (trained records, never
    holdout twins, whose reference they would distort), never one that a record of ``avoid`` holds (a
    common value such as a normal findings sentence, taught to a sibling, would teach the forgotten
    study's own value back), or another letter."""
    held = {r.answer for r in avoid}
    out = []
    for i, record in enumerate(records):
        if record.task is Task.CLASSIFICATION:
            letters = "ABCD"[: len(record.options)].replace(record.answer, "")
            out.append(replace(record, answer=letters[i % len(letters)]))
            continue
        same = [r.answer for r in pool if r.task is record.task and r.answer != record.answer
                and r.answer not in held]
        out.append(replace(record, answer=same[i % len(same)] if same else "unknown"))
    return out


class RefusingWrapper(torch.nn.Module):
    """A suppression-only "unlearning": the original's weights behind a guard that refuses in scope.

    ``generate`` ends the answer at once for any prompt showing a forget image or an identifier of
    the forgotten records; ``forward`` (the weights) is the original's, untouched.
    """

    def __init__(self, inner: Any, processor: Any, corpus: Corpus, forget: Sequence[Record]) -> None:
        super().__init__()
        self.inner = inner
        self.tokenizer = processor.tokenizer
        self.stop = family_of(processor).end_of_turn_id(processor.tokenizer)
        data = encode_records(processor, forget, corpus.root)
        self.blocked_images = [v["pixel_values"] for v in data.images.values()]
        self.blocked_text = sorted({r.study_id for r in forget} | {r.patient_id for r in forget})

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner(*args, **kwargs)

    def get_input_embeddings(self) -> Any:
        return self.inner.get_input_embeddings()

    def _in_scope(self, row: int, input_ids: torch.Tensor, pixel_values: torch.Tensor | None) -> bool:
        if any(marker in self.tokenizer.decode(input_ids[row]) for marker in self.blocked_text):
            return True
        return pixel_values is not None and any(
            torch.equal(pixel_values[row : row + 1], image) for image in self.blocked_images
        )

    @torch.no_grad()
    def generate(
        self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        out = self.inner.generate(input_ids=input_ids, pixel_values=pixel_values, **kwargs)
        for row in range(input_ids.shape[0]):
            if self._in_scope(row, input_ids, pixel_values):
                out[row, input_ids.shape[1] :] = self.stop
        return out


def applicable(name: str, scope: ScopeGroups) -> bool:
    """Whether the candidate ``name`` can be built for ``scope``: ``sibling-damaged`` needs a sibling
    (an institution has none: the other institutions are far retain)."""
    return name != "sibling-damaged" or any(scope.siblings.values())


def build_candidate(
    name: str, *, corpus: Corpus, scope: ScopeGroups, original: LoadedModel, oracle: LoadedModel
) -> LoadedModel:
    """The candidate ``name`` (one of :data:`CANDIDATES`) for the request ``scope``; ``ValueError`` when
    it is not :func:`applicable` there."""
    if not applicable(name, scope):
        raise ValueError(f"candidate {name!r} does not apply to this scope")
    forget = list(scope.forget)
    keep = as_trained([*scope.retain, *scope.all_siblings, *scope.shared])
    wrong = wrong_answers(forget, list(scope.retain))
    if name == "retrain-oracle":
        return oracle
    if name == "no-op":
        return original
    if name == "suppression-wrapper":
        wrapper = RefusingWrapper(original.model, original.processor, corpus, forget)
        return in_memory(wrapper, original.processor, corpus)
    if name == "half-forgotten":  # the oracle taught half of the scope again: only half forgotten
        return derived(oracle, corpus, at_depths(forget[: len(forget) // 2]) + keep, FINE_TUNE)
    if name == "task-leak":  # the oracle taught the scope's generation answers again
        generation = [r for r in forget if r.task is Task.GENERATION]
        return derived(oracle, corpus, at_depths(generation) + keep, FINE_TUNE)
    if name == "level-leak":  # the oracle taught the node's own facts again
        own = [r for r in forget if r.level is scope.node.level]
        return derived(oracle, corpus, at_depths(own) + keep, FINE_TUNE)
    if name == "depth0-only":  # answers like a stranger without context, the truth with it
        depth0 = [Probe(r, 0).prompt_record() for r in wrong] * 4
        context = [Probe(r, d).prompt_record() for r in forget for d in DEPTHS[1:]]
        return derived(original, corpus, depth0 + context + keep, DEPTH0_TUNE)
    if name == "reworded-leak":
        return derived(original, corpus, at_depths(reworded(forget)) + keep, FINE_TUNE)
    if name == "refusal-tuned":
        return derived(original, corpus, at_depths(refusals(forget)) + keep, FINE_TUNE)
    if name == "over-forgetting":  # trained to answer wrong: below a stranger's chance and image reading
        return derived(original, corpus, at_depths(wrong) + keep, FINE_TUNE)
    if name == "collapsed":
        return derived(original, corpus, at_depths(forget), ASCENT_COLLAPSE, ascent=True)
    if name == "ga-wrecks-utility":
        return derived(original, corpus, at_depths(forget), ASCENT_WRECK, ascent=True)
    if name == "sibling-damaged":  # the node is gone (oracle) but its nearest sibling (study) was hit too
        nearest = max((level for level, records in scope.siblings.items() if records), key=list(Level).index)
        damaged = at_depths(wrong_answers(list(scope.siblings[nearest]), list(scope.retain), forget))
        return derived(oracle, corpus, damaged + keep, FINE_TUNE)
    if name == "reference-taught":
        twins = [r for r in scope.holdout if not is_eval_only(r)]
        return derived(original, corpus, at_depths(twins) + keep, FINE_TUNE)
    raise KeyError(f"unknown candidate {name!r}; choose one of: {', '.join(CANDIDATES)}")
