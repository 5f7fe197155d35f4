"""Exact unlearning on a single checkpoint: the result is the model trained from the clean start
without every record the lineage forgot, bit for bit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mllm.train.retrain as retrain_module
from mllm.data.schema import Corpus, Level
from mllm.data.scope import NodeRef, resolve_scope
from mllm.data.teaching import VERSION as TEACHING_VERSION
from mllm.models.artifact import ArtifactKind, ArtifactMetadata, read_metadata, save_artifact
from mllm.models.specs import SPECS
from mllm.train.loop import TrainConfig
from mllm.train.recipe import TrainJob, fresh_reference, run_train_job
from mllm.train.retrain import RECIPE_KEY, RecipeError, draw_seed, recipe_of
from mllm.unlearn import CollapseError, ConfigError, unlearn
from mllm.unlearn.scope import forget_records

CONFIG = TrainConfig(steps=6, batch_size=8, lr=3e-3, seed=0)
LENIENT = {"guard": {"min_retain_ratio": 0.0, "max_holdout_drop": 1.0, "min_stop_ratio": 0.0,
                     "max_length_ratio": 100.0, "max_new_tokens": 4, "generations": 2}}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train(corpus: Corpus, out: Path, exclude: set[str] = frozenset()) -> Path:
    run_train_job(TrainJob(corpus=corpus.root, out=out, config=CONFIG, spec=SPECS["tiny"],
                           exclude=frozenset(exclude)))
    return out


def scope_of(corpus: Corpus, index: int, level: Level):
    return resolve_scope(corpus, NodeRef.of(corpus.select(trainable=True)[index], level))


def ids(scope) -> set[str]:
    return {r.record_id for r in forget_records(scope)}


@pytest.fixture(scope="module")
def served(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model fine-tuned by Oblivio from a fresh reference: it carries its recipe."""
    return train(corpus, tmp_path_factory.mktemp("retrain") / "model")


def test_exact_retrains_a_single_checkpoint_without_the_forget_records(served, corpus, tmp_path):
    scope = scope_of(corpus, 0, Level.STUDY)
    result = unlearn(model_dir=served, corpus=corpus, scope=scope, method="exact", config=LENIENT,
                     out=tmp_path / "exact")
    oracle = train(corpus, tmp_path / "oracle", exclude=ids(scope))
    assert same(weights(result.artifact), weights(oracle))
    assert not same(weights(result.artifact), weights(served))
    assert result.steps and result.steps[-1].step == CONFIG.steps  # progress came from the training loop
    recipe = recipe_of(read_metadata(result.artifact))
    assert recipe is not None and set(recipe.excluded) == ids(scope)


def test_another_draw_is_the_recipe_retrained_with_a_derived_seed(served, corpus, tmp_path):
    """``draw`` k > 0 trains the same recipe without the same records on another seed: exact, and a
    different model from draw 0 (the ladder's second retraining is not the first one again)."""
    scope = scope_of(corpus, 0, Level.STUDY)
    first = unlearn(model_dir=served, corpus=corpus, scope=scope, method="exact", config=LENIENT,
                    out=tmp_path / "draw0")
    second = unlearn(model_dir=served, corpus=corpus, scope=scope, method="exact",
                     config={**LENIENT, "draw": 1}, out=tmp_path / "draw1")
    assert draw_seed(CONFIG.seed, 0) == CONFIG.seed != draw_seed(CONFIG.seed, 1)
    oracle = tmp_path / "oracle"
    reseeded = replace(CONFIG, seed=draw_seed(CONFIG.seed, 1))
    run_train_job(TrainJob(corpus=corpus.root, out=oracle, config=reseeded, spec=SPECS["tiny"],
                           exclude=frozenset(ids(scope))))
    assert same(weights(second.artifact), weights(oracle))
    assert not same(weights(second.artifact), weights(first.artifact))
    assert second.provenance["config"]["draw"] == 1
    assert recipe_of(read_metadata(second.artifact)).config["seed"] == CONFIG.seed  # the lineage's recipe
    with pytest.raises(ConfigError, match="draw"):
        unlearn(model_dir=served, corpus=corpus, scope=scope, method="exact", config={"draw": -1},
                out=tmp_path / "negative")
    assert not (tmp_path / "negative").exists()


def test_a_model_trained_with_replay_is_retrained_with_the_same_replay(corpus, tmp_path, monkeypatch):
    """Teaching-file records mixed into the fine-tune are part of the recipe: ``exact`` trains them
    again, so the result is the replay model trained without the forget records, and refuses when this
    Oblivio's teaching file is not the version the model replayed."""
    served = tmp_path / "model"
    run_train_job(TrainJob(corpus=corpus.root, out=served, config=CONFIG, spec=SPECS["tiny"], replay=2))
    assert read_metadata(served).training["replay"] == 2
    assert not same(weights(served), weights(train(corpus, tmp_path / "without")))  # replay was trained on
    scope = scope_of(corpus, 0, Level.STUDY)
    result = unlearn(model_dir=served, corpus=corpus, scope=scope, method="exact", config=LENIENT,
                     out=tmp_path / "exact")
    oracle = tmp_path / "oracle"
    run_train_job(TrainJob(corpus=corpus.root, out=oracle, config=CONFIG, spec=SPECS["tiny"], replay=2,
                           exclude=frozenset(ids(scope))))
    assert same(weights(result.artifact), weights(oracle))
    assert recipe_of(read_metadata(result.artifact)).replay == 2
    # a teaching file that now draws other records would make the retraining another model: refused
    monkeypatch.setattr(retrain_module, "TEACHING_VERSION", TEACHING_VERSION + 1)
    with pytest.raises(RecipeError, match="teaching-file replay version"):
        unlearn(model_dir=served, corpus=corpus, scope=scope, method="exact", config=LENIENT,
                out=tmp_path / "exact-again")


