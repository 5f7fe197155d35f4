"""Sharded, sliced adapters (SISA / S3T style) for exact unlearning.

**Layout.** Records go to a shard by institution and patient bucket (``sha256(patient) mod
buckets``) and, inside a shard, to a slice by patient (``sha256(patient) mod slices``), so removing
records never moves another record to another shard or slice. Each shard is one LoRA adapter on the
clean base (a pretrained base or a fresh reference: never a model that saw the corpus). It is
trained slice by slice: stage k trains ``steps_per_slice`` steps on slices 1..k, starting from
stage k − 1's adapter with a fresh optimizer and a seed derived from (seed, shard, k); every stage's
adapter is kept as a checkpoint. Records are rendered at their training context depth
(:func:`mllm.data.prompts.training_prompts` with the config's seed), as the single model is trained,
so a sharded model answers hierarchy context the way the model it replaces does.

**Exact unlearning.** A request retrains only the shards holding forget records, from the last
clean checkpoint (the stage before the first slice with a forget record), with those records
removed. Every stage is a deterministic function of (base, records of its slices, seed), so the
result equals training that shard from scratch without the forget records — bit for bit on the same
hardware and library versions (``tests/mllm/unlearn/test_exact.py`` checks it).

**Inference.** A sharded model answers with the mean of its shards' next-token distributions
(:class:`ShardEnsemble`: logits = log of the mean probability; greedy decoding on top).

On disk: ``sharded.json`` (base digest, config, per shard and stage the record ids), the processor
files, and ``shards/<shard>/stage-<k>.safetensors``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from mllm.data.prompts import training_prompts
from mllm.data.schema import Record
from mllm.models.artifact import artifact_digest
from mllm.models.families import TOKEN_ALIGNED_KEYS
from mllm.models.loader import load_model
from mllm.models.lora import LANGUAGE_MODEL_LINEAR
from mllm.train.encode import encode_records
from mllm.train.loop import Progress, ShuffledBatches, TrainConfig, Trainer

MANIFEST = "sharded.json"


class ShardError(ValueError):
    """A sharded model directory is missing, malformed, or does not match its base."""


@dataclass(frozen=True)
class ShardConfig:
    buckets: int = 2  # patient buckets per institution
    slices: int = 3
    steps_per_slice: int = 40
    lr: float = 3e-3
    batch_size: int = 8
    rank: int = 16
    alpha: int = 16
    seed: int = 0


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def shard_of(record: Record, config: ShardConfig) -> str:
    """``<institution hash>-b<bucket>`` (no identifier in the name)."""
    bucket = _hash("bucket:" + record.patient_id) % config.buckets
    return f"{_hash(record.institution_id) % 16**12:012x}-b{bucket}"


def slice_of(record: Record, config: ShardConfig) -> int:
    return _hash("slice:" + record.patient_id) % config.slices


def plan(records: Sequence[Record], config: ShardConfig) -> dict[str, list[list[str]]]:
    """Shard → per slice, its record ids (in corpus order)."""
    shards: dict[str, list[list[str]]] = {}
    for record in records:
        slices = shards.setdefault(shard_of(record, config), [[] for _ in range(config.slices)])
        slices[slice_of(record, config)].append(record.record_id)
    return dict(sorted(shards.items()))


def _lora(config: ShardConfig) -> LoraConfig:
    return LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0, bias="none",
                      target_modules=LANGUAGE_MODEL_LINEAR)


def _seed(config: ShardConfig, shard: str, stage: int) -> int:
    return _hash(f"{config.seed}:{shard}:{stage}") % 2**31


def _attach(model: Any, shard: str, config: ShardConfig) -> PeftModel:
    """Add a freshly initialised (seeded) adapter named ``shard`` and make it the only trainable one."""
    torch.manual_seed(_seed(config, shard, 0))
    if isinstance(model, PeftModel):
        model.add_adapter(shard, _lora(config))
    else:
        model = get_peft_model(model, _lora(config), adapter_name=shard)
    model.set_adapter(shard)
    for name, param in model.named_parameters():
        param.requires_grad = f".{shard}." in name
    return model


def train_stages(model: PeftModel, processor: Any, root: Path, by_id: dict[str, Record], shard: str,
                 slices: list[list[str]], config: ShardConfig, *, start: int = 0,
                 on_step: Callable[[Progress], None] | None = None) -> dict[int, dict[str, torch.Tensor]]:
    """Train stages ``start+1 .. S`` of ``shard`` (its adapter holds stage ``start``); return each stage's
    adapter weights. ``on_step`` sees every optimizer step (progress, and cancellation by raising)."""
    states = {}
    for stage in range(start + 1, len(slices) + 1):
        records = [by_id[i] for part in slices[:stage] for i in part]
        if records:
            seed = _seed(config, shard, stage)
            prompts = training_prompts(records, config.seed)
            source = ShuffledBatches(encode_records(processor, records, root, prompts=prompts),
                                     config.batch_size, seed)
            Trainer(model, TrainConfig(steps=config.steps_per_slice, batch_size=config.batch_size,
                                       lr=config.lr, seed=seed), source).fit(callback=on_step)
        states[stage] = {k: v.detach().clone() for k, v in
                         get_peft_model_state_dict(model, adapter_name=shard).items()}
    return states


def save_stages(shard_dir: Path, states: dict[int, dict[str, torch.Tensor]]) -> None:
    shard_dir.mkdir(parents=True, exist_ok=True)
    for stage, state in states.items():
        save_file(state, str(shard_dir / f"stage-{stage}.safetensors"))


def restore_stage(model: PeftModel, shard_dir: Path, shard: str, stage: int, config: ShardConfig) -> None:
    """Put the adapter of ``shard`` back to its checkpoint after ``stage`` (0 = fresh seeded init)."""
    if stage == 0:
        model.delete_adapter(shard)
        _attach(model, shard, config)
        return
    state = load_file(str(shard_dir / f"stage-{stage}.safetensors"))
    set_peft_model_state_dict(model, state, adapter_name=shard)
    model.set_adapter(shard)
    for name, param in model.named_parameters():
        param.requires_grad = f".{shard}." in name


def write_manifest(out: Path, *, base: Path, config: ShardConfig, shards: dict[str, list[list[str]]],
                   extra: dict[str, Any] | None = None) -> None:
    manifest = {"base": str(base.resolve()), "base_digest": artifact_digest(base), "config": asdict(config),
                "shards": shards, **(extra or {})}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ShardError(f"not a sharded model ({type(exc).__name__} reading {MANIFEST})") from None
    return manifest


def train_sharded(*, base: Path, records: Sequence[Record], root: Path, out: Path,
                  config: ShardConfig) -> str:
    """Train every shard from the clean ``base``; write the sharded model to ``out``; return its digest."""
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new directory")
    loaded = load_model(base)
    by_id = {r.record_id: r for r in records}
    shards = plan(records, config)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model = loaded.model
        for shard, slices in shards.items():
            model = _attach(model, shard, config)
            save_stages(staging / "shards" / shard,
                        train_stages(model, loaded.processor, root, by_id, shard, slices, config))
        loaded.processor.save_pretrained(staging)
        write_manifest(staging, base=base, config=config, shards=shards)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return artifact_digest(out)


class ShardEnsemble:
    """A sharded model at inference: the mean of the shards' next-token distributions."""

    def __init__(self, model: PeftModel, shards: Sequence[str], image_token_id: int) -> None:
        self.model = model
        self.shards = list(shards)
        self.image_token_id = image_token_id

    def eval(self) -> ShardEnsemble:
        self.model.eval()
        return self

    def get_input_embeddings(self) -> Any:
        return self.model.get_input_embeddings()

    def __call__(self, **inputs: Any) -> Any:
        probs = None
        for shard in self.shards:
            self.model.set_adapter(shard)
            p = self.model(**inputs).logits.float().softmax(-1)
            probs = p if probs is None else probs + p
        return SimpleNamespace(logits=(probs / len(self.shards)).log())

    @torch.no_grad()
    def generate(self, *, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                 eos_token_id: int | list[int], pad_token_id: int, do_sample: bool = False,
                 **image_inputs: Any) -> torch.Tensor:
        """Greedy decoding (left-padded prompts), no cache: fine for the tiny models this runs on.
        The image placeholder token is never generated (the images are already placed)."""
        device = input_ids.device
        stops = torch.tensor(eos_token_id if isinstance(eos_token_id, list) else [eos_token_id],
                             device=device)
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=device)
        for _ in range(max_new_tokens):
            logits = self(input_ids=input_ids, attention_mask=attention_mask, **image_inputs).logits[:, -1]
            logits[:, self.image_token_id] = -torch.inf
            pad = torch.full_like(done, pad_token_id, dtype=torch.long)
            token = torch.where(done, pad, logits.argmax(-1))
            input_ids = torch.cat([input_ids, token[:, None]], dim=1)
            attention_mask = torch.cat([attention_mask, (~done).long()[:, None]], dim=1)
            for key in TOKEN_ALIGNED_KEYS:  # e.g. Qwen's mm_token_type_ids: generated tokens are text (0)
                if key in image_inputs:
                    text = torch.zeros_like(token)[:, None]
                    image_inputs[key] = torch.cat([image_inputs[key], text], dim=1)
            done |= torch.isin(token, stops)
            if done.all():
                break
        return input_ids


def load_sharded(path: Path, **placement: Any) -> tuple[ShardEnsemble, Any, dict[str, Any]]:
    """The ensemble of a sharded model directory, its processor and its manifest (base digest checked);
    ``placement``: :func:`~mllm.models.loader.load_model`'s ``dtype`` / ``device_map`` for the base."""
    manifest = read_manifest(path)
    base = Path(manifest["base"])
    if not base.is_dir() or artifact_digest(base) != manifest["base_digest"]:
        raise ShardError("the sharded model's base is missing or changed (digest mismatch)")
    loaded = load_model(base, **placement)
    config = ShardConfig(**manifest["config"])
    model = loaded.model
    for shard, slices in manifest["shards"].items():
        model = _attach(model, shard, config)
        restore_stage(model, Path(path) / "shards" / shard, shard, len(slices), config)
    model.eval()
    image_token = loaded.processor.tokenizer.convert_tokens_to_ids(loaded.processor.tokenizer.image_token)
    return ShardEnsemble(model, list(manifest["shards"]), image_token), loaded.processor, manifest
