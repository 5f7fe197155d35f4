from __future__ import annotations

import pytest
import torch

from mllm.models.artifact import ArtifactMetadata, save_artifact
from mllm.models.families import QWEN2_VL
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


def test_refuses_a_bare_adapter_directory_with_advice(tmp_path, corpus):
    model, _ = fresh_reference(SPECS["tiny"])
    save_adapter(add_lora(model, LoraSettings(rank=2, alpha=2)), tmp_path / "adapter")
    with pytest.raises(ModelLoadError, match="bare LoRA adapter.*load_adapter"):
        load_model(tmp_path / "adapter")


def test_refuses_a_directory_without_processor(tmp_path, corpus):
    model, _ = fresh_reference(SPECS["tiny"])
    model.save_pretrained(tmp_path / "bare")
    with pytest.raises(ModelLoadError, match="no usable processor"):
        load_model(tmp_path / "bare")


@pytest.mark.parametrize("damage", ["corrupt weights", "config of another shape", "a tensor missing"])
def test_refuses_weights_it_cannot_read_with_a_load_error(tmp_path, corpus, damage):
    """A truncated or foreign weights file is bad input (``oblivio verify`` exit 2), not a crash; nor is a
    checkpoint without a tensor its config needs loaded with that tensor drawn at random (a model
    that is not the checkpoint, and another one at each load)."""
    import json

    from safetensors.torch import load_file, save_file

    model, processor = fresh_reference(SPECS["tiny"])
    save_artifact(model, processor, tmp_path / "m", ArtifactMetadata(kind="reference"))
    if damage == "corrupt weights":
        (tmp_path / "m" / "model.safetensors").write_bytes(b"\xff" * 1000)
    elif damage == "a tensor missing":
        tensors = load_file(tmp_path / "m" / "model.safetensors")
        del tensors[sorted(tensors)[0]]
        save_file(tensors, tmp_path / "m" / "model.safetensors", metadata={"format": "pt"})
    else:
        config = json.loads((tmp_path / "m" / "config.json").read_text())
        config["text_config"]["intermediate_size"] += 8
        (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="cannot load an image-text model"):
        load_model(tmp_path / "m")


def test_loads_a_local_llava_directory(tmp_path, corpus):
    model, processor = fresh_reference(SPECS["tiny"])
    save_artifact(model, processor, tmp_path / "m", ArtifactMetadata(kind="reference"))
    loaded = load_model(str(tmp_path / "m"))
    assert type(loaded.model).__name__ == "LlavaForConditionalGeneration"
    assert not loaded.model.training
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.processor.tokenizer.image_token_id == loaded.model.config.image_token_index
    assert loaded.metadata.kind == "reference"


def test_loads_a_qwen2_vl_checkpoint_without_torchvision(tmp_path):
    """A Qwen2-VL directory as transformers writes it (no Oblivio metadata) loads with its processor:
    the image processor is the PIL one, there is no video processor, so torchvision is not needed."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    tokenizer = train_tokenizer(["a tiny vocabulary 123"] * 4, vocab_size=300, family=QWEN2_VL)
    config = Qwen2VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                     "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
                     "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id},
        vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2},
        image_token_id=tokenizer.image_token_id, video_token_id=tokenizer.video_token_id)
    Qwen2VLForConditionalGeneration(config).save_pretrained(tmp_path / "qwen")
    Qwen2VLImageProcessorPil().save_pretrained(tmp_path / "qwen")
    tokenizer.save_pretrained(tmp_path / "qwen")
    loaded = load_model(tmp_path / "qwen", dtype="bf16")
    assert type(loaded.model).__name__ == "Qwen2VLForConditionalGeneration"
    assert loaded.family.name == "qwen2-vl" and loaded.metadata is None
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    assert loaded.processor.image_token_id == loaded.model.config.image_token_id


def test_refuses_unknown_model_types(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "whisper"}')
    with pytest.raises(ModelLoadError, match="'whisper' is not supported"):
        load_model(tmp_path)


def test_a_worker_holds_models_where_and_how_its_deployment_says(tmp_path, monkeypatch):
    """``OBLIVIO_DEVICE`` / ``OBLIVIO_DTYPE`` place what the pipeline unlearns and verifies (a 7B
    checkpoint in bf16 on a GPU); unset, the CPU in fp32; a bad value is a clear error, not a crash
    deep in torch."""
    from mllm.models.runtime import worker_placement
    from mllm.verify import subject

    model, processor = fresh_reference(SPECS["tiny"])
    save_artifact(model, processor, tmp_path / "m", ArtifactMetadata(kind="reference"))
    monkeypatch.delenv("OBLIVIO_DEVICE", raising=False)
    monkeypatch.delenv("OBLIVIO_DTYPE", raising=False)
    assert worker_placement() == {"dtype": torch.float32, "device_map": None}
    monkeypatch.setenv("OBLIVIO_DTYPE", "bf16")
    assert next(subject("original", tmp_path / "m").model.parameters()).dtype == torch.bfloat16
    bad = (("OBLIVIO_DTYPE", "fp8", "OBLIVIO_DTYPE: unknown dtype"),
           ("OBLIVIO_DEVICE", "gpu-please", "OBLIVIO_DEVICE='gpu-please' is not a usable"))
    for name, value, message in bad:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=message):
            worker_placement()
        monkeypatch.delenv(name)
    if not torch.cuda.is_available():
        monkeypatch.setenv("OBLIVIO_DEVICE", "cuda")
        with pytest.raises(ValueError, match="no CUDA device is available"):
            worker_placement()
