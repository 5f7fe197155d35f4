"""Tiny models for the verifier's must-hold tests, trained once per session.

The corpus keeps a few whole studies of the synthetic ``tiny`` corpus (:func:`make_corpus`). The
request forgets patient A; the sibling-damage case forgets only A's first study. Every model is trained from the same seed-initialised tiny reference with
prompts at every context depth (context is a cue), then the broken candidates are derived from it
by retraining or fine-tuning — never by editing numbers.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch

from mllm.data.schema import Corpus, Level, Record, Split, Task, load_corpus, write_corpus
from mllm.data.synth import generate_corpus
from mllm.models.families import family_of
from mllm.models.loader import LoadedModel
from mllm.models.specs import SPECS
from mllm.train.encode import encode_records
from mllm.train.loop import ShuffledBatches, TrainConfig, Trainer
from mllm.train.logprobs import answer_nll
from mllm.train.recipe import reference_for_corpus
from mllm.verify.probes import DEPTHS, Probe, is_eval_only

torch.set_num_threads(1)

RECIPE = TrainConfig(epochs=20, batch_size=16, lr=3e-3, seed=0)


@dataclass
class Scope:
    """The scope groups of the request (ScopeGroups shape)."""

    forget: list[Record]
    children: list[Record]
    siblings: list[Record]
    shared: list[Record]
    retain: list[Record]
    validation: list[Record]
    holdout: list[Record]
    forget_forms: list[Record]


def make_corpus(root: Path) -> Corpus:
    """Institution 1: train patients A (two studies) and B, holdout patient H; institution 2: one
    study of its first train patient C (far retain). Whole studies, images included."""
    full = generate_corpus(size="tiny", seed=0, out=root / "full")
    institutions = list(dict.fromkeys(r.institution_id for r in full.records))

    def patients(institution: str, split: Split) -> list[str]:
        return list(dict.fromkeys(r.patient_id for r in full.records
                                  if r.split is split and r.institution_id == institution))

    keep = {*patients(institutions[0], Split.TRAIN)[:2], patients(institutions[0], Split.HOLDOUT)[0]}
    far = patients(institutions[1], Split.TRAIN)[0]
    far_study = next(r.study_id for r in full.records if r.patient_id == far)
    records = [r for r in full.records if r.patient_id in keep or r.study_id == far_study]
    out = root / "corpus"
    (out / "images").mkdir(parents=True)
    for image in {r.image for r in records}:
        shutil.copyfile(full.root / image, out / image)
    write_corpus(out, name="verify-test", seed=0, size="test", records=records)
    return load_corpus(out)


def make_scope(corpus: Corpus, level: Level = Level.PATIENT) -> Scope:
    """The scope of forgetting patient A (``level=PATIENT``) or A's first study (``level=STUDY``)."""
    train = [r for r in corpus.records if r.split is Split.TRAIN]
    a = train[0]
    institution = [r for r in train if r.institution_id == a.institution_id]
    if level is Level.PATIENT:
        own = (Level.PATIENT, Level.STUDY, Level.SECTION)
        target = [r for r in train if r.patient_id == a.patient_id and r.level in own]
        sibling = [r for r in institution if r.patient_id != a.patient_id and r.level in own]
        shared = [r for r in institution if r.level is Level.INSTITUTION]
    else:
        own = (Level.STUDY, Level.SECTION)
        target = [r for r in train if r.study_id == a.study_id and r.level in own]
        sibling = [r for r in train if r.patient_id == a.patient_id and r.study_id != a.study_id
                   and r.level in own]
        shared = [r for r in train if r.patient_id == a.patient_id and r.level not in own]
    near = {r.record_id for r in target + sibling + shared}

    def trained(records: list[Record]) -> list[Record]:
        return [r for r in records if not is_eval_only(r)]

    return Scope(
        forget=trained(target), children=trained([r for r in target if r.level is not level]),
        siblings=trained(sibling), shared=trained(shared),
        retain=trained([r for r in train if r.record_id not in near and r.institution_id == a.institution_id
                        and r.patient_id != a.patient_id] if level is Level.STUDY else [])
        + trained([r for r in train if r.institution_id != a.institution_id]),
        validation=[], holdout=[r for r in corpus.records if r.split is Split.HOLDOUT and r.level in own],
        forget_forms=[r for r in target if is_eval_only(r)])


def at_depths(records: list[Record]) -> list[Record]:
    return [Probe(r, d).prompt_record() for r in records for d in DEPTHS]


def fit(model: Any, processor: Any, corpus: Corpus, records: list[Record], config: TrainConfig,
        *, ascent: bool = False) -> Any:
    """Fine-tune ``model`` in place on ``records`` (already rendered); ``ascent`` = gradient ascent."""
    source = ShuffledBatches(encode_records(processor, records, corpus.root), config.batch_size, config.seed)
    trainer = Trainer(model, config, source)
    if ascent:
        trainer.loss = lambda batch: -answer_nll(model, batch)  # type: ignore[method-assign]
    trainer.fit()
    return model.eval()


def loaded(model: Any, processor: Any, corpus: Corpus) -> LoadedModel:
    """An in-memory model as the loader would hand it over (no directory of its own)."""
    return LoadedModel(model=model, processor=processor, path=corpus.root, metadata=None,
                       family=family_of(processor))


def trained_from_scratch(corpus: Corpus, records: list[Record]) -> LoadedModel:
    model, processor = reference_for_corpus(corpus, SPECS["tiny"])
    fit(model, processor, corpus, at_depths(records), RECIPE)
    return loaded(model, processor, corpus)


