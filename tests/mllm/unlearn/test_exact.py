"""Exact unlearning: the unlearned sharded model equals a retrain without the forget records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mllm.data.schema import Corpus, Level
from mllm.data.scope import NodeRef, ScopeGroups, resolve_scope
from mllm.data.synth import generate_corpus
from mllm.models.artifact import ArtifactKind, ArtifactMetadata, save_artifact
from mllm.models.specs import SPECS
from mllm.train.recipe import fresh_reference
from mllm.unlearn import unlearn
from mllm.unlearn.shards import ShardConfig, load_sharded, read_manifest, shard_of, train_sharded

SMALL = dict(slices=2, steps_per_slice=3, batch_size=8, rank=4, alpha=4)
LENIENT = {"guard": {"min_retain_ratio": 0.0, "max_holdout_drop": 1.0, "min_stop_ratio": 0.0,
                     "max_length_ratio": 100.0, "max_new_tokens": 4, "generations": 2}}


def split_config(records) -> ShardConfig:
    """The fewest patient buckets that put the test corpus's two train patients in different shards."""
    for buckets in range(2, 32):
        config = ShardConfig(buckets=buckets, **SMALL)
        if len({shard_of(r, config) for r in records}) >= 2:
            return config
    raise AssertionError("no bucket count separates the patients")


@dataclass
class Sharded:
    root: Path
    config: ShardConfig
    corpus: Corpus
    records: list  # the trained records: one institution's train patients
    scope: ScopeGroups


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> Sharded:
    root = tmp_path_factory.mktemp("exact")
    corpus = generate_corpus(size="tiny", seed=0, out=root / "corpus")
    first = corpus.select(trainable=True)[0]
    records = [r for r in corpus.select(trainable=True) if r.institution_id == first.institution_id]
    config = split_config(records)
    model, processor = fresh_reference(SPECS["tiny"])  # a clean start
    save_artifact(model, processor, root / "base", ArtifactMetadata(kind=ArtifactKind.REFERENCE))
    train_sharded(base=root / "base", records=records, root=corpus.root, out=root / "sharded", config=config)
    scope = resolve_scope(corpus, NodeRef.of(first, Level.STUDY))
    return Sharded(root, config, corpus, records, scope)


def stages(path):
    return {p.relative_to(path).as_posix(): load_file(str(p)) for p in sorted(path.rglob("*.safetensors"))}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_exact_equals_retraining_the_shard_without_the_forget_records(sharded):
    root = sharded.root
    shards = read_manifest(root / "sharded")["shards"]
    assert len(shards) >= 2
    result = unlearn(model_dir=root / "sharded", corpus=sharded.corpus, scope=sharded.scope, method="exact",
                     config=LENIENT, out=root / "unlearned")
    forget = {r.record_id for r in sharded.scope.forget}
    retrain = [r for r in sharded.records if r.record_id not in forget]
    train_sharded(base=root / "base", records=retrain, root=sharded.corpus.root, out=root / "retrained",
                  config=sharded.config)
    unlearned, retrained, before = (stages(root / name) for name in ("unlearned", "retrained", "sharded"))
    assert unlearned.keys() == retrained.keys() == before.keys()
    assert all(same(unlearned[k], retrained[k]) for k in unlearned)  # bit for bit
    manifest = read_manifest(root / "unlearned")
    touched = set(manifest["retrained"])
    assert len(touched) == 1 and len(touched) < len(shards)  # only the affected shard was retrained
    kept = {i for slices in manifest["shards"].values() for part in slices for i in part}
    assert not forget & kept
    for key in unlearned:
        if key.split("/")[1] not in touched:
            assert same(unlearned[key], before[key])
    assert result.guard.n_retain > 0 and result.steps  # the retrained stages reported progress


def test_another_draw_reseeds_only_the_retrained_stages(sharded, tmp_path):
    """``draw`` 1 retrains the same stages without the forget records on other seeds: the affected
    shard's retrained stages differ from draw 0's, everything else is the served model's."""
    root = sharded.root
    draws = [unlearn(model_dir=root / "sharded", corpus=sharded.corpus, scope=sharded.scope, method="exact",
                     config={**LENIENT, "draw": draw}, out=tmp_path / f"draw{draw}") for draw in (0, 1)]
    first, second, before = stages(draws[0].artifact), stages(draws[1].artifact), stages(root / "sharded")
    manifest = read_manifest(draws[1].artifact)
    (shard, entry), = manifest["retrained"].items()
    assert entry["draw"] == 1 and manifest["shards"] == read_manifest(draws[0].artifact)["shards"]
    retrained = {k for k in second if k.split("/")[1] == shard
                 and int(k.rsplit("stage-", 1)[1].split(".")[0]) > entry["from_stage"]}
    assert retrained and all(not same(second[k], first[k]) for k in retrained)
    assert all(same(second[k], before[k]) for k in second if k not in retrained)


def test_sharded_model_answers_through_the_ensemble(sharded):
    ensemble, processor, manifest = load_sharded(sharded.root / "sharded")
    from mllm.evaluate.generate import greedy_answers
    from mllm.train.encode import encode_records

    data = encode_records(processor, sharded.records[:2], sharded.corpus.root)
    answers = greedy_answers(ensemble, processor, data, max_new_tokens=3)
    assert len(answers) == 2 and len(ensemble.shards) == len(manifest["shards"])


def test_shards_train_at_the_training_context_depths(sharded: Sharded, tmp_path: Path, monkeypatch) -> None:
    """A shard sees each record at the depth the single model is trained at, not the bare question."""
    import mllm.unlearn.shards as shards
    from mllm.data.prompts import training_prompts

    seen: list[str] = []
    encode = shards.encode_records

    def recording(processor, records, root, *, prompts=None):
        seen.extend(prompts or [])
        return encode(processor, records, root, prompts=prompts)

    monkeypatch.setattr(shards, "encode_records", recording)
    train_sharded(base=sharded.root / "base", records=sharded.records, root=sharded.corpus.root,
                  out=tmp_path / "sharded", config=sharded.config)
    expected = set(training_prompts(sharded.records, sharded.config.seed))
    assert seen and set(seen) == expected
    assert any(prompt.startswith("Institution:") for prompt in seen)
