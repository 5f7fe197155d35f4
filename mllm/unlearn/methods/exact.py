"""``exact``: unlearning by retraining without the data, exact by construction.

Which retraining depends on the deployment (:meth:`Exact.for_model`):

* a **sharded model** (``train_sharded``, :mod:`..shards`): the forget records' shards restart from
  their last clean checkpoint and retrain the later stages without those records; the other shards
  are copied unchanged. Cost: the affected shards' later stages.
* a **single checkpoint** Oblivio trained, or unlearned from one: the whole model is trained again
  from the lineage's clean start without every record the lineage has forgotten
  (:mod:`mllm.train.retrain`). Cost: one full training run.

Either way the result is the model that training without those records would have produced. The
collapse guard checks only that it still stops and answers briefly (``derived_from_original``): its
accuracy is a new draw of the recipe, judged by verification against the lineage's first served model.

``draw`` picks the training seed: 0 keeps the recipe's own, *k* > 0 derives another one from it
(:func:`draw_seed`), so a retraining whose draw lost more utility than verification allows can be
followed by another, equally exact one (the default ladder's last rung; docs/design.md). On the
sequential corpus one retraining in six drew a model that failed ``cumulative_utility`` (0.143 > 0.1,
2026-12-08): the recipe's draw-to-draw spread, not unlearning damage.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mllm.models.artifact import ArtifactMetadata, artifact_digest, read_metadata, save_artifact
from mllm.models.runtime import worker_placement
from mllm.train.loop import Progress as TrainProgress
from mllm.train.retrain import RecipeError, draw_seed, recipe_of, retrain

from ..base import Method, MethodConfig, Progress, ShouldCancel, StepLog, UnlearnCancelled
from ..registry import register
from ..scope import forget_records, lineage_forgotten_ids
from ..shards import MANIFEST, ShardConfig, load_sharded, restore_stage, save_stages, train_stages


@dataclass(frozen=True)
class ExactConfig(MethodConfig):
    """Exact unlearning takes its recipe from the model (its shards or its training metadata); of these
    fields only ``draw`` is used: which draw of the recipe's training seed (0: the recipe's own)."""

    draw: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.draw < 0:
            raise ValueError("draw must not be negative")


@register("exact")
class Exact(Method):
    """Chooses the retraining that fits the model directory (see the module docstring)."""

    Config = ExactConfig
    derived_from_original = False

    @classmethod
    def for_model(cls, model_dir: Path) -> type[Method]:
        return ShardedExact if (Path(model_dir) / MANIFEST).is_file() else RetrainExact

    def _step_logger(self, total: int | None, progress: Progress | None,
                     should_cancel: ShouldCancel | None) -> Any:
        """A training callback that logs each step as a :class:`StepLog` and honours cancellation:
        numbered over several training runs of ``total`` steps in all, or with ``total`` ``None`` as the
        one training run numbers them (a resumed run starts where it stopped)."""

        def on_step(step: TrainProgress) -> None:
            if should_cancel is not None and should_cancel():
                raise UnlearnCancelled(len(self.log))
            number, steps = (len(self.log) + 1, total) if total else (step.step, step.total_steps)
            self.log.append(StepLog(step=number, total_steps=steps, loss=step.loss, lr=step.lr))
            if progress is not None:
                progress(self.log[-1])

        return on_step


class RetrainExact(Exact):
    """A single checkpoint: train again from the lineage's clean start without what it forgot."""

    def original(self, model: Any) -> Any:
        return self.ctx.model

    def run(self, *, progress: Progress | None = None, should_cancel: ShouldCancel | None = None) -> Any:
        recipe = recipe_of(read_metadata(self.ctx.model_dir))
        if recipe is None:
            raise RecipeError("the model carries no training recipe (trained outside Oblivio or from an "
                              "already fine-tuned model): exact unlearning needs a model Oblivio trained "
                              "from a clean start, or a sharded deployment")
        self.retrained = retrain(recipe, self.ctx.corpus, lineage_forgotten_ids(self.ctx.scope),
                                 checkpoint_dir=self.ctx.checkpoint_dir, draw=self.config.draw,
                                 callback=self._step_logger(None, progress, should_cancel))
        return self.retrained.model

    def save(self, model: Any, out: Path, metadata: ArtifactMetadata) -> str:
        return save_artifact(model, self.retrained.processor, out, metadata, base=self.retrained.adapter_base)


class ShardedExact(Exact):
    """A sharded model: retrain only the shards holding forget records."""

    @classmethod
    def load(cls, model_dir: Path) -> tuple[Any, Any, None]:
        ensemble, processor, _ = load_sharded(model_dir, **worker_placement())
        return ensemble, processor, None

    def original(self, model: Any) -> Any:
        return load_sharded(self.ctx.model_dir, **worker_placement())[0]

    def run(self, *, progress: Progress | None = None, should_cancel: ShouldCancel | None = None) -> Any:
        ctx = self.ctx
        manifest = json.loads((ctx.model_dir / MANIFEST).read_text(encoding="utf-8"))
        recorded = ShardConfig(**manifest["config"])
        config = replace(recorded, seed=draw_seed(recorded.seed, self.config.draw))
        forget = {r.record_id for r in forget_records(ctx.scope)}
        ensemble = ctx.model
        by_id = {r.record_id: r for r in ctx.corpus.records}
        self.shards = {shard: [[i for i in part if i not in forget] for part in slices]
                       for shard, slices in manifest["shards"].items()}
        self.retrained: dict[str, tuple[int, dict]] = {}
        dirty = {shard: next(k for k, part in enumerate(slices) if forget.intersection(part))
                 for shard, slices in manifest["shards"].items() if forget.intersection(sum(slices, []))}
        stages = sum(len(manifest["shards"][shard]) - clean for shard, clean in dirty.items())
        on_step = self._step_logger(stages * config.steps_per_slice, progress, should_cancel)
        for shard, clean in dirty.items():  # stage `clean` saw only the slices before the first dirty one
            restore_stage(ensemble.model, ctx.model_dir / "shards" / shard, shard, clean, config)
            states = train_stages(ensemble.model, ctx.processor, ctx.root, by_id, shard, self.shards[shard],
                                  config, start=clean, on_step=on_step)
            self.retrained[shard] = (clean, states)
        ensemble.model.eval()
        self.manifest = manifest
        return ensemble

    def save(self, model: Any, out: Path, metadata: ArtifactMetadata) -> str:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            shutil.copytree(self.ctx.model_dir, staging, dirs_exist_ok=True)
            for shard, (clean, states) in self.retrained.items():
                for stale in (staging / "shards" / shard).glob("stage-*.safetensors"):
                    if int(stale.stem.split("-")[1]) > clean:
                        stale.unlink()
                save_stages(staging / "shards" / shard, states)
            retrained = {shard: {"from_stage": clean, "draw": self.config.draw}
                         for shard, (clean, _) in self.retrained.items()}
            manifest = {**self.manifest, "shards": self.shards, "parent_digest": metadata.parent_digest,
                        "retrained": retrained}
            for name, data in ((MANIFEST, manifest), ("oblivio.json", asdict(metadata))):
                text = json.dumps(data, indent=2, sort_keys=True) + "\n"
                (staging / name).write_text(text, encoding="utf-8")
            staging.rename(out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return artifact_digest(out)
