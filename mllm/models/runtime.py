"""Where and in what precision a model runs: dtype, device placement, gradient checkpointing.

Kept out of the algorithms: training, unlearning and evaluation call the model through
:mod:`mllm.train.logprobs` and :mod:`mllm.evaluate.generate`, which move each batch to
:func:`input_device` and score in fp32 whatever the weights' dtype.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                                  "float16": torch.float16}
_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def parse_dtype(value: str | torch.dtype) -> torch.dtype:
    """``torch.float32`` / ``"float32"`` / ``"fp32"`` (and bf16, fp16 likewise) to a ``torch.dtype``."""
    if isinstance(value, torch.dtype):
        if value not in DTYPES.values():
            raise ValueError(f"unsupported dtype {value}; use one of {', '.join(DTYPES)}")
        return value
    name = _ALIASES.get(value, value)
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {value!r}; use one of {', '.join(DTYPES)} (or fp32, bf16, fp16)")
    return DTYPES[name]


def autocast_for(model: torch.nn.Module, dtype: str | None) -> contextlib.AbstractContextManager:
    """Mixed-precision compute for ``model``'s forward pass: ``torch.autocast`` in bfloat16 on the device
    of its first parameter, weights and optimizer state staying as they are; ``None`` runs in the
    weights' own precision. float16 is refused: without loss scaling its gradients underflow."""
    if dtype is None:
        return contextlib.nullcontext()
    if parse_dtype(dtype) is not torch.bfloat16:
        raise ValueError(f"autocast trains in bfloat16 only, not {dtype!r} (float16 would need loss scaling)")
    return torch.autocast(device_type=next(model.parameters()).device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """torch's CPU threads set to ``count`` inside the block. A CPU result depends on the thread count
    (it splits the reductions), so a recipe that must give the same model wherever it runs fixes it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def device_map_for(device: str | None) -> str | dict[str, str] | None:
    """A ``from_pretrained`` ``device_map`` for a device name: ``None``/``"cpu"`` load on the CPU,
    ``"auto"`` spreads the model over the visible accelerators, ``"cuda"`` / ``"cuda:1"`` put it on one."""
    if device is None or device == "cpu":
        return None
    if device == "auto":
        return "auto"
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():  # torch.device checks the name
        raise ValueError(f"device {device!r} requested but no CUDA device is available")
    return {"": device}


DEVICE_ENV, DTYPE_ENV = "OBLIVIO_DEVICE", "OBLIVIO_DTYPE"


def worker_device() -> str | None:
    """Where a worker runs the models it unlearns, retrains and verifies: ``$OBLIVIO_DEVICE``
    (``cpu``, ``cuda``, ``cuda:1``, ``auto``; unset: the CPU). A deployment setting, never an
    algorithm's; a name torch does not know, or CUDA where there is none, is a :class:`ValueError`."""
    device = os.environ.get(DEVICE_ENV) or None
    try:
        device_map_for(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{DEVICE_ENV}={device!r} is not a usable device: {exc}") from None
    return device


def worker_placement() -> dict[str, Any]:
    """``load_model`` keywords for a worker: :func:`worker_device` and ``$OBLIVIO_DTYPE`` (float32,
    bfloat16, float16; unset: float32, the precision the reference models are trained in)."""
    try:
        dtype = parse_dtype(os.environ.get(DTYPE_ENV) or "float32")
    except ValueError as exc:
        raise ValueError(f"{DTYPE_ENV}: {exc}") from None
    return {"dtype": dtype, "device_map": device_map_for(worker_device())}


def place(model: torch.nn.Module, device: str | None) -> torch.nn.Module:
    """Move a model built in memory (not loaded) to ``device`` (``"auto"``: the first GPU if any)."""
    if device is None or device == "cpu":
        return model
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(torch.device(device))


def input_device(model: Any) -> torch.device:
    """Where inputs go: the device of the input embeddings (the first shard under a ``device_map``)."""
    return model.get_input_embeddings().weight.device


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute activations in the backward pass instead of storing them, and still train adapters.

    With frozen embeddings nothing entering a checkpointed block requires grad, and reentrant
    checkpointing then returns no gradients for the LoRA weights inside it: training silently does
    nothing. Non-reentrant checkpointing is used, and the input embeddings' output is made to require
    grad as well (exactly one hook, whether or not transformers added its own).
    """
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.disable_input_require_grads()
    model.enable_input_require_grads()
    model.config.use_cache = False
