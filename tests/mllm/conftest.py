"""Fixtures for the ML library: a few studies of the synthetic ``tiny`` corpus and a tiny model.

The test corpus keeps the first two train studies (39 trained forms and 39 eval-only forms each)
and one holdout study of ``generate_corpus(size="tiny", seed=0)``: real records and radiographs,
small enough for the ``tiny`` reference model to memorise them in seconds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from mllm.data.prompts import render_prompt
from mllm.data.schema import Corpus, Split, load_corpus, write_corpus
from mllm.data.synth import generate_corpus
from mllm.models.specs import SPECS
from mllm.train.loop import TrainConfig, TrainResult
from mllm.train.recipe import fresh_reference, train_on_records

torch.set_num_threads(2)  # the 2 cores of a CI machine (measured: tiny training 23% faster than 1 thread)


def make_corpus(root: Path, *, train_studies: int = 2, holdout_studies: int = 1) -> Corpus:
    """Cut the synthetic tiny corpus down to a few whole studies (all their records and images)."""
    full = generate_corpus(size="tiny", seed=0, out=root / "full")
    keep: list[str] = []
    for split, count in ((Split.TRAIN, train_studies), (Split.HOLDOUT, holdout_studies)):
        studies = list(dict.fromkeys(r.study_id for r in full.records if r.split is split))
        keep += studies[:count]
    records = [r for r in full.records if r.study_id in keep]
    out = root / "corpus"
    (out / "images").mkdir(parents=True)
    for image in {r.image for r in records}:
        shutil.copyfile(full.root / image, out / image)
    write_corpus(out, name="test", seed=0, size="test", records=records)
    return load_corpus(out)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@dataclass
class Trained:
    """A tiny reference model memorised on the fixture corpus (trained once per session)."""

    model: Any
    processor: Any
    corpus: Corpus
    result: TrainResult


TINY_RECIPE = TrainConfig(epochs=40, batch_size=8, lr=3e-3, seed=0)


@pytest.fixture(scope="session")
def trained(corpus: Corpus) -> Trained:
    model, processor = fresh_reference(SPECS["tiny"])
    records = corpus.select(trainable=True)  # trained at depth 0: the tests ask at depth 0
    model, result = train_on_records(model, processor, corpus.root, records, TINY_RECIPE,
                                     prompts=[render_prompt(r, 0) for r in records])
    return Trained(model=model, processor=processor, corpus=corpus, result=result)
