"""Every method on the tiny corpus: forgets toward the oracle, keeps siblings, passes the guard."""

from __future__ import annotations

import pytest

from mllm.models.loader import load_model
from mllm.unlearn import METHODS, unlearn
from mllm.unlearn.registry import method_class

from .conftest import score_groups

BASELINES = ("ga", "graddiff", "kl", "npo")


def run(bed, tmp_path, method, config=None):
    result = unlearn(model_dir=bed.model_dir, corpus=bed.corpus, scope=bed.scope, method=method,
                     config=config, out=tmp_path / method)
    loaded = load_model(result.artifact)
    return result, score_groups(loaded.model, loaded.processor, bed.corpus.root, bed.scope)


def test_registry_holds_every_method():
    method_class("ga")
    assert set(METHODS) == {"ga", "graddiff", "kl", "npo", "siu", "hierarchy", "exact", "chip"}


@pytest.mark.parametrize("method", BASELINES)
def test_baselines_forget_something_and_keep_siblings(bed, tmp_path, method):
    assert bed.original["forget_private"] == 1.0
    result, scores = run(bed, tmp_path, method)
    assert result.guard.passed and result.artifact.is_dir()
    assert len(result.steps) == 30 and result.steps[0].loss != result.steps[-1].loss
    assert scores["forget_private"] < bed.original["forget_private"]
    assert scores["siblings.patient"] >= 0.9 and scores["siblings.institution"] >= 0.9


@pytest.mark.parametrize("method", ["hierarchy", "siu"])
def test_hierarchy_and_siu_forget_private_facts_keep_the_rest(bed, oracle_scores, tmp_path, method):
    result, scores = run(bed, tmp_path, method)
    # private forget facts move most of the way to the oracle (1.00 -> oracle 0.22 on this corpus) ...
    assert scores["forget_private"] <= 0.6 < bed.original["forget_private"]
    assert scores["forget_private"] >= oracle_scores["forget_private"]  # ... and never below it
    # image-grounded facts of the forgotten image are kept; siblings intact
    assert scores["forget_grounded"] == bed.original["forget_grounded"]
    assert scores["siblings.patient"] >= 0.9 and scores["siblings.institution"] >= 0.9
    assert result.provenance["scope_sha256"] and result.provenance["base_digest"]
