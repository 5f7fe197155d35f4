"""Load a model and its processor from a local directory, never from a model hub.

Works for any checkpoint transformers maps to ``AutoModelForImageTextToText`` (LLaVA, Qwen2-VL,
Qwen2.5-VL, ...) and for Oblivio's own artifacts. A string that is not an existing directory is
refused: there is no network here, and a compliance record must name the exact bytes it used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .artifact import ArtifactMetadata, read_metadata

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelLoadError(ValueError):
    """The path is not a loadable local model directory; the message says why and what to do."""


@dataclass
class LoadedModel:
    """A model, its processor, and Oblivio metadata when the directory is an Oblivio artifact."""

    model: Any
    processor: Any
    path: Path
    metadata: ArtifactMetadata | None


def check_model_dir(path: Path | str) -> Path:
    """Return ``path`` as a directory holding a model, or raise :class:`ModelLoadError`."""
    text = str(path)
    root = Path(path).expanduser()
    if not root.exists():
        if _HUB_NAME.match(text) and not text.startswith("."):
            raise ModelLoadError(
                f"'{text}' looks like a model-hub name, not a local directory. Oblivio never downloads "
                "models: download the checkpoint yourself and pass its directory.")
        raise ModelLoadError(f"model directory '{text}' does not exist")
    if not root.is_dir():
        raise ModelLoadError(f"'{text}' is a file; pass the model directory")
    if not (root / "config.json").is_file():
        if (root / "adapter_config.json").is_file():
            raise ModelLoadError(f"'{text}' is a LoRA adapter, not a model: load its base model with "
                                 "load_model() and apply the adapter with mllm.models.lora.load_adapter()")
        raise ModelLoadError(f"'{text}' is not a model directory (no config.json)")
    return root


def load_model(path: Path | str, *, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load model + processor from a local directory, in eval mode, with ``local_files_only=True``."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    root = check_model_dir(path)
    try:
        model = AutoModelForImageTextToText.from_pretrained(root, local_files_only=True, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load an image-text model from '{root}': {exc}") from exc
    try:
        processor = AutoProcessor.from_pretrained(root, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as exc:
        # e.g. Qwen2-VL processors include a video processor that needs torchvision
        raise ModelLoadError(f"'{root}' has no usable processor (tokenizer + image processor): "
                             f"{str(exc).strip()}") from exc
    return LoadedModel(model=model.eval(), processor=processor, path=root, metadata=read_metadata(root))
