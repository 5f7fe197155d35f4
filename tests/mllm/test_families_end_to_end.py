"""Each model family through the product's path: train (CLI) a full model, fine-tune LoRA on it into an
adapter-only artifact, reload it through ``load_model`` and evaluate it (CLI)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from peft import PeftModel

from mllm.cli import evaluate, train
from mllm.data.prompts import DEPTHS, training_depth
from mllm.models.artifact import artifact_digest, read_metadata
from mllm.models.loader import load_model
from mllm.train.encode import encode_records


def run(command, args):
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.slow
@pytest.mark.parametrize("size, model_class", [("tiny", "LlavaForConditionalGeneration"),
                                               ("tiny-qwen2-vl", "Qwen2VLForConditionalGeneration")])
def test_train_adapter_artifact_reload_evaluate(corpus, tmp_path, size, model_class):
    common = ["--corpus", corpus.root, "--batch-size", 8, "--threads", 2]
    result = run(train, [*common, "--out", tmp_path / "base", "--size", size, "--epochs", 40, "--lr", 3e-3])
    assert result.exit_code == 0, result.output
    result = run(train, [*common, "--out", tmp_path / "adapter", "--base", tmp_path / "base", "--lora",
                         "--steps", 4, "--lr", 1e-3, "--batch-size", 4, "--grad-accum", 2,
                         "--gradient-checkpointing"])
    assert result.exit_code == 0, result.output

    files = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert files == ["adapter_config.json", "adapter_model.safetensors", "oblivio.json"]
    metadata = read_metadata(tmp_path / "adapter")
    assert metadata.base_digest == artifact_digest(tmp_path / "base")
    assert metadata.training["lora"]["rank"] == 16 and metadata.training["config"]["gradient_checkpointing"]

    loaded = load_model(tmp_path / "adapter")
    assert isinstance(loaded.model, PeftModel) and type(loaded.model.get_base_model()).__name__ == model_class
    base = load_model(tmp_path / "base")
    batch = encode_records(loaded.processor, corpus.select(trainable=True)[:4], corpus.root).batch(range(4))
    with torch.no_grad():
        assert not torch.allclose(loaded.model(**batch.model_inputs()).logits,
                                  base.model(**batch.model_inputs()).logits)  # the adapter is applied

    result = run(evaluate, ["--model", tmp_path / "adapter", "--corpus", corpus.root, "--json",
                            "--by", "group,fact_kind", "--max-new-tokens", 24, "--threads", 2])
    assert result.exit_code == 0, result.output
    table = {(row["group"], row["fact_kind"]): row for row in json.loads(result.stdout)["table"]}
    assert table["train", "private"]["n"] > 0 and table["holdout", "private"]["n"] > 0
    assert _memorised(tmp_path / "adapter", corpus, tmp_path) >= 0.9  # kept through the LoRA steps


def _memorised(model_dir, corpus, tmp_path) -> float:
    """Exact match of the trained private records, each asked at the context depth it was trained at.

    ``oblivio train`` spreads records over context depths 0-4 (``training_prompts``), so depth 0 alone
    would measure the tiny model's generalisation across depths, not memorisation."""
    private = [r for r in corpus.select(trainable=True) if r.fact_kind.value == "private"]
    correct = 0
    for depth in DEPTHS:
        ids = [r.record_id for r in private if training_depth(r, seed=0) == depth]
        if not ids:
            continue
        groups = tmp_path / f"trained-at-{depth}.json"
        groups.write_text(json.dumps({"train": ids}))
        result = run(evaluate, ["--model", model_dir, "--corpus", corpus.root, "--groups", groups,
                                "--depth", depth, "--json", "--max-new-tokens", 24, "--threads", 2])
        assert result.exit_code == 0, result.output
        answers = json.loads(result.stdout)["answers"]
        assert sorted(a["record_id"] for a in answers) == sorted(ids)
        correct += sum(a["exact_match"] for a in answers)
    return correct / len(private)
