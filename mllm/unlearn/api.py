"""``unlearn(...)``: the one entry point (CLI, Celery tasks and benchmarks all call it).

Load the model, run the method, apply the collapse guard, and only then write the artifact, with
provenance: seed, library versions, hardware, config, and the digests of base, corpus and scope.
Nothing time-dependent enters the artifact, so the same seed gives the same artifact digest. The
artifact also carries its lineage's training recipe with the forgotten records added to what it
leaves out (:mod:`mllm.train.retrain`), so ``exact`` can later retrain any model of the lineage.
"""

from __future__ import annotations

import os
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mllm.data.schema import Corpus
from mllm.models.artifact import (
    ArtifactKind,
    ArtifactMetadata,
    artifact_digest,
    library_versions,
    read_metadata,
)
from mllm.train.retrain import RECIPE_KEY, recipe_after, recipe_of

from .base import Context, Progress, ShouldCancel, StepLog
from .guard import CollapseError, GuardPolicy, GuardResult, collapse_guard
from .registry import ConfigError, method_class, parse_config
from .scope import ScopeGroups, lineage_forgotten_ids, scope_digest


@dataclass(frozen=True)
class UnlearnResult:
    """The new artifact, what each step did, where it came from, and the guard's verdict."""

    artifact: Path
    digest: str
    method: str
    steps: list[StepLog]
    provenance: dict[str, Any]
    guard: GuardResult
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"artifact": str(self.artifact), "digest": self.digest, "method": self.method,
                "steps": [asdict(s) for s in self.steps], "provenance": self.provenance,
                "guard": self.guard.to_json(), "seconds": self.seconds, "extra": self.extra}


def hardware() -> dict[str, Any]:
    accelerator = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"machine": platform.machine(), "cpus": os.cpu_count(), "accelerator": accelerator}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def split_config(config: dict[str, Any] | None) -> tuple[dict[str, Any], GuardPolicy]:
    """The method's own fields and the ``guard`` sub-object (thresholds of :class:`GuardPolicy`)."""
    values = dict(config or {})
    guard = values.pop("guard", None) or {}
    if not isinstance(guard, dict):
        raise ConfigError("config field 'guard' must be an object")
    try:
        return values, GuardPolicy(**guard)
    except TypeError as exc:
        raise ConfigError(f"guard: {exc}") from None


def unlearn(*, model_dir: Path, corpus: Corpus, scope: ScopeGroups, method: str,
            config: dict[str, Any] | None = None, out: Path, seed: int = 0,
            progress: Progress | None = None, should_cancel: ShouldCancel | None = None,
            checkpoint_dir: Path | None = None) -> UnlearnResult:
    """Unlearn ``scope`` from the model at ``model_dir`` with ``method``; write the artifact to ``out``.
    ``checkpoint_dir``: where a long run keeps resumable state, so that a later call with the same
    inputs continues it (``exact``'s retraining of a single checkpoint; the pipeline passes one per job
    and rung).

    Raises :class:`~mllm.unlearn.guard.CollapseError` when the result fails the collapse guard and
    :class:`~mllm.unlearn.base.UnlearnCancelled` when ``should_cancel`` says so; neither writes ``out``.
    """
    out, model_dir = Path(out), Path(model_dir)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new directory for the artifact")
    cls = method_class(method).for_model(model_dir)
    values, policy = split_config(config)
    cfg = parse_config(method, values)
    started = time.perf_counter()
    seed_everything(seed)
    original, processor, base = cls.load(model_dir)
    base_digest = artifact_digest(model_dir)
    runner = cls(cfg, Context(model=original, processor=processor, corpus=corpus, scope=scope, seed=seed,
                              model_dir=model_dir, base=base, checkpoint_dir=checkpoint_dir))
    model = runner.run(progress=progress, should_cancel=should_cancel)
    guard = collapse_guard(model, runner.original(model), processor, corpus.root, scope,
                           policy=policy, seed=seed, accuracy=cls.derived_from_original)
    if not guard.passed:
        raise CollapseError(guard)
    provenance = {"method": method, "config": asdict(cfg), "guard_policy": asdict(policy), "seed": seed,
                  "versions": library_versions(), "hardware": hardware(), "base_digest": base_digest,
                  "corpus_sha256": corpus.header.records_sha256, "scope_sha256": scope_digest(scope)}
    recipe = recipe_after(recipe_of(read_metadata(model_dir)), lineage_forgotten_ids(scope))
    metadata = ArtifactMetadata(
        kind=ArtifactKind.UNLEARNED, seed=seed, corpus_sha256=corpus.header.records_sha256,
        parent_digest=base_digest,
        training={"unlearning": provenance, "steps": len(runner.log),
                  "losses": [s.loss for s in runner.log], "guard": guard.to_json(),
                  **({RECIPE_KEY: recipe.to_json()} if recipe is not None else {})})
    digest = runner.save(model, out, metadata)
    return UnlearnResult(artifact=out, digest=digest, method=method, steps=list(runner.log),
                         provenance=provenance, guard=guard, seconds=time.perf_counter() - started)
