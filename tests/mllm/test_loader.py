from __future__ import annotations

import importlib.util

import pytest
import torch

from mllm.models.artifact import ArtifactMetadata, save_artifact
from mllm.models.loader import ModelLoadError, load_model
from mllm.models.lora import LoraSettings, add_lora, save_adapter
from mllm.models.specs import SPECS
from mllm.models.tokenizer import train_tokenizer
from mllm.train.recipe import fresh_reference


@pytest.mark.parametrize("name", ["llava-hf/llava-1.5-7b-hf", "Qwen/Qwen2-VL-2B-Instruct"])
def test_refuses_hub_names(name):
    with pytest.raises(ModelLoadError, match="looks like a model-hub name.*never downloads"):
        load_model(name)


def test_refuses_missing_paths_and_files(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nothing-here")
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(tmp_path / "weights.bin")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path)


def test_refuses_an_adapter_directory_with_advice(tmp_path, corpus):
    model, _ = fresh_reference(SPECS["tiny"])
    save_adapter(add_lora(model, LoraSettings(rank=2, alpha=2)), tmp_path / "adapter")
    with pytest.raises(ModelLoadError, match="LoRA adapter.*load_adapter"):
        load_model(tmp_path / "adapter")


def test_refuses_a_directory_without_processor(tmp_path, corpus):
    model, _ = fresh_reference(SPECS["tiny"])
    model.save_pretrained(tmp_path / "bare")
    with pytest.raises(ModelLoadError, match="no usable processor"):
        load_model(tmp_path / "bare")


def test_loads_a_local_llava_directory(tmp_path, corpus):
    model, processor = fresh_reference(SPECS["tiny"])
    save_artifact(model, processor, tmp_path / "m", ArtifactMetadata(kind="reference"))
    loaded = load_model(str(tmp_path / "m"))
    assert type(loaded.model).__name__ == "LlavaForConditionalGeneration"
    assert not loaded.model.training
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.processor.tokenizer.image_token_id == loaded.model.config.image_token_index
    assert loaded.metadata.kind == "reference"


def test_qwen2_vl_style_directory(tmp_path):
    """A Qwen2-VL checkpoint resolves to its model class; its processor needs torchvision (video)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    tokenizer = train_tokenizer(["a tiny vocabulary 123"] * 4, vocab_size=300)
    config = Qwen2VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                     "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id},
        vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2},
        image_token_id=tokenizer.image_token_id, video_token_id=tokenizer.pad_token_id)
    Qwen2VLForConditionalGeneration(config).save_pretrained(tmp_path / "qwen")
    Qwen2VLImageProcessorPil().save_pretrained(tmp_path / "qwen")
    tokenizer.save_pretrained(tmp_path / "qwen")
    if importlib.util.find_spec("torchvision") is None:
        with pytest.raises(ModelLoadError, match="no usable processor.*[Tt]orchvision"):
            load_model(tmp_path / "qwen")
    else:
        assert type(load_model(tmp_path / "qwen").model).__name__ == "Qwen2VLForConditionalGeneration"

