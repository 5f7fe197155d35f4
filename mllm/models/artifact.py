"""Model artifacts on disk: full models and adapter-only artifacts, each with ``oblivio.json``.

A **full artifact** is ``save_pretrained`` output (safetensors weights, config, processor). An
**adapter artifact** is a LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``) plus
metadata naming its base — a full artifact — by content digest and by the path it was saved from.
Fine-tuning with LoRA and every unlearned model are adapter artifacts: megabytes, not a copy of a
7B base, and the adapter is never merged into (and so never lost in) the base weights.
:func:`mllm.models.loader.load_model` finds the base (recorded path, then a search path), checks
its digest and applies the adapter.

An artifact is identified by its **content digest**: SHA-256 over every file in the directory,
in sorted order of relative POSIX paths, each contributing ``path NUL sha256(file) LF``. For an
adapter artifact that covers adapter and metadata (and through the metadata, the base's digest).
The metadata carries no timestamps, so saving the same weights twice gives the same digest.

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

METADATA_FILE = "oblivio.json"
METADATA_VERSION = 2  # 2: base_digest / base_path of adapter artifacts
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def library_versions() -> dict[str, str]:
    import peft
    import safetensors
    import tokenizers
    import torch
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
    """What produced an artifact. ``parent_digest`` names the artifact it was trained from;
    ``base_digest`` / ``base_path`` (adapter artifacts only) the full artifact the adapter applies to."""

    kind: str
    seed: int | None = None
    parameters: int | None = None
    reference_spec: dict[str, Any] | None = None
    corpus_sha256: str | None = None
    training: dict[str, Any] | None = None
    parent_digest: str | None = None
    base_digest: str | None = None
    base_path: str | None = None
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


@dataclass(frozen=True)
class BaseRef:
    """A full artifact that adapter artifacts apply to: where it is and what its bytes are."""

    path: Path
    digest: str

    @classmethod
    def of(cls, path: Path | str) -> BaseRef:
        """Reference the full artifact in ``path`` (hashes it: seconds per GB)."""
        root = Path(path).resolve()
        if not (root / "config.json").is_file():
            raise ValueError(f"{root} is not a full model artifact (no config.json); an adapter's base "
                             "must hold the weights itself")
        return cls(path=root, digest=artifact_digest(root))


def is_adapter_artifact(root: Path | str) -> bool:
    """Whether ``root`` holds an adapter artifact (adapter files and metadata naming a base)."""
    metadata = read_metadata(root)
    has_base = metadata is not None and metadata.base_digest is not None
    return has_base and (Path(root) / ADAPTER_CONFIG).is_file()


def _write_adapter(model: Any, out: Path) -> None:
    """The adapter's two files, byte-reproducible: peft records the path the base was loaded from
    (a temporary directory, say) in ``adapter_config.json``; it is dropped, the metadata names the base."""
    from .lora import save_adapter

    save_adapter(model, out)
    (out / "README.md").unlink(missing_ok=True)  # peft's model card template
    config_path = out / ADAPTER_CONFIG
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = None
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_artifact(model: Any, processor: Any, out: Path | str, metadata: ArtifactMetadata, *,
                  base: BaseRef | None = None) -> str:
    """Save an artifact to ``out`` and return its content digest.

    A plain model is saved in full (weights, config, processor). A ``PeftModel`` is saved as an adapter
    artifact referencing ``base`` (required): only the adapter and the metadata, whose ``base_digest``
    and ``base_path`` are set from ``base``. The model is left as it was (nothing is merged).
    ``out`` must not exist yet. Files are written to a temporary sibling directory that is renamed
    into place at the end, so an interrupted save never leaves a half-written artifact.
    """
    from peft import PeftModel

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new directory for the artifact")
    adapter = isinstance(model, PeftModel)
    if adapter and base is None:
        raise ValueError("an adapter artifact references its base: pass base=BaseRef.of(<full artifact>)")
    if not adapter and base is not None:
        raise ValueError("a full model is saved with its weights; base= is only for adapters")
    if base is not None:
        metadata = replace(metadata, base_digest=base.digest, base_path=str(base.path))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if adapter:
            _write_adapter(model, staging)
        else:
            model.save_pretrained(staging, safe_serialization=True)
            processor.save_pretrained(staging)
        text = json.dumps(asdict(metadata), indent=2, sort_keys=True) + "\n"
        (staging / METADATA_FILE).write_text(text, encoding="utf-8")
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return artifact_digest(out)


def never_saw_a_corpus(root: Path | str) -> bool:
    """Whether the full artifact in ``root`` is a fresh reference model or a pretrained base (its
    weights hold no corpus record); a checkpoint Oblivio did not write counts as having seen one."""
    metadata = read_metadata(root)
    return metadata is not None and metadata.kind in (ArtifactKind.REFERENCE, ArtifactKind.PRETRAINED_BASE)


def read_metadata(root: Path | str) -> ArtifactMetadata | None:
    """The artifact's metadata, or ``None`` for a directory Oblivio did not write."""
    path = Path(root) / METADATA_FILE
    if not path.is_file():
        return None
    return ArtifactMetadata(**json.loads(path.read_text(encoding="utf-8")))
