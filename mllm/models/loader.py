"""Load a model and its processor from a local directory, never from a model hub.

Works for LLaVA, Qwen2-VL and Qwen2.5-VL checkpoints (:mod:`mllm.models.families`) and for Oblivio's
own artifacts. An adapter artifact (:mod:`mllm.models.artifact`) is loaded by finding its base — the
path recorded in its metadata, then each directory of the base search path (``base_search_path``
and the ``OBLIVIO_BASE_PATH`` environment variable, ``os.pathsep``-separated; a directory there may be
a model itself or hold models as subdirectories) — whose content digest matches the recorded one,
loading it and applying the adapter. A base whose bytes changed is never used.

A string that is not an existing directory is refused: there is no network here, and a compliance
record must name the exact bytes it used.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from .artifact import ADAPTER_CONFIG, ArtifactMetadata, BaseRef, artifact_digest, read_metadata
from .families import ModelFamily, UnknownFamilyError, family_for_model_type
from .lora import load_adapter
from .runtime import parse_dtype

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
BASE_PATH_ENV = "OBLIVIO_BASE_PATH"


class ModelLoadError(ValueError):
    """The path is not a loadable local model directory; the message says why and what to do."""


@dataclass
class LoadedModel:
    """A model, its processor and family, and Oblivio metadata when the directory is an Oblivio artifact.

    For an adapter artifact ``model`` is a ``PeftModel`` and ``base`` the verified full artifact under it.
    """

    model: Any
    processor: Any
    path: Path
    metadata: ArtifactMetadata | None
    family: ModelFamily
    base: BaseRef | None = None

    def base_for_adapters(self) -> BaseRef:
        """The full artifact that adapters trained on this model reference: this artifact's own base
        for an adapter artifact (its adapter keeps training), else the directory itself."""
        return self.base if self.base is not None else BaseRef.of(self.path)


def check_model_dir(path: Path | str) -> Path:
    """``path`` as a directory holding a model or an adapter artifact, or raise :class:`ModelLoadError`."""
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
        if (root / ADAPTER_CONFIG).is_file():
            metadata = read_metadata(root)
            if metadata is not None and metadata.base_digest is not None:
                return root
            raise ModelLoadError(f"'{text}' is a bare LoRA adapter with no Oblivio metadata naming its base: "
                                 "load the base with load_model() and apply the adapter with "
                                 "mllm.models.lora.load_adapter()")
        raise ModelLoadError(f"'{text}' is not a model directory (no config.json)")
    return root


def _candidates(recorded: str | None, search_path: Sequence[Path | str]) -> Iterator[Path]:
    if recorded:
        yield Path(recorded)
    entries = [*search_path, *filter(None, os.environ.get(BASE_PATH_ENV, "").split(os.pathsep))]
    for entry in map(Path, entries):
        yield entry
        if entry.is_dir():
            yield from sorted(child for child in entry.iterdir() if child.is_dir())


def find_full_artifact(digest: str, recorded_path: str | None, search_path: Sequence[Path | str] = (), *,
                       what: str = "the base model") -> BaseRef:
    """The full artifact whose content digest is ``digest``: at ``recorded_path``, else on the search path
    (see the module docstring); :class:`ModelLoadError` naming ``what`` when none matches."""
    looked: list[str] = []
    for candidate in _candidates(recorded_path, search_path):
        if not (candidate / "config.json").is_file():
            continue
        looked.append(str(candidate))
        if artifact_digest(candidate) == digest:
            return BaseRef(path=candidate.resolve(), digest=digest)
    raise ModelLoadError(
        f"{what} (sha256:{digest}) was not found: {len(looked)} model directories checked, none has "
        f"that digest (a base that changed is never used). Put the base at its recorded path or on the "
        f"search path ({BASE_PATH_ENV}).")


def resolve_base(root: Path, metadata: ArtifactMetadata,
                 search_path: Sequence[Path | str] = ()) -> BaseRef:
    """The full artifact with the digest ``metadata.base_digest`` (see the module docstring)."""
    return find_full_artifact(metadata.base_digest, metadata.base_path, search_path,
                              what=f"the base model of adapter artifact '{root}'")


#: What reading a model's weights raises when the files are missing, truncated, corrupt or of another
#: shape than the config says (transformers reports mismatched sizes as a ``RuntimeError``).
_UNREADABLE_WEIGHTS = (OSError, ValueError, KeyError, RuntimeError, SafetensorError)


def _model_type(root: Path) -> str:
    try:
        return str(json.loads((root / "config.json").read_text(encoding="utf-8"))["model_type"])
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"'{root}/config.json' has no readable model_type: {exc}") from exc


def _load_full(root: Path, dtype: torch.dtype, device_map: str | dict[str, Any] | None
               ) -> tuple[Any, Any, ModelFamily]:
    from transformers import AutoModelForImageTextToText

    try:
        family = family_for_model_type(_model_type(root))
    except UnknownFamilyError as exc:
        raise ModelLoadError(f"cannot load '{root}': {exc}") from exc
    try:
        model, info = AutoModelForImageTextToText.from_pretrained(
            root, local_files_only=True, dtype=dtype, device_map=device_map, output_loading_info=True)
    except _UNREADABLE_WEIGHTS as exc:
        raise ModelLoadError(f"cannot load an image-text model from '{root}': {exc}") from exc
    mismatched = (str(key[0]) for key in info.get("mismatched_keys", ()))
    absent = sorted({*info.get("missing_keys", ()), *mismatched})
    if absent:  # transformers would draw them at random: not the checkpoint, and another model each load
        raise ModelLoadError(f"cannot load an image-text model from '{root}': {len(absent)} weight tensor(s) "
                             f"the config needs are missing or of another shape (first: {absent[0]})")
    try:
        processor = family.load_processor(root)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as exc:
        raise ModelLoadError(f"'{root}' has no usable processor (tokenizer + image processor): "
                             f"{str(exc).strip()}") from exc
    return model.eval(), processor, family


def load_model(path: Path | str, *, dtype: str | torch.dtype = torch.float32,
               device_map: str | dict[str, Any] | None = None,
               base_search_path: Sequence[Path | str] = ()) -> LoadedModel:
    """Load model + processor from a local directory, in eval mode, with ``local_files_only=True``.

    ``dtype`` (fp32 / bf16 / fp16) is the weights' dtype; scores are computed in fp32 regardless.
    ``device_map`` is passed to ``from_pretrained`` (see :func:`mllm.models.runtime.device_map_for`).
    An adapter artifact loads its base (verified by digest) and applies the adapter, frozen.
    """
    root = check_model_dir(path)
    dtype = parse_dtype(dtype)
    metadata = read_metadata(root)
    if metadata is None or metadata.base_digest is None:
        model, processor, family = _load_full(root, dtype, device_map)
        return LoadedModel(model=model, processor=processor, path=root, metadata=metadata, family=family)
    base = resolve_base(root, metadata, base_search_path)
    model, processor, family = _load_full(base.path, dtype, device_map)
    try:
        adapted = load_adapter(model, root)
    except _UNREADABLE_WEIGHTS as exc:
        raise ModelLoadError(f"the adapter in '{root}' does not fit its base: {exc}") from exc
    return LoadedModel(model=adapted.eval(), processor=processor, path=root, metadata=metadata, family=family,
                       base=base)
