"""Adapter-only artifacts: the adapter plus metadata naming the base by digest, resolved on load."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from peft import PeftModel

from mllm.models.artifact import (
    METADATA_FILE,
    ArtifactMetadata,
    BaseRef,
    artifact_digest,
    is_adapter_artifact,
    read_metadata,
    save_artifact,
)
from mllm.models.loader import BASE_PATH_ENV, ModelLoadError, load_model
from mllm.models.lora import LoraSettings, add_lora
from mllm.models.specs import SPECS
from mllm.train.encode import encode_records
from mllm.train.recipe import fresh_reference


def logits(model, batch):
    with torch.no_grad():
        return model(**batch.model_inputs()).logits


@pytest.fixture
def setup(tmp_path, corpus):
    """A full base artifact and a model carrying a (non-trivial) adapter on it."""
    model, processor = fresh_reference(SPECS["tiny"])
    save_artifact(model, processor, tmp_path / "base", ArtifactMetadata(kind="pretrained-base"))
    batch = encode_records(processor, corpus.select(trainable=True)[:4], corpus.root).batch(range(4))
    base_logits = logits(model, batch)
    torch.manual_seed(0)
    peft_model = add_lora(model, LoraSettings(rank=4, alpha=8))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)  # fresh adapters are a no-op (B = 0); make this one count
    return tmp_path, peft_model, processor, batch, base_logits


def test_adapter_artifact_holds_only_adapter_and_metadata(setup):
    root, peft_model, processor, batch, base_logits = setup
    adapted = logits(peft_model, batch)
    assert not torch.allclose(adapted, base_logits)
    base = BaseRef.of(root / "base")
    digest = save_artifact(peft_model, processor, root / "a", ArtifactMetadata(kind="fine-tuned"), base=base)
    assert sorted(p.name for p in (root / "a").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", METADATA_FILE]
    base_bytes = sum(p.stat().st_size for p in (root / "base").iterdir())
    assert sum(p.stat().st_size for p in (root / "a").iterdir()) < base_bytes / 10
    metadata = read_metadata(root / "a")
    assert metadata.base_digest == base.digest == artifact_digest(root / "base")
    assert metadata.base_path == str((root / "base").resolve()) and is_adapter_artifact(root / "a")
    assert json.loads((root / "a" / "adapter_config.json").read_text())["base_model_name_or_path"] is None
    # saving merged nothing: the model still carries its adapter, the base files are unchanged
    assert isinstance(peft_model, PeftModel) and torch.equal(logits(peft_model, batch), adapted)
    assert artifact_digest(root / "base") == base.digest

    loaded = load_model(root / "a")
    assert isinstance(loaded.model, PeftModel) and loaded.base == base and loaded.family.name == "llava"
    assert torch.allclose(logits(loaded.model, batch), adapted, atol=1e-5)
    with loaded.model.disable_adapter():
        assert torch.allclose(logits(loaded.model, batch), base_logits, atol=1e-6)
    assert loaded.base_for_adapters() == base  # an unlearned child references the same base
    assert artifact_digest(root / "a") == digest  # loading never touches the files


def test_same_adapter_same_digest_and_digest_covers_metadata(setup):
    root, peft_model, processor, _, _ = setup
    base = BaseRef.of(root / "base")
    first = save_artifact(peft_model, processor, root / "a", ArtifactMetadata(kind="fine-tuned"), base=base)
    assert save_artifact(peft_model, processor, root / "b", ArtifactMetadata(kind="fine-tuned"),
                         base=base) == first
    meta = json.loads((root / "b" / METADATA_FILE).read_text())
    meta["base_digest"] = "0" * 64
    (root / "b" / METADATA_FILE).write_text(json.dumps(meta))
    assert artifact_digest(root / "b") != first


def test_base_is_found_on_the_search_path_and_checked_by_digest(setup, monkeypatch):
    root, peft_model, processor, batch, _ = setup
    base = BaseRef.of(root / "base")
    save_artifact(peft_model, processor, root / "a", ArtifactMetadata(kind="fine-tuned"), base=base)
    adapted = logits(peft_model, batch)
    (root / "store").mkdir()
    shutil.move(root / "base", root / "store" / "moved")
    with pytest.raises(ModelLoadError, match=f"sha256:{base.digest}.*was not found"):
        load_model(root / "a")
    loaded = load_model(root / "a", base_search_path=[root / "store"])
    assert loaded.base.path == (root / "store" / "moved").resolve()
    assert torch.allclose(logits(loaded.model, batch), adapted, atol=1e-5)
    monkeypatch.setenv(BASE_PATH_ENV, str(root / "store" / "moved"))
    assert load_model(root / "a").base.digest == base.digest

    # a base whose bytes changed is never used, even at the recorded path
    shutil.move(root / "store" / "moved", root / "base")
    monkeypatch.delenv(BASE_PATH_ENV)
    config = json.loads((root / "base" / "config.json").read_text())
    config["text_config"]["rms_norm_eps"] = 1e-3
    (root / "base" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="none has that digest"):
        load_model(root / "a")


def test_adapter_artifacts_need_a_full_base(setup):
    root, peft_model, processor, _, _ = setup
    with pytest.raises(ValueError, match="references its base"):
        save_artifact(peft_model, processor, root / "a", ArtifactMetadata(kind="fine-tuned"))
    base = BaseRef.of(root / "base")
    save_artifact(peft_model, processor, root / "a", ArtifactMetadata(kind="fine-tuned"), base=base)
    with pytest.raises(ValueError, match="not a full model artifact"):
        BaseRef.of(root / "a")  # no adapter on an adapter
    with pytest.raises(ValueError, match="only for adapters"):
        save_artifact(peft_model.get_base_model(), processor, root / "c", ArtifactMetadata(kind="x"),
                      base=base)
    assert not (root / "c").exists()


def test_wrapping_a_model_in_adapters_prints_no_deprecation_warning(tmp_path) -> None:
    """peft reads a deprecated transformers alias on every wrap; users saw its FutureWarning on every run."""
    import warnings

    from mllm.models.lora import load_adapter, save_adapter
    from mllm.train.recipe import fresh_reference

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        wrapped = add_lora(fresh_reference(SPECS["tiny"])[0], LoraSettings(rank=2, alpha=2))
        save_adapter(wrapped, tmp_path / "a")
        load_adapter(fresh_reference(SPECS["tiny"])[0], tmp_path / "a")


def test_an_adapter_missing_a_tensor_is_refused(setup):
    """peft leaves a missing adapter tensor at its random initialisation (a random ``lora_A`` times a
    trained ``lora_B``: another model at every load); the loader refuses the artifact instead."""
    from safetensors.torch import load_file, save_file

    from mllm.models.lora import ADAPTER_WEIGHTS

    root, peft_model, processor, _, _ = setup
    save_artifact(peft_model, processor, root / "a", ArtifactMetadata(kind="fine-tuned"),
                  base=BaseRef.of(root / "base"))
    weights = root / "a" / ADAPTER_WEIGHTS
    tensors = load_file(weights)
    del tensors[next(k for k in sorted(tensors) if "lora_A" in k)]
    save_file(tensors, weights)
    with pytest.raises(ModelLoadError, match="does not fit its base.*adapter tensor"):
        load_model(root / "a")
