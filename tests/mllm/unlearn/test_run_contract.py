"""The run contract: collapse guard, cancellation, determinism, config errors, stop tokens out of ascent."""

from __future__ import annotations

import pytest
import torch

from mllm.models.families import family_of
from mllm.unlearn import CollapseError, ConfigError, UnlearnCancelled, unlearn
from mllm.unlearn.losses import content_mask
from mllm.unlearn.registry import parse_config


def test_destructive_gradient_ascent_is_stopped_by_the_collapse_guard(bed, tmp_path):
    out = tmp_path / "ga"
    with pytest.raises(CollapseError) as caught:
        unlearn(model_dir=bed.model_dir, corpus=bed.corpus, scope=bed.scope, method="ga",
                config={"lr": 3e-2, "steps": 10}, out=out)
    result = caught.value.result
    assert not result.passed and not out.exists()
    assert result.candidate.retain_accuracy < 0.5 * result.original.retain_accuracy
    assert result.candidate.stop_rate < result.original.stop_rate  # it rambles instead of ending its turn


def test_cancel_stops_within_one_step_and_writes_nothing(bed, tmp_path):
    seen = []
    out = tmp_path / "cancelled"
    with pytest.raises(UnlearnCancelled) as caught:
        unlearn(model_dir=bed.model_dir, corpus=bed.corpus, scope=bed.scope, method="graddiff",
                config={"steps": 20}, out=out, progress=seen.append, should_cancel=lambda: len(seen) >= 2)
    assert caught.value.step == 2 and [s.step for s in seen] == [1, 2]
    assert not out.exists()


def test_the_same_seed_gives_the_same_artifact_digest(bed, tmp_path):
    config = {"steps": 3}
    digests = [unlearn(model_dir=bed.model_dir, corpus=bed.corpus, scope=bed.scope, method="npo",
                       config=config, out=tmp_path / f"run{i}", seed=seed).digest
               for i, seed in enumerate((7, 7, 8))]
    assert digests[0] == digests[1] != digests[2]


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="no config field 'lr_typo'"):
        parse_config("ga", {"lr_typo": 1.0})
    with pytest.raises(ConfigError, match="'steps' must be of type int"):
        parse_config("hierarchy", {"steps": "10"})
    assert parse_config("npo", {"beta": 1}).beta == 1.0


@pytest.mark.parametrize(("field", "value", "message"), [
    ("lr", -1.0, r"lr must be a number in \(0, 1.0\]"),
    ("lr", 1e300, r"lr must be a number in \(0, 1.0\]"),  # finite, but AdamW overflowed on it
    ("grad_clip", 0.0, "grad_clip must be a positive number"),
    ("retain_weight", -0.5, "retain_weight must be a number >= 0"),
    ("warmup_steps", -1, "warmup_steps must not be negative"),
    ("lora_alpha", 0, "lora_alpha must be at least 1"),
])
def test_settings_no_run_can_use_are_config_errors(field, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_config("graddiff", {field: value})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("choice_repeats", 0, "choice_repeats .* are repeat counts"),
    ("weights", {"retain": 1000}, "weights .* are repeat counts"),
    ("weights", {"sibling.study": 2}, "weights may name only grounded, siblings.institution, "),
    ("min_forget_passes", float("inf"), "min_forget_passes must be a number >= 0"),
    ("kept_kl", -1.0, "kept_kl must be a number >= 0"),
])
def test_hierarchy_settings_no_run_can_use_are_config_errors(field, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_config("hierarchy", {field: value})


def test_ascent_terms_leave_the_stop_tokens_out(trained):
    stops = family_of(trained.processor).stop_ids(trained.processor.tokenizer)
    targets = torch.tensor([11, 12, stops[0], 13, stops[0]])
    assert content_mask(targets, stops).tolist() == [True, True, False, True, False]
