"""LoRA adapters on every linear layer of the language model, never the vision tower (peft).

As MedForget: r=16, alpha=16, on the attention (q, k, v, o) and MLP (gate, up, down) projections of
the language model. A plain ``target_modules=["q_proj", ...]`` would also match the CLIP vision
tower's attention (and Qwen2.5-VL's vision MLP), so the default is a regex restricted to modules
under ``language_model`` — the module path in LLaVA, Qwen2-VL and Qwen2.5-VL checkpoints alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from safetensors import safe_open
from transformers import PreTrainedModel

ADAPTER_WEIGHTS = "adapter_model.safetensors"  # what save_adapter writes beside adapter_config.json
LANGUAGE_MODEL_LINEAR = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass(frozen=True)
class LoraSettings:
    """Adapter shape; the defaults follow MedForget (r=16, alpha=16, all linear layers of the LM)."""

    rank: int = 16
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str = LANGUAGE_MODEL_LINEAR


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """Wrapping a model, peft reads transformers' deprecated ``is_gradient_checkpointing`` alias: a
    FutureWarning on every run that no user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                category=FutureWarning)
        yield


def add_lora(model: PreTrainedModel, settings: LoraSettings) -> PeftModel:
    """Wrap a plain ``model`` with fresh adapters; only adapter weights stay trainable."""
    if isinstance(model, PeftModel):
        raise TypeError("the model already carries an adapter; use lora_for_training() to keep training it")
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=settings.target_modules, bias="none")
    with _quiet_peft():
        return get_peft_model(model, config)


def lora_for_training(model: Any, settings: LoraSettings) -> PeftModel:
    """Adapters to train on ``model``: fresh ones (``settings``) on a plain model; on a model loaded from
    an adapter artifact, its own adapter (its shape wins), so the result is again one adapter on the
    same base. Everything but the adapter weights is frozen."""
    if not isinstance(model, PeftModel):
        return add_lora(model, settings)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    return model


def save_adapter(model: PeftModel, out: Path | str) -> None:
    """Write ``adapter_config.json`` + :data:`ADAPTER_WEIGHTS` to ``out``."""
    model.save_pretrained(out, safe_serialization=True)


def load_adapter(model: PreTrainedModel, path: Path | str, *, trainable: bool = False) -> PeftModel:
    """Apply a saved adapter to its base ``model``; ``ValueError`` when the file lacks an adapter
    tensor the config declares (peft would leave it at its random initialisation: another model at
    every load)."""
    with _quiet_peft():
        adapted = PeftModel.from_pretrained(model, path, is_trainable=trainable, local_files_only=True)
    with safe_open(str(Path(path) / ADAPTER_WEIGHTS), framework="pt") as saved:
        missing = set(get_peft_model_state_dict(adapted)) - set(saved.keys())
    if missing:
        raise ValueError(f"{len(missing)} adapter tensor(s) declared by the config are missing "
                         f"(first: {min(missing)})")
    return adapted


def merge_lora(model: PeftModel) -> PreTrainedModel:
    """Fold the adapters into the base weights (in memory) and return the plain model."""
    return model.merge_and_unload()
