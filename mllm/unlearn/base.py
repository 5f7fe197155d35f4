"""What every unlearning method shares: config, context, the gradient loop, the schedule.

A method is a class registered with ``@register("name")``. Gradient methods subclass
:class:`GradientMethod` and override :meth:`~GradientMethod.loss` (and, where they train on other
data, :meth:`~GradientMethod.streams`): the loop, the LoRA adapter, the constant/cosine schedule,
progress, cancellation and the did-anything checks are written once here. Training-free methods
override :meth:`Method.run` instead.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from peft import PeftModel

from mllm.data.schema import Corpus
from mllm.models.artifact import ArtifactMetadata, BaseRef, never_saw_a_corpus, save_artifact
from mllm.models.loader import load_model
from mllm.models.lora import LoraSettings, add_lora, lora_for_training
from mllm.models.runtime import worker_placement
from mllm.train import MAX_LR
from mllm.train.encode import Batch

from .data import Streams, encode_items, items, stop_token_ids
from .guard import WithoutAdapter
from .scope import ScopeGroups, forget_records, kept_groups


class UnlearnCancelled(RuntimeError):  # noqa: N818 (a request, not a fault)
    """The run was cancelled between two steps; nothing was written."""

    def __init__(self, step: int) -> None:
        super().__init__(f"unlearning cancelled after {step} steps")
        self.step = step


class NoOpUnlearningError(RuntimeError):
    """The run changed no parameter, or the loss did not move."""


@dataclass(frozen=True)
class StepLog:
    """Reported after every step (``terms``: each loss term's value)."""

    step: int
    total_steps: int
    loss: float
    lr: float
    terms: dict[str, float] = field(default_factory=dict)


Progress = Callable[[StepLog], None]
ShouldCancel = Callable[[], bool]


@dataclass(frozen=True)
class MethodConfig:
    """Shared knobs. Defaults chosen on validation scopes (see docs/design.md, "Unlearning")."""

    steps: int = 30
    lr: float = 5e-4
    batch_size: int = 8
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    grad_clip: float = 1.0
    lora_rank: int = 16
    lora_alpha: int = 16
    retain_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lora_rank < 1 or self.lora_alpha < 1:
            raise ValueError("steps, batch_size, lora_rank and lora_alpha must be at least 1")
        if self.warmup_steps < 0:
            raise ValueError("warmup_steps must not be negative")
        if not 0 < self.lr <= MAX_LR:  # NaN fails too
            raise ValueError(f"lr must be a number in (0, {MAX_LR}]")
        if not (self.grad_clip > 0 and math.isfinite(self.grad_clip)):
            raise ValueError("grad_clip must be a positive number")
        if not (self.retain_weight >= 0 and math.isfinite(self.retain_weight)):
            raise ValueError("retain_weight must be a number >= 0")


@dataclass
class Context:
    """What a method works on: the loaded model, the corpus, the scope, the seed."""

    model: Any
    processor: Any
    corpus: Corpus
    scope: ScopeGroups
    seed: int
    model_dir: Path
    base: BaseRef | None = None  # the full artifact adapter artifacts written from this model reference
    checkpoint_dir: Path | None = None  # where a long method keeps resumable state (``exact``'s retraining)

    @property
    def root(self) -> Path:
        return self.corpus.root


class Method:
    """Base of every method. ``run`` returns the unlearned model (a PEFT model over the original)."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    # whether the collapse guard holds the result's accuracy to the model it was unlearned from: a
    # method that derives the result from that model, yes; a retraining (``exact``) is a new draw of
    # the training recipe, judged against the lineage's first served model by verification instead
    derived_from_original: ClassVar[bool] = True

    def __init__(self, config: MethodConfig, context: Context) -> None:
        self.config = config
        self.ctx = context
        self.log: list[StepLog] = []

    @classmethod
    def for_model(cls, model_dir: Path) -> type[Method]:
        """The class that runs this method on ``model_dir`` (a method may differ by kind of model)."""
        return cls

    @classmethod
    def load(cls, model_dir: Path) -> tuple[Any, Any, BaseRef | None]:
        """The model to unlearn from (on the worker's device, :func:`~mllm.models.runtime.worker_placement`),
        its processor, and the base its adapter artifacts reference."""
        loaded = load_model(model_dir, **worker_placement())
        return loaded.model, loaded.processor, loaded.base_for_adapters()

    def run(self, *, progress: Progress | None = None, should_cancel: ShouldCancel | None = None) -> Any:
        raise NotImplementedError

    def original(self, model: Any) -> Any:
        """The model before unlearning, for the collapse guard (default: the adapter disabled)."""
        return WithoutAdapter(model)

    def save(self, model: Any, out: Path, metadata: ArtifactMetadata) -> str:
        """Write the result; return its digest. Over a base that never saw a corpus (a hospital LoRA on
        a pretrained checkpoint) it is adapter-only and references that base. Over a model trained on
        the corpus it is the full model with the adapter merged in: that model's weights still hold the
        forgotten data and the registry deletes it once the result is served, so nothing may depend on it."""
        base = self.ctx.base
        if base is not None and not never_saw_a_corpus(base.path):
            return save_artifact(model.merge_and_unload(), self.ctx.processor, out, metadata)
        return save_artifact(model, self.ctx.processor, out, metadata, base=base)


def schedule(optimizer: torch.optim.Optimizer, kind: str, warmup: int,
             total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup, then constant or cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _fingerprint(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


class GradientMethod(Method):
    """LoRA on the language model, trained on paired batches; subclasses define :meth:`loss`."""

    def __init__(self, config: MethodConfig, context: Context) -> None:
        super().__init__(config, context)
        self.stop_ids = stop_token_ids(context.processor)

    def streams(self) -> Streams:
        """Default data: every forget record (own answers) and all kept records, as ``forget``/``retain``."""
        scope = self.ctx.scope
        retain = [r for records in kept_groups(scope).values() for r in records]
        return self.encode({"forget": items(forget_records(scope)), "retain": items(retain)})

    def encode(self, groups: dict[str, list]) -> Streams:
        encoded = {name: encode_items(self.ctx.processor, group, self.ctx.root)
                   for name, group in groups.items()}
        return Streams(encoded, self.config.batch_size, self.ctx.seed)

    def loss(self, batches: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def total_steps(self, source: Streams) -> int:
        """How many steps to train on ``source``: the configured count (a method may scale it)."""
        return self.config.steps

    def adapt(self) -> Any:
        """The model to train and the frozen reference (:attr:`reference`).

        A full model gets a fresh, seeded LoRA adapter; the reference is the same model with the
        adapter disabled. A model loaded from an adapter artifact keeps training its own adapter (so
        the result is again one adapter on the same base); the reference is a frozen copy.
        """
        torch.manual_seed(self.ctx.seed)
        settings = LoraSettings(rank=self.config.lora_rank, alpha=self.config.lora_alpha)
        if isinstance(self.ctx.model, PeftModel):
            self.reference = copy.deepcopy(self.ctx.model).eval().requires_grad_(False)
            return lora_for_training(self.ctx.model, settings)
        model = add_lora(self.ctx.model, settings)
        self.reference = WithoutAdapter(model)
        return model

    def original(self, model: Any) -> Any:
        return self.reference

    def run(self, *, progress: Progress | None = None, should_cancel: ShouldCancel | None = None) -> Any:
        cfg = self.config
        self.model = model = self.adapt()
        source = self.streams()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        steps = self.total_steps(source)
        scheduler = schedule(optimizer, cfg.schedule, cfg.warmup_steps, steps)
        before = _fingerprint(params)
        probe = source.probe()
        model.eval()
        with torch.no_grad():
            probe_before = self.loss(probe)[0].item()
        torch.manual_seed(self.ctx.seed)
        model.train()
        for step in range(steps):
            if should_cancel is not None and should_cancel():
                raise UnlearnCancelled(step)
            loss, terms = self.loss(source.step(step))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            entry = StepLog(step=step + 1, total_steps=steps, loss=loss.item(), lr=lr,
                            terms={k: v.item() for k, v in terms.items()})
            self.log.append(entry)
            if progress is not None:
                progress(entry)
        model.eval()
        with torch.no_grad():
            probe_after = self.loss(probe)[0].item()
        if all(torch.equal(a, b) for a, b in zip(before, params, strict=True)):
            raise NoOpUnlearningError(f"{steps} steps left every adapter weight unchanged")
        if probe_after == probe_before:
            raise NoOpUnlearningError(f"{steps} steps left the probe loss at {probe_before}")
        self.probe_loss = (probe_before, probe_after)
        return model
