"""A small synthetic hospital and its tiny models, trained once per test session (``world`` fixture).

Institution 1: train patients A (two studies) and B, holdout patient H; institution 2: one study of its
first train patient C (far retain) — whole studies of ``generate_corpus(size="tiny", seed=0)``, images
and ``hierarchy.json`` included. The request the tests name forgets patient A's first study. The
original and the retrain oracle are trained from the same seed-initialised tiny reference at the
testbed's depth mix. Used by the verifier's must-hold tests and by the pipeline's real-engine test.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mllm.data.entities import HIERARCHY_FILE
from mllm.data.schema import Corpus, Split, load_corpus, write_corpus
from mllm.data.scope import NodeRef, ScopeGroups, resolve_scope
from mllm.data.synth import generate_corpus
from mllm.models.loader import LoadedModel
from mllm.models.specs import SPECS
from mllm.train.loop import TrainConfig
from mllm.verify.calibration import train_reference

RECIPE = TrainConfig(epochs=30, batch_size=16, lr=3e-3, seed=0)


def make_corpus(root: Path) -> Corpus:
    """Patients A and B and holdout H of institution 1, one study of patient C of institution 2."""
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
    shutil.copyfile(full.root / HIERARCHY_FILE, out / HIERARCHY_FILE)
    write_corpus(out, name="small-hospital", seed=0, size="test", records=records)
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


def build_world(root: Path) -> World:
    corpus = make_corpus(root)
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