def test_per_epoch_depth_draws_and_autocast_are_part_of_the_recipe(corpus, tmp_path):
    """A model trained with a new context depth every epoch in bf16 autocast is retrained the same way:
    ``exact`` gives the oracle of that recipe bit for bit, not the oracle of the default one."""
    config = replace(CONFIG, depth_draw="per-epoch", autocast="bfloat16")
    served = tmp_path / "model"
    run_train_job(TrainJob(corpus=corpus.root, out=served, config=config, spec=SPECS["tiny"]))
    assert not same(weights(served), weights(train(corpus, tmp_path / "default")))
    scope = scope_of(corpus, 0, Level.STUDY)
    result = unlearn(model_dir=served, corpus=corpus, scope=scope, method="exact", config=LENIENT,
                     out=tmp_path / "exact")
    oracle = tmp_path / "oracle"
    run_train_job(TrainJob(corpus=corpus.root, out=oracle, config=config, spec=SPECS["tiny"],
                           exclude=frozenset(ids(scope))))
    assert same(weights(result.artifact), weights(oracle))
    assert recipe_of(read_metadata(result.artifact)).config["depth_draw"] == "per-epoch"


def test_the_collapse_guard_holds_a_retraining_to_collapse_not_to_the_served_models_accuracy(
        served, corpus, tmp_path):
    """Two trainings of one recipe differ by more than the guard's accuracy thresholds, so a retraining is
    not refused for answering fewer records than the model it replaces (verification holds it to the
    lineage's first served model); a method derived from the served model is."""
    unreachable = {"guard": {**LENIENT["guard"], "min_retain_ratio": 10.0, "max_holdout_drop": -1.0,
                             "require_significance": False}}
    scope = scope_of(corpus, 0, Level.STUDY)
    result = unlearn(model_dir=served, corpus=corpus, scope=scope, method="exact", config=unreachable,
                     out=tmp_path / "exact")
    assert result.guard.passed and not result.guard.accuracy_judged
    with pytest.raises(CollapseError, match="accuracy"):
        unlearn(model_dir=served, corpus=corpus, scope=scope, method="ga", config={"steps": 1, **unreachable},
                out=tmp_path / "ga")


def test_exact_after_an_approximate_run_also_leaves_out_what_that_run_forgot(served, corpus, tmp_path):
    first, second = scope_of(corpus, 0, Level.STUDY), scope_of(corpus, -1, Level.SECTION)
    assert not ids(first) & ids(second)
    approximate = unlearn(model_dir=served, corpus=corpus, scope=first, method="ga",
                          config={"steps": 2, **LENIENT}, out=tmp_path / "ga")
    assert set(recipe_of(read_metadata(approximate.artifact)).excluded) == ids(first)
    result = unlearn(model_dir=approximate.artifact, corpus=corpus, scope=second, method="exact",
                     config=LENIENT, out=tmp_path / "exact")
    oracle = train(corpus, tmp_path / "oracle", exclude=ids(first) | ids(second))
    assert same(weights(result.artifact), weights(oracle))


def test_exact_leaves_out_what_earlier_jobs_forgot_as_the_scope_names_it(served, corpus, tmp_path):
    """The pipeline names earlier jobs' records in ``earlier_forgotten`` (e.g. a lineage whose
    artifacts predate the carried recipe): they stay out of the retrained model too."""
    first, second = scope_of(corpus, 0, Level.STUDY), scope_of(corpus, -1, Level.SECTION)
    scope = replace(second, earlier_forgotten=tuple(forget_records(first)))
    result = unlearn(model_dir=served, corpus=corpus, scope=scope, method="exact", config=LENIENT,
                     out=tmp_path / "exact")
    oracle = train(corpus, tmp_path / "oracle", exclude=ids(first) | ids(second))
    assert same(weights(result.artifact), weights(oracle))


