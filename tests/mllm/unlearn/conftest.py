"""Fixtures for unlearning: the session's memorised tiny model saved as an artifact, one study as the
forget scope, its retrain oracle, and a scorer (teacher-forced exact match per group)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from mllm.data.schema import FactKind, Record
from mllm.evaluate.generate import teacher_forced_answers
from mllm.evaluate.metrics import exact_match
from mllm.models.artifact import ArtifactKind, ArtifactMetadata, save_artifact
from mllm.models.specs import SPECS
from mllm.train.encode import encode_records
from mllm.train.loop import TrainConfig
from mllm.train.recipe import reference_for_corpus, train_on_records
from mllm.unlearn.scope import ScopeGroups, forget_records, kept_groups, load_scope_file, resolve_scope

ORACLE_RECIPE = TrainConfig(epochs=40, batch_size=8, lr=3e-3, seed=0)  # the session model's recipe


def accuracy(model, processor, root: Path, records: list[Record]) -> float:
    answers = teacher_forced_answers(model, processor, encode_records(processor, records, root))
    return sum(exact_match(r.task, a, r.answer) for r, a in zip(records, answers, strict=True)) / len(records)


def score_groups(model, processor, root: Path, scope: ScopeGroups) -> dict[str, float]:
    """Accuracy on the forget set's private and image-grounded facts and on every kept group."""
    forget = forget_records(scope)
    groups = {"forget_private": [r for r in forget if r.fact_kind is FactKind.PRIVATE],
              "forget_grounded": [r for r in forget if r.fact_kind is FactKind.IMAGE_GROUNDED],
              **kept_groups(scope)}
    return {name: accuracy(model, processor, root, records) for name, records in groups.items() if records}


@dataclass
class Bed:
    model_dir: Path
    scope_file: Path
    scope: ScopeGroups
    corpus: object
    original: dict[str, float]


@pytest.fixture(scope="session")
def bed(trained, tmp_path_factory: pytest.TempPathFactory) -> Bed:
    root = tmp_path_factory.mktemp("unlearn")
    model_dir = root / "model"
    save_artifact(trained.model, trained.processor, model_dir, ArtifactMetadata(kind=ArtifactKind.FINE_TUNED))
    first = trained.corpus.select(trainable=True)[0]
    scope_file = root / "scope.json"
    scope_file.write_text(json.dumps({"institution_id": first.institution_id, "patient_id": first.patient_id,
                                      "study_id": first.study_id}), encoding="utf-8")
    scope = resolve_scope(trained.corpus, load_scope_file(scope_file))
    original = score_groups(trained.model, trained.processor, trained.corpus.root, scope)
    return Bed(model_dir=model_dir, scope_file=scope_file, scope=scope, corpus=trained.corpus,
               original=original)


@pytest.fixture(scope="session")
def oracle_scores(bed: Bed) -> dict[str, float]:
    """The retrain oracle (same recipe, forget records excluded) scored on the same groups."""
    forget = {r.record_id for r in bed.scope.forget}
    model, processor = reference_for_corpus(bed.corpus, SPECS["tiny"])
    records = [r for r in bed.corpus.select(trainable=True) if r.record_id not in forget]
    model, _ = train_on_records(model, processor, bed.corpus.root, records, ORACLE_RECIPE)
    return score_groups(model, processor, bed.corpus.root, bed.scope)
