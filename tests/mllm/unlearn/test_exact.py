"""Exact unlearning: the unlearned sharded model equals a retrain without the forget records."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from mllm.models.artifact import ArtifactKind, ArtifactMetadata, save_artifact
from mllm.models.specs import SPECS
from mllm.train.recipe import fresh_reference
from mllm.unlearn import unlearn
from mllm.unlearn.shards import ShardConfig, load_sharded, read_manifest, train_sharded

SHARDS = ShardConfig(buckets=5, slices=2, steps_per_slice=3, batch_size=8, rank=4, alpha=4)
LENIENT = {"guard": {"min_retain_ratio": 0.0, "max_holdout_drop": 1.0, "min_stop_ratio": 0.0,
                     "max_length_ratio": 100.0, "max_new_tokens": 4, "generations": 2}}


@pytest.fixture(scope="module")
def sharded(bed, tmp_path_factory):
    root = tmp_path_factory.mktemp("exact")
    model, processor = fresh_reference(SPECS["tiny"])  # a clean start
    save_artifact(model, processor, root / "base", ArtifactMetadata(kind=ArtifactKind.REFERENCE))
    train_sharded(base=root / "base", records=bed.corpus.select(trainable=True), root=bed.corpus.root,
                  out=root / "sharded", config=SHARDS)
    return root


def stages(path):
    return {p.relative_to(path).as_posix(): load_file(str(p)) for p in sorted(path.rglob("*.safetensors"))}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_exact_equals_retraining_the_shard_without_the_forget_records(bed, sharded):
    shards = read_manifest(sharded / "sharded")["shards"]
    assert len(shards) >= 2  # the two train patients land in different buckets of 5
    result = unlearn(model_dir=sharded / "sharded", corpus=bed.corpus, scope=bed.scope, method="exact",
                     config=LENIENT, out=sharded / "unlearned")
    forget = {r.record_id for r in bed.scope.forget}
    retrain = [r for r in bed.corpus.select(trainable=True) if r.record_id not in forget]
    train_sharded(base=sharded / "base", records=retrain, root=bed.corpus.root, out=sharded / "retrained",
                  config=SHARDS)
    unlearned, retrained, before = (stages(sharded / name) for name in ("unlearned", "retrained", "sharded"))
    assert unlearned.keys() == retrained.keys() == before.keys()
    assert all(same(unlearned[k], retrained[k]) for k in unlearned)  # bit for bit
    manifest = read_manifest(sharded / "unlearned")
    touched = set(manifest["retrained"])
    assert len(touched) == 1 and len(touched) < len(shards)  # only the affected shard was retrained
    kept = {i for slices in manifest["shards"].values() for part in slices for i in part}
    assert not forget & kept
    for key in unlearned:
        if key.split("/")[1] not in touched:
            assert same(unlearned[key], before[key])
    assert result.guard.n_retain > 0 and result.steps  # the retrained stages reported progress


def test_sharded_model_answers_through_the_ensemble(bed, sharded):
    ensemble, processor, manifest = load_sharded(sharded / "sharded")
    from mllm.evaluate.generate import greedy_answers
    from mllm.train.encode import encode_records

    data = encode_records(processor, bed.corpus.select(trainable=True)[:2], bed.corpus.root)
    answers = greedy_answers(ensemble, processor, data, max_new_tokens=3)
    assert len(answers) == 2 and len(ensemble.shards) == len(manifest["shards"])