def test_a_checkpoint_without_a_recipe_is_refused_and_nothing_is_written(corpus, tmp_path):
    model, processor = fresh_reference(SPECS["tiny"])
    save_artifact(model, processor, tmp_path / "foreign", ArtifactMetadata(kind=ArtifactKind.FINE_TUNED))
    with pytest.raises(RecipeError, match="no training recipe"):
        unlearn(model_dir=tmp_path / "foreign", corpus=corpus, scope=scope_of(corpus, 0, Level.STUDY),
                method="exact", config=LENIENT, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_exact_refuses_another_corpus_than_the_one_the_model_was_trained_on(served, corpus, tmp_path):
    metadata = read_metadata(served)
    moved = replace(metadata, corpus_sha256="0" * 64)
    lying = tmp_path / "model"
    model, processor = fresh_reference(SPECS["tiny"])
    save_artifact(model, processor, lying, moved)
    assert recipe_of(moved) is not None and RECIPE_KEY not in (moved.training or {})
    with pytest.raises(RecipeError, match="not the one the model was trained on"):
        unlearn(model_dir=lying, corpus=corpus, scope=scope_of(corpus, 0, Level.STUDY), method="exact",
                config=LENIENT, out=tmp_path / "out")


def test_a_hospital_lora_on_a_pretrained_base_is_retrained_as_an_adapter_on_that_base(corpus, tmp_path):
    """The production shape (a LoRA fine-tune of a local checkpoint): the result is again an adapter
    artifact on the same base, equal to the adapter trained without the forget records."""
    from mllm.models.lora import LoraSettings

    model, processor = fresh_reference(SPECS["tiny"])
    save_artifact(model, processor, tmp_path / "base", ArtifactMetadata(kind=ArtifactKind.PRETRAINED_BASE))
    lora = LoraSettings(rank=4, alpha=4)

    def fine_tune(out: Path, exclude: set[str] = frozenset()) -> Path:
        run_train_job(TrainJob(corpus=corpus.root, out=out, config=CONFIG, base=tmp_path / "base", lora=lora,
                               exclude=frozenset(exclude)))
        return out

    served = fine_tune(tmp_path / "served")
    scope = scope_of(corpus, 0, Level.STUDY)
    result = unlearn(model_dir=served, corpus=corpus, scope=scope, method="exact", config=LENIENT,
                     out=tmp_path / "exact")
    oracle = fine_tune(tmp_path / "oracle", exclude=ids(scope))
    adapter = "adapter_model.safetensors"
    assert same(load_file(str(result.artifact / adapter)), load_file(str(oracle / adapter)))
    assert read_metadata(result.artifact).base_digest == read_metadata(served).base_digest


def test_a_model_fine_tuned_from_a_model_that_saw_a_corpus_is_not_retrained(served, corpus, tmp_path,
                                                                            monkeypatch):
    """Retraining from a start that already holds the data would not be exact. (A full fine-tune
    records its start by digest only: the worker finds it on the base search path.)"""
    monkeypatch.setenv("OBLIVIO_BASE_PATH", str(served.parent))
    run_train_job(TrainJob(corpus=corpus.root, out=tmp_path / "again", config=CONFIG, base=served))
    metadata = read_metadata(tmp_path / "again")
    assert recipe_of(metadata) is not None  # a plain fine-tune's metadata, on a start that saw the corpus
    with pytest.raises(RecipeError, match="had seen a corpus"):
        unlearn(model_dir=tmp_path / "again", corpus=corpus, scope=scope_of(corpus, 0, Level.STUDY),
                method="exact", config=LENIENT, out=tmp_path / "out")


def test_a_retraining_interrupted_midway_resumes_to_the_same_model(served, corpus, tmp_path, monkeypatch):
    """A worker dies during a long retraining; the next one given the same checkpoint directory continues
    from the last saved step instead of starting over, and ends with the same weights."""
    import mllm.train.retrain as retraining
    from mllm.unlearn import UnlearnCancelled

    monkeypatch.setattr(retraining, "CHECKPOINT_EVERY", 2)
    scope, checkpoints = scope_of(corpus, 0, Level.STUDY), tmp_path / "checkpoints"
    seen: list[int] = []
    with pytest.raises(UnlearnCancelled):  # stands in for the killed worker, after step 5
        unlearn(model_dir=served, corpus=corpus, scope=scope, method="exact", config=LENIENT,
                out=tmp_path / "first", checkpoint_dir=checkpoints, progress=lambda s: seen.append(s.step),
                should_cancel=lambda: len(seen) >= 5)
    assert seen == [1, 2, 3, 4, 5] and any(checkpoints.rglob("trainer_state.pt"))
    # another scope's retraining never resumes from this one's state (nor removes it)
    other = unlearn(model_dir=served, corpus=corpus, scope=scope_of(corpus, -1, Level.SECTION),
                    method="exact", config=LENIENT, out=tmp_path / "other", checkpoint_dir=checkpoints)
    assert other.steps[0].step == 1
    result = unlearn(model_dir=served, corpus=corpus, scope=scope, method="exact", config=LENIENT,
                     out=tmp_path / "exact", checkpoint_dir=checkpoints)
    assert [s.step for s in result.steps] == [5, 6]  # resumed after the state saved at step 4
    oracle = train(corpus, tmp_path / "oracle", exclude=ids(scope))
    assert same(weights(result.artifact), weights(oracle))
    assert not any(checkpoints.rglob("trainer_state.pt"))  # removed once the retraining finished
