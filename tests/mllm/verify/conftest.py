"""Tiny models for the verifier's must-hold tests, trained once per session.

The corpus keeps one institution's first two train patients (patient A: two studies, patient B:
one) and the never-trained holdout patient (two studies) of the synthetic ``tiny`` corpus. The request forgets
patient A's first study. Every model is trained from the same seed-initialised tiny reference with
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
    full = generate_corpus(size="tiny", seed=0, out=root / "full")
    institution = full.records[0].institution_id
    patients = {split: list(dict.fromkeys(r.patient_id for r in full.records
                                          if r.split is split and r.institution_id == institution))
                for split in Split}
    keep = {*patients[Split.TRAIN][:2], patients[Split.HOLDOUT][0]}
    records = [r for r in full.records if r.patient_id in keep]
    out = root / "corpus"
    (out / "images").mkdir(parents=True)
    for image in {r.image for r in records}:
        shutil.copyfile(full.root / image, out / image)
    write_corpus(out, name="verify-test", seed=0, size="test", records=records)
    return load_corpus(out)


def make_scope(corpus: Corpus) -> Scope:
    train = [r for r in corpus.records if r.split is Split.TRAIN]
    patient_a = train[0].patient_id
    studies = list(dict.fromkeys(r.study_id for r in train if r.patient_id == patient_a))
    own = (Level.STUDY, Level.SECTION)
    target = [r for r in train if r.study_id == studies[0]]
    sibling = [r for r in train if r.study_id == studies[1]]
    holdout = [r for r in corpus.records if r.split is Split.HOLDOUT and r.level in own]
    return Scope(
        forget=[r for r in target if r.level in own and not is_eval_only(r)],
        children=[r for r in target if r.level is Level.SECTION and not is_eval_only(r)],
        siblings=[r for r in sibling if r.level in own and not is_eval_only(r)],
        shared=[r for r in train if r.patient_id == patient_a and r.level not in own and not is_eval_only(r)],
        retain=[r for r in train if r.patient_id != patient_a and not is_eval_only(r)],
        validation=[], holdout=holdout,
        forget_forms=[r for r in target if r.level in own and is_eval_only(r)])


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


def trained_from_scratch(corpus: Corpus, records: list[Record]) -> LoadedModel:
    model, processor = reference_for_corpus(corpus, SPECS["tiny"])
    fit(model, processor, corpus, at_depths(records), RECIPE)
    return LoadedModel(model=model, processor=processor, path=corpus.root, metadata=None)


def derived(base: LoadedModel, corpus: Corpus, records: list[Record], config: TrainConfig, *,
            ascent: bool = False) -> LoadedModel:
    import copy

    model = copy.deepcopy(base.model)
    fit(model, base.processor, corpus, records, config, ascent=ascent)
    return LoadedModel(model=model, processor=base.processor, path=corpus.root, metadata=None)


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