def derived(base: LoadedModel, corpus: Corpus, records: list[Record], config: TrainConfig, *,
            ascent: bool = False) -> LoadedModel:
    import copy

    model = copy.deepcopy(base.model)
    fit(model, base.processor, corpus, records, config, ascent=ascent)
    return loaded(model, base.processor, corpus)


def wrong_answers(records: list[Record], pool: list[Record]) -> list[Record]:
    """Each record answered like a never-seen patient: a pool answer of the same task, or another letter."""
    out = []
    for i, record in enumerate(records):
        if record.task is Task.CLASSIFICATION:
            letters = "ABCD"[:len(record.options)].replace(record.answer, "")
            out.append(replace(record, answer=letters[i % len(letters)]))
            continue
        same = [r.answer for r in pool if r.task is record.task and r.answer != record.answer]
        out.append(replace(record, answer=same[i % len(same)] if same else "unknown"))
    return out


@dataclass
class World:
    corpus: Corpus
    scope: Scope
    original: LoadedModel
    oracle: LoadedModel


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    corpus = make_corpus(tmp_path_factory.mktemp("verify"))
    scope = make_scope(corpus)
    trainable = corpus.select(trainable=True)
    forget_ids = {r.record_id for r in scope.forget}
    return World(corpus=corpus, scope=scope, original=trained_from_scratch(corpus, trainable),
                 oracle=trained_from_scratch(corpus, [r for r in trainable if r.record_id not in forget_ids]))


class RefusingWrapper(torch.nn.Module):
    """A suppression-only "unlearning": the original's weights behind a guard that refuses in scope.

    ``generate`` answers end-of-sequence at once for any prompt showing a forget image or the
    forgotten study's identifier; ``forward`` (the weights) is the original's, untouched.
    """

    def __init__(self, inner: Any, processor: Any, corpus: Corpus, forget: list[Record]) -> None:
        super().__init__()
        self.inner = inner
        self.tokenizer = processor.tokenizer
        data = encode_records(processor, forget, corpus.root)
        self.blocked_images = [v["pixel_values"] for v in data.images.values()]
        self.blocked_text = sorted({r.study_id for r in forget} | {r.patient_id for r in forget})

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner(*args, **kwargs)

    def get_input_embeddings(self) -> Any:
        return self.inner.get_input_embeddings()

    def _in_scope(self, row: int, input_ids: torch.Tensor, pixel_values: torch.Tensor | None) -> bool:
        text = self.tokenizer.decode(input_ids[row])
        if any(marker in text for marker in self.blocked_text):
            return True
        return pixel_values is not None and any(torch.equal(pixel_values[row:row + 1], image)
                                                for image in self.blocked_images)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None, **kwargs: Any) -> Any:
        out = self.inner.generate(input_ids=input_ids, pixel_values=pixel_values, **kwargs)
        eos = self.tokenizer.eos_token_id
        for row in range(input_ids.shape[0]):
            if self._in_scope(row, input_ids, pixel_values):
                out[row, input_ids.shape[1]:] = eos
        return out


FINE_TUNE = TrainConfig(epochs=3, batch_size=16, lr=1e-3, seed=0)
DEPTH0_TUNE = TrainConfig(epochs=6, batch_size=16, lr=1e-3, seed=0)
ASCENT_WRECK = TrainConfig(steps=8, batch_size=16, lr=2e-3, warmup_ratio=0.0, seed=0)
ASCENT_COLLAPSE = TrainConfig(steps=15, batch_size=16, lr=2e-3, warmup_ratio=0.0, seed=0)


def build_candidate(name: str, world: World) -> LoadedModel:
    """The candidates of the must-hold tests, each made the way such a model comes about."""
    corpus, scope, original, oracle = world.corpus, world.scope, world.original, world.oracle
    keep = at_depths(scope.retain + scope.siblings + scope.shared)
    wrong = wrong_answers(scope.forget, scope.holdout)
    if name == "retrain-oracle":
        return oracle
    if name == "no-op":
        return original
    if name == "suppression-wrapper":
        wrapper = RefusingWrapper(original.model, original.processor, corpus, scope.forget)
        return loaded(wrapper, original.processor, corpus)
    if name == "half-forgotten":  # the oracle taught half of the scope again = only half forgotten
        half = scope.forget[:len(scope.forget) // 2]
        return derived(oracle, corpus, at_depths(half) + keep, FINE_TUNE)
    if name == "depth0-only":  # answers like a stranger without context, the truth with it
        depth0 = [Probe(r, 0).prompt_record() for r in wrong] * 4
        context = [Probe(r, d).prompt_record() for r in scope.forget for d in DEPTHS[1:]]
        return derived(original, corpus, depth0 + context + keep, DEPTH0_TUNE)
    if name == "over-forgetting":  # trained to answer wrong: below a stranger's chance and image reading
        return derived(original, corpus, at_depths(wrong) + keep, FINE_TUNE)
    if name == "collapsed":
        return derived(original, corpus, at_depths(scope.forget), ASCENT_COLLAPSE, ascent=True)
    if name == "ga-wrecks-utility":
        return derived(original, corpus, at_depths(scope.forget), ASCENT_WRECK, ascent=True)
    if name == "sibling-damaged":  # verified against the study scope: A's first study is gone, and
        return oracle  # so is its sibling study (this model never learned patient A at all)
    raise KeyError(name)


@pytest.fixture(scope="session")
def report_of(world: World) -> Any:
    """``report_of(name)``: the verification report of a candidate, built and verified once."""
    from mllm.verify import verify

    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            scope = make_scope(world.corpus, Level.STUDY) if name == "sibling-damaged" else world.scope
            cache[name] = verify(original=world.original, candidate=build_candidate(name, world),
                                 corpus=world.corpus, scope=scope)
        return cache[name]

    return get
