"""Tiny models for the verifier's must-hold tests, trained once per session.

The corpus keeps a few whole studies of the synthetic ``tiny`` corpus (:func:`make_corpus`); the
request forgets patient A's first study, resolved by the testbed's ``resolve_scope``. The original
and the retrain oracle are trained from the same seed-initialised tiny reference at the testbed's
depth mix; the broken candidates come from :mod:`mllm.verify.calibration`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mllm.data.schema import Corpus, Split, load_corpus, write_corpus
from mllm.data.scope import NodeRef, ScopeGroups, resolve_scope
from mllm.data.synth import generate_corpus
from mllm.models.loader import LoadedModel
from mllm.models.specs import SPECS
from mllm.train.loop import TrainConfig
from mllm.verify.calibration import build_candidate, train_reference

RECIPE = TrainConfig(epochs=30, batch_size=16, lr=3e-3, seed=0)


def make_corpus(root: Path) -> Corpus:
    """Institution 1: train patients A (two studies) and B, holdout patient H; institution 2: one
    study of its first train patient C (far retain). Whole studies, images included."""
    full = generate_corpus(size="tiny", seed=0, out=root / "full")
    institutions = list(dict.fromkeys(r.institution_id for r in full.records))

    def patients(institution: str, split: Split) -> list[str]:
        return list(
            dict.fromkeys(
                r.patient_id for r in full.records if r.split is split and r.institution_id == institution
            )
        )

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


def study_node(corpus: Corpus) -> NodeRef:
    """Patient A's first study: the node the tests' forget request names."""
    first = corpus.select(trainable=True)[0]
    return NodeRef(first.institution_id, first.patient_id, first.study_id)


@dataclass
class World:
    corpus: Corpus
    scope: ScopeGroups
    original: LoadedModel
    oracle: LoadedModel


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    corpus = make_corpus(tmp_path_factory.mktemp("verify"))
    scope = resolve_scope(corpus, study_node(corpus))
    trainable = corpus.select(trainable=True)
    forget_ids = {r.record_id for r in scope.forget}
    retain = [r for r in trainable if r.record_id not in forget_ids]
    return World(
        corpus=corpus,
        scope=scope,
        original=train_reference(corpus, trainable, SPECS["tiny"], RECIPE),
        oracle=train_reference(corpus, retain, SPECS["tiny"], RECIPE),
    )


@pytest.fixture(scope="session")
def report_of(world: World) -> Any:
    """``report_of(name)``: the verification report of a calibration candidate, built and verified once."""
    from mllm.verify import verify

    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            candidate = build_candidate(
                name, corpus=world.corpus, scope=world.scope, original=world.original, oracle=world.oracle
            )
            cache[name] = verify(
                original=world.original, candidate=candidate, corpus=world.corpus, scope=world.scope
            )
        return cache[name]

    return get
