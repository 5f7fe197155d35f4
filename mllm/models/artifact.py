"""Model artifacts on disk: ``save_pretrained`` output (safetensors) plus ``oblivio.json``.

An artifact is identified by its **content digest**: SHA-256 over every file in the directory,
in sorted order of relative POSIX paths, each contributing ``path NUL sha256(file) LF``. The
metadata carries no timestamps, so saving the same weights twice gives the same digest.

Loading an artifact never changes it. Re-saving a loaded model reproduces its directory byte for
byte, with one caveat: transformers adds a few fields on load (``dtype`` in the configs, loader
flags in ``tokenizer_config.json``) that a freshly built model lacks, so the load → save cycle is a
fixed point from the first reload on, not from the very first save.
"""

from __future__ import annotations

import enum
import hashlib
import json
import platform
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from .lora import merge_lora, save_adapter

METADATA_FILE = "oblivio.json"
METADATA_VERSION = 1


def library_versions() -> dict[str, str]:
    import peft
    import safetensors
    import tokenizers
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__,
            "tokenizers": tokenizers.__version__, "safetensors": safetensors.__version__}


class ArtifactKind(enum.StrEnum):
    """What an artifact is. Only a pretrained base or a fresh reference model never saw a corpus."""

    REFERENCE = "reference"  # freshly initialised, untrained
    PRETRAINED_BASE = "pretrained-base"  # aligned on the public teaching file only
    FINE_TUNED = "fine-tuned"
    RETRAIN_ORACLE = "retrain-oracle"  # trained from a clean start without the excluded records
    UNLEARNED = "unlearned"  # an unlearning method applied to its parent (mllm.unlearn)


@dataclass(frozen=True)
class ArtifactMetadata:
    """What produced an artifact. ``parent_digest`` names the artifact it was trained from."""

    kind: str
    seed: int | None = None
    parameters: int | None = None
    reference_spec: dict[str, Any] | None = None
    corpus_sha256: str | None = None
    training: dict[str, Any] | None = None
    parent_digest: str | None = None
    versions: dict[str, str] = field(default_factory=library_versions)
    metadata_version: int = METADATA_VERSION


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_digest(root: Path | str) -> str:
    """Content digest of a directory (see the module docstring for the exact definition)."""
    root = Path(root)
    files = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def save_artifact(model: Any, processor: Any, out: Path | str, metadata: ArtifactMetadata) -> str:
    """Save model (safetensors), processor and metadata to ``out``; return the content digest.

    A ``PeftModel`` is saved as its adapter (in ``adapter/``) plus the merged plain model, so the
    artifact loads like any other; merging folds the adapter into ``model``'s base weights in place.
    ``out`` must not exist yet. Files are written to a temporary sibling directory that is renamed
    into place at the end, so an interrupted save never leaves a half-written artifact.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new directory for the artifact")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if isinstance(model, PeftModel):
            save_adapter(model, staging / "adapter")
            model = merge_lora(model)
        model.save_pretrained(staging, safe_serialization=True)
        processor.save_pretrained(staging)
        text = json.dumps(asdict(metadata), indent=2, sort_keys=True) + "\n"
        (staging / METADATA_FILE).write_text(text, encoding="utf-8")
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return artifact_digest(out)


def read_metadata(root: Path | str) -> ArtifactMetadata | None:
    """The artifact's metadata, or ``None`` for a directory Oblivio did not write."""
    path = Path(root) / METADATA_FILE
    if not path.is_file():
        return None
    return ArtifactMetadata(**json.loads(path.read_text(encoding="utf-8")))
