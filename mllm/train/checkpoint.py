"""Resumable training state: trainable weights, optimizer, scheduler, step, RNG, run history.

One ``trainer_state.pt`` file, written atomically (temporary file + rename) and read with
``weights_only=True``. Only trainable parameters are stored: the caller rebuilds the same starting
model (same seed or base artifact, same adapters) and the checkpoint restores what training changed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "trainer_state.pt"


class CheckpointMismatchError(ValueError):
    """The checkpoint was written by another recipe or for another model."""


def checkpoint_dir_for(out: Path) -> Path:
    """Where the resumable state of a run writing artifact ``out`` lives: beside the artifact (so it
    never enters the artifact's digest)."""
    return out.with_name(out.name + ".ckpt")


def checkpoint_path(directory: Path | str) -> Path:
    return Path(directory) / CHECKPOINT_FILE


def save_checkpoint(directory: Path | str, state: dict[str, Any]) -> Path:
    path = checkpoint_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)
    return path


def load_checkpoint(directory: Path | str) -> dict[str, Any]:
    path = checkpoint_path(directory)
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=True)
