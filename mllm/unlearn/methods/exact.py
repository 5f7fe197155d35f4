"""``exact``: exact unlearning on a sharded model (:mod:`..shards`): retrain only the affected shards.

The model directory is a sharded model (``train_sharded``), not a single checkpoint. The forget
records' shards restart from their last clean checkpoint and retrain the later stages without those
records; the other shards are copied unchanged. The result is, by construction, the sharded model
that training without the forget records would have produced.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mllm.models.artifact import ArtifactMetadata, artifact_digest
from mllm.train.loop import Progress as TrainProgress

from ..base import Method, MethodConfig, Progress, ShouldCancel, StepLog, UnlearnCancelled
from ..registry import register
from ..scope import forget_records
from ..shards import MANIFEST, ShardConfig, load_sharded, restore_stage, save_stages, train_stages


@dataclass(frozen=True)
class ExactConfig(MethodConfig):
    """Exact unlearning takes its recipe from the sharded model; these fields are not used."""


@register("exact")
class Exact(Method):
    Config = ExactConfig

    @classmethod
    def load(cls, model_dir: Path) -> tuple[Any, Any, None]:
        ensemble, processor, _ = load_sharded(model_dir)
        return ensemble, processor, None

    def original(self, model: Any) -> Any:
        return load_sharded(self.ctx.model_dir)[0]

    def run(self, *, progress: Progress | None = None, should_cancel: ShouldCancel | None = None) -> Any:
        ctx = self.ctx
        manifest = json.loads((ctx.model_dir / MANIFEST).read_text(encoding="utf-8"))
        config = ShardConfig(**manifest["config"])
        forget = {r.record_id for r in forget_records(ctx.scope)}
        ensemble = ctx.model
        by_id = {r.record_id: r for r in ctx.corpus.records}
        self.shards = {shard: [[i for i in part if i not in forget] for part in slices]
                       for shard, slices in manifest["shards"].items()}
        self.retrained: dict[str, tuple[int, dict]] = {}

        def on_step(step: TrainProgress) -> None:
            if should_cancel is not None and should_cancel():
                raise UnlearnCancelled(len(self.log))
            self.log.append(StepLog(step=len(self.log) + 1, total_steps=0, loss=step.loss, lr=step.lr))
            if progress is not None:
                progress(self.log[-1])

        for shard, slices in manifest["shards"].items():
            dirty = [k for k, part in enumerate(slices) if forget.intersection(part)]
            if not dirty:
                continue
            clean = dirty[0]  # stage `clean` saw only slices before the first dirty one
            restore_stage(ensemble.model, ctx.model_dir / "shards" / shard, shard, clean, config)
            states = train_stages(ensemble.model, ctx.processor, ctx.root, by_id, shard, self.shards[shard],
                                  config, start=clean, on_step=on_step)
            self.retrained[shard] = (clean, states)
        ensemble.model.eval()
        self.config_used = config
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
            retrained = {shard: {"from_stage": clean} for shard, (clean, _) in self.retrained.items()}
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
