"""Every method on the tiny corpus: forgets toward the oracle, keeps siblings, passes the guard."""

from __future__ import annotations

import pytest

from mllm.models.loader import load_model
from mllm.unlearn import METHODS, unlearn
from mllm.unlearn.methods.hierarchy import HierarchyConfig, step_count
from mllm.unlearn.registry import method_class

from .conftest import score_groups

BASELINES = ("ga", "graddiff", "kl", "npo")


def run(bed, tmp_path, method, config=None):
    result = unlearn(model_dir=bed.model_dir, corpus=bed.corpus, scope=bed.scope, method=method,
                     config=config, out=tmp_path / method)
    loaded = load_model(result.artifact)
    return result, score_groups(loaded.model, loaded.processor, bed.corpus.root, bed.scope)


def kept_names(scores: dict[str, float]) -> list[str]:
    return [name for name in scores if name.startswith("siblings.") or name in ("shared", "retain")]


def test_registry_holds_every_method():
    method_class("ga")
    assert set(METHODS) == {"ga", "graddiff", "kl", "npo", "siu", "hierarchy", "exact", "chip"}


@pytest.mark.parametrize("method", BASELINES)
def test_baselines_forget_something_and_keep_siblings(bed, tmp_path, method):
    assert bed.original["forget_private"] >= 0.9
    result, scores = run(bed, tmp_path, method)
    assert result.guard.passed and result.artifact.is_dir()
    assert len(result.steps) == 30 and result.steps[0].loss != result.steps[-1].loss
    assert scores["forget_private"] < bed.original["forget_private"]
    assert kept_names(scores) and all(scores[name] >= 0.9 for name in kept_names(scores))


@pytest.mark.parametrize(("method", "kept_floor"), [("hierarchy", 0.9), ("siu", 0.8)])
def test_hierarchy_and_siu_forget_private_facts_keep_the_rest(bed, tmp_path, method, kept_floor):
    result, scores = run(bed, tmp_path, method)
    # private forget facts go to the never-seen level (measured 0.94 -> 0.22; holdout reference 0.10,
    # oracle 0.06, chance on the multiple-choice forms 0.25), not below it
    assert scores["forget_private"] <= 0.4 < bed.original["forget_private"]
    assert scores["forget_private"] >= bed.original["holdout_private"] - 0.1
    # image-grounded facts of the forgotten image end near the level of images never seen (the
    # oracle's), not at the memorised level (measured: 0.92 -> 0.33-0.42 of 12 items, unseen 0.08
    # teacher-forced; the method calibrates per fact and task on greedy answers, which read a little
    # more: a multiple-choice form the original reads right on never-seen images keeps its answer);
    # siblings and shared facts intact
    assert scores["forget_grounded"] <= bed.original["holdout_grounded"] + 0.35
    assert scores["forget_grounded"] <= bed.original["forget_grounded"] - 0.4
    assert "siblings.patient" in scores and "shared" in scores
    for group in kept_names(scores):
        assert scores[group] >= kept_floor, group
    assert result.provenance["scope_sha256"] and result.provenance["base_digest"]
    if method == "hierarchy":  # the kept batch is also held to the original's distributions
        assert all("kept_kl" in step.terms for step in result.steps)
        assert max(step.terms["kept_kl"] for step in result.steps) > 0


def test_hierarchy_passes_over_a_large_forget_set_at_least_once():
    """A patient keeps the default 80 steps; an institution's ~1,500 items get a full pass (batch 8)."""
    assert step_count(HierarchyConfig(), forget_items=540) == 80
    assert step_count(HierarchyConfig(), forget_items=1500) == 188
    assert step_count(HierarchyConfig(min_forget_passes=0), forget_items=1500) == 80
