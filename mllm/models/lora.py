"""LoRA adapters on the language model only (peft).

A plain ``target_modules=["q_proj", "v_proj"]`` also matches the attention of the CLIP vision tower;
the regex below restricts adapters to ``language_model`` attention projections, which is also the
module path in Qwen2-VL-style checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

LANGUAGE_MODEL_ATTENTION = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"


@dataclass(frozen=True)
class LoraSettings:
    """Adapter shape; the defaults follow MedForget (r=16, alpha=16)."""

    rank: int = 16
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str = LANGUAGE_MODEL_ATTENTION


def add_lora(model: PreTrainedModel, settings: LoraSettings) -> PeftModel:
    """Wrap ``model`` with fresh adapters; only adapter weights stay trainable."""
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=settings.target_modules, bias="none")
    return get_peft_model(model, config)


def save_adapter(model: PeftModel, out: Path | str) -> None:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors`` to ``out``."""
    model.save_pretrained(out, safe_serialization=True)


def load_adapter(model: PreTrainedModel, path: Path | str, *, trainable: bool = False) -> PeftModel:
    """Apply a saved adapter to its base ``model``."""
    return PeftModel.from_pretrained(model, path, is_trainable=trainable, local_files_only=True)


def merge_lora(model: PeftModel) -> PreTrainedModel:
    """Fold the adapters into the base weights and return the plain model."""
    return model.merge_and_unload()
