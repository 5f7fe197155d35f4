"""Is a retrain oracle comparable with the model it is compared to? Refuse when it is not.

A retrain oracle stands for "the model as if the forget set had never been seen". That holds only
if it differs from the original model in the data alone: the same starting point (the pretrained
base by digest, or the same fresh reference spec and reserved tokenizer corpus — never a tokenizer
trained on the corpus, see :mod:`mllm.data.text`), the same corpus, the same recipe (optimizer
config, LoRA settings, prompt rendering, teaching-file replay) and exactly the forget set excluded.
:func:`check_oracle` compares two artifacts' metadata and raises :class:`OracleMismatch` naming the
first field that differs; verification calls it before any oracle-based comparison. The original is
the model the forget request was made against (an unlearned candidate's parent), not the candidate
itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mllm.models.artifact import ArtifactKind, ArtifactMetadata, read_metadata

from .loop import TrainConfig

RECIPE_KEYS = ("config", "lora", "prompts", "tokenizer_corpus")


class OracleMismatch(ValueError):
    """The oracle cannot stand in for the original model; ``field`` names what differs."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"oracle refused: {field} {message}")


def excluded_digest(record_ids: Iterable[str]) -> str:
    """SHA-256 of the sorted excluded record ids, one per line (as training metadata stores it)."""
    return hashlib.sha256("\n".join(sorted(record_ids)).encode()).hexdigest()


def _training(metadata: ArtifactMetadata) -> dict[str, Any]:
    return metadata.training or {}


def _recipe(metadata: ArtifactMetadata, key: str) -> Any:
    """The recipe part ``key``; a ``config`` with every setting spelt out, so an artifact written before
    a setting existed (its default then the only behaviour) compares equal to one that states it."""
    value = _training(metadata).get(key)
    if key == "config" and isinstance(value, dict):
        try:
            return asdict(TrainConfig(**value))
        except (TypeError, ValueError):  # a setting this version does not know: compared as written
            return value
    return value


def _replay(metadata: ArtifactMetadata) -> tuple[int, int | None]:
    """Teaching-file cases replayed in the fine-tune and the teaching file's version ((0, None): none)."""
    cases = _training(metadata).get("replay") or 0
    return (cases, _training(metadata).get("replay_version")) if cases else (0, None)


def check_oracle(oracle: ArtifactMetadata, original: ArtifactMetadata, *,
                 forget_ids: Iterable[str] | None = None) -> None:
    """Raise :class:`OracleMismatch` unless ``oracle`` is a retrain oracle of ``original``'s run
    (same base, corpus and recipe), excluding exactly ``forget_ids`` when they are given."""
    if oracle.kind != ArtifactKind.RETRAIN_ORACLE:
        raise OracleMismatch("kind", f"is {oracle.kind!r}, not a retrain oracle from a clean start")
    if original.kind == ArtifactKind.RETRAIN_ORACLE or _training(original).get("excluded"):
        raise OracleMismatch("original", "was itself trained with records excluded")
    if oracle.parent_digest != original.parent_digest:
        raise OracleMismatch("parent_digest", "differs: the two runs started from different bases")
    if oracle.parent_digest is None and oracle.reference_spec != original.reference_spec:
        raise OracleMismatch("reference_spec", "differs: the two fresh models are not the same model")
    if oracle.corpus_sha256 != original.corpus_sha256:
        raise OracleMismatch("corpus_sha256", "differs: the two runs trained on different corpora")
    for key in RECIPE_KEYS:
        if _recipe(oracle, key) != _recipe(original, key):
            raise OracleMismatch(f"training.{key}", "differs: the two runs used different recipes")
    if _replay(oracle) != _replay(original):
        raise OracleMismatch("training.replay", "differs: the two runs replayed different teaching files")
    if forget_ids is not None:
        ids = set(forget_ids)
        if _training(oracle).get("excluded") != len(ids) or \
                _training(oracle).get("excluded_sha256") != excluded_digest(ids):
            raise OracleMismatch("training.excluded_sha256", "does not match the forget set")


def check_oracle_dirs(oracle_dir: Path | str, original_dir: Path | str, *,
                      forget_ids: Iterable[str] | None = None) -> None:
    """:func:`check_oracle` on two artifact directories (an artifact without metadata is refused)."""
    oracle, original = read_metadata(oracle_dir), read_metadata(original_dir)
    if oracle is None or original is None:
        raise OracleMismatch("metadata", "is missing: only Oblivio artifacts carry their provenance")
    check_oracle(oracle, original, forget_ids=forget_ids)
