from __future__ import annotations

import json

import pytest
import torch

from mllm.models.artifact import (
    METADATA_FILE,
    ArtifactMetadata,
    artifact_digest,
    read_metadata,
    save_artifact,
)
from mllm.models.loader import load_model
from mllm.models.lora import LoraSettings, add_lora, load_adapter, merge_lora, save_adapter
from mllm.models.reference import count_parameters
from mllm.models.specs import SPECS
from mllm.train.encode import encode_records
from mllm.train.recipe import fresh_reference


@pytest.fixture(scope="module")
def reference(corpus):
    return fresh_reference(SPECS["tiny"])


@pytest.fixture(scope="module")
def batch(reference, corpus):
    _, processor = reference
    return encode_records(processor, corpus.select(trainable=True)[:4], corpus.root).batch(range(4))


def logits(model, batch):
    with torch.no_grad():
        return model(**batch.model_inputs()).logits


def test_reference_model_matches_its_tokenizer(reference, batch):
    model, processor = reference
    spec = SPECS["tiny"]
    assert model.config.image_token_index == processor.tokenizer.image_token_id
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    assert (batch.input_ids == processor.tokenizer.image_token_id).sum(dim=1).tolist() == [
        spec.image_seq_length] * 4
    assert logits(model, batch).shape[:2] == batch.input_ids.shape
    assert 0.3e6 < count_parameters(model) < 2e6


def test_same_seed_same_weights(corpus, reference, batch):
    again, _ = fresh_reference(SPECS["tiny"])
    assert torch.equal(logits(again, batch), logits(reference[0], batch))


def test_save_load_round_trip(tmp_path, reference, batch):
    model, processor = reference
    metadata = ArtifactMetadata(kind="reference", seed=0, corpus_sha256="abc")
    digest = save_artifact(model, processor, tmp_path / "a", metadata)
    assert digest == artifact_digest(tmp_path / "a")
    assert (tmp_path / "a" / "model.safetensors").is_file()
    assert read_metadata(tmp_path / "a") == metadata

    loaded = load_model(tmp_path / "a")
    assert torch.equal(logits(loaded.model, batch), logits(model, batch))
    assert loaded.metadata == metadata
    assert artifact_digest(tmp_path / "a") == digest  # loading never touches the files


def test_load_save_cycle_is_a_fixed_point(tmp_path, reference, batch):
    """Re-saving a loaded artifact reproduces it byte for byte (from the first reload on, see artifact.py)."""
    metadata = ArtifactMetadata(kind="reference")
    save_artifact(*reference, tmp_path / "a", metadata)
    first = load_model(tmp_path / "a")
    digest = save_artifact(first.model, first.processor, tmp_path / "b", metadata)
    second = load_model(tmp_path / "b")
    assert save_artifact(second.model, second.processor, tmp_path / "c", metadata) == digest
    assert torch.equal(logits(second.model, batch), logits(reference[0], batch))


def test_digest_covers_every_file(tmp_path, reference):
    model, processor = reference
    digest = save_artifact(model, processor, tmp_path / "a", ArtifactMetadata(kind="reference"))
    meta = json.loads((tmp_path / "a" / METADATA_FILE).read_text())
    meta["seed"] = 1
    (tmp_path / "a" / METADATA_FILE).write_text(json.dumps(meta))
    assert artifact_digest(tmp_path / "a") != digest


def test_save_refuses_existing_directory(tmp_path, reference):
    (tmp_path / "a").mkdir()
    with pytest.raises(FileExistsError):
        save_artifact(*reference, tmp_path / "a", ArtifactMetadata(kind="reference"))


def test_lora_covers_every_linear_layer_of_the_language_model_only(reference):
    model, _ = reference
    linear = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    language = {name for name in linear if ".language_model." in f".{name}"}
    assert linear - language >= {"lm_head"} and any("vision_tower" in name for name in linear - language)
    torch.manual_seed(0)
    peft_model = add_lora(model, LoraSettings(rank=4, alpha=8))
    adapted = {name.rsplit(".lora_A", 1)[0].replace("base_model.model.", "", 1)
               for name, _ in peft_model.named_parameters() if ".lora_A" in name}
    assert adapted == language  # every projection of every layer: q k v o gate up down
    assert {name.rsplit(".", 1)[1] for name in adapted} == {"q_proj", "k_proj", "v_proj", "o_proj",
                                                            "gate_proj", "up_proj", "down_proj"}
    assert LoraSettings() == LoraSettings(rank=16, alpha=16, dropout=0.0)
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    peft_model.unload()


def test_lora_adapter_save_load_merge(tmp_path, corpus, batch):
    base, _ = fresh_reference(SPECS["tiny"])
    before = logits(base, batch)
    torch.manual_seed(0)
    peft_model = add_lora(base, LoraSettings(rank=4, alpha=8))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)  # fresh adapters are a no-op (B = 0); make this one count
    adapted = logits(peft_model, batch)
    assert not torch.allclose(adapted, before)
    with peft_model.disable_adapter():
        assert torch.equal(logits(peft_model, batch), before)
    save_adapter(peft_model, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    reloaded = load_adapter(fresh_reference(SPECS["tiny"])[0], tmp_path / "adapter")
    assert torch.allclose(logits(reloaded, batch), adapted, atol=1e-5)
    merged = merge_lora(reloaded)
    assert type(merged).__name__ == "LlavaForConditionalGeneration"
    assert torch.allclose(logits(merged, batch), adapted, atol=1e-4)
