"""Fixtures for unlearning: the session's memorised tiny model saved as an artifact, one study as the
forget scope, and a scorer (teacher-forced exact match per group).

The never-seen reference here is the original model on the scope's holdout twins (never-trained
patients, matched on fact and form) — what a model says about a patient it never saw. Training the
retrain oracle too would add a minute to every test run; the benchmark compares with the real one
(measured on this corpus: oracle 0.06 on the forget set's private facts, the holdout reference 0.10).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from mllm.data.schema import FactKind, Record
from mllm.evaluate.generate import teacher_forced_answers
from mllm.evaluate.metrics import exact_match
from mllm.models.artifact import ArtifactKind, ArtifactMetadata, save_artifact
from mllm.train.encode import encode_records
from mllm.unlearn.scope import ScopeGroups, forget_records, kept_groups, load_scope_file, resolve_scope


def accuracy(model, processor, root: Path, records: list[Record]) -> float:
    answers = teacher_forced_answers(model, processor, encode_records(processor, records, root))
    return sum(exact_match(r.task, a, r.answer) for r, a in zip(records, answers, strict=True)) / len(records)


def score_groups(model, processor, root: Path, scope: ScopeGroups) -> dict[str, float]:
    """Accuracy on the forget set's private and image-grounded facts and on every kept group."""
    forget = forget_records(scope)
    groups = {"forget_private": [r for r in forget if r.fact_kind is FactKind.PRIVATE],
              "forget_grounded": [r for r in forget if r.fact_kind is FactKind.IMAGE_GROUNDED],
              "holdout_private": [r for r in scope.holdout if r.fact_kind is FactKind.PRIVATE],
              "holdout_grounded": [r for r in scope.holdout if r.fact_kind is FactKind.IMAGE_GROUNDED],
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
