"""Every method runs unchanged on the tiny Qwen2-VL (end of turn <|im_end|>, M-RoPE inputs)."""

from __future__ import annotations

import pytest

from mllm.models.artifact import ArtifactKind, ArtifactMetadata, save_artifact
from mllm.models.loader import load_model
from mllm.models.specs import SPECS
from mllm.train.loop import TrainConfig
from mllm.train.recipe import fresh_reference, train_on_records
from mllm.unlearn import unlearn
from mllm.unlearn.shards import ShardConfig, train_sharded

# the guard off in effect: a 4-step model answers with nothing, so the length limit is 2 + ratio x 0
# tokens whatever the ratio, and 2 new tokens stay within it
LENIENT = {"min_retain_ratio": 0.0, "max_holdout_drop": 1.0, "min_stop_ratio": 0.0, "max_length_ratio": 100.0,
           "max_new_tokens": 2, "generations": 2, "retain_sample": 8}


@pytest.fixture(scope="module")
def qwen(bed, tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen")
    model, processor = fresh_reference(SPECS["tiny-qwen2-vl"])
    save_artifact(model, processor, root / "base", ArtifactMetadata(kind=ArtifactKind.REFERENCE))
    records = bed.corpus.select(trainable=True)
    model, _ = train_on_records(model, processor, bed.corpus.root, records,
                                TrainConfig(steps=4, batch_size=8))
    save_artifact(model, processor, root / "model", ArtifactMetadata(kind=ArtifactKind.FINE_TUNED))
    return root


@pytest.mark.parametrize("method", ["ga", "graddiff", "kl", "npo", "siu", "hierarchy", "chip"])
def test_method_runs_on_qwen2_vl(bed, qwen, tmp_path, method):
    config = {"guard": LENIENT} | ({} if method == "chip" else {"steps": 2, "batch_size": 4})
    result = unlearn(model_dir=qwen / "model", corpus=bed.corpus, scope=bed.scope, method=method,
                     config=config, out=tmp_path / method)
    assert result.steps and result.guard.n_retain > 0
    loaded = load_model(result.artifact)
    assert loaded.family.name == "qwen2-vl" and loaded.metadata.kind == "unlearned"


def test_exact_runs_on_qwen2_vl(bed, qwen, tmp_path):
    shards = ShardConfig(buckets=5, slices=2, steps_per_slice=1, batch_size=4, rank=2, alpha=2)
    train_sharded(base=qwen / "base", records=bed.corpus.select(trainable=True), root=bed.corpus.root,
                  out=tmp_path / "sharded", config=shards)
    result = unlearn(model_dir=tmp_path / "sharded", corpus=bed.corpus, scope=bed.scope, method="exact",
                     config={"guard": LENIENT}, out=tmp_path / "unlearned")
    assert result.steps and (tmp_path / "unlearned" / "sharded.json").is_file()
