"""The training loop, readable top to bottom (nanoGPT style).

AdamW, gradient clipping, linear warmup then cosine decay to zero, seeded data order, gradient
accumulation (``grad_accum`` micro-batches per optimizer step, each loss divided by their number),
optional gradient checkpointing and bf16 mixed precision (``autocast``), progress reported through a
callback, resumable checkpoints.
:class:`Trainer` owns the loop; its ``loss`` is the only thing subclasses (the unlearning methods)
override — they also bring their own batch source, e.g. one yielding (forget, retain) pairs.

After training, the loop checks that it did something: the trainable parameters changed and the
loss on a fixed probe batch moved. A run that silently does nothing raises :class:`NoOpTrainingError`.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers import get_cosine_schedule_with_warmup
from transformers.trainer_pt_utils import get_length_grouped_indices

from mllm.models.runtime import autocast_for, enable_gradient_checkpointing

from . import MAX_LR
from .checkpoint import CheckpointMismatchError, load_checkpoint, save_checkpoint
from .encode import Batch, EncodedRecords
from .logprobs import answer_nll

DEPTH_DRAWS = ("per-record", "per-epoch")


@dataclass(frozen=True)
class TrainConfig:
    """The recipe. ``steps`` (when set) overrides ``epochs``; a step is one optimizer step over
    ``grad_accum`` micro-batches of ``batch_size`` examples."""

    epochs: float = 1.0
    steps: int | None = None
    batch_size: int = 16
    lr: float = 3e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    autocast: str | None = None  # "bfloat16": mixed-precision forward, weights and optimizer as they are
    depth_draw: str = "per-record"  # a record's context depth: drawn once or "per-epoch" (mllm.data.prompts)

    def __post_init__(self) -> None:
        if self.depth_draw not in DEPTH_DRAWS:
            raise ValueError(f"depth_draw must be one of {', '.join(DEPTH_DRAWS)}, not {self.depth_draw!r}")
        # comparisons written so that NaN fails them too
        if not 0 < self.epochs < math.inf:
            raise ValueError("epochs must be a finite number above 0")
        if (self.steps is not None and self.steps < 1) or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("steps, batch_size and grad_accum must be at least 1")
        if not 0 <= self.lr <= MAX_LR:
            raise ValueError(f"lr must be a number in [0, {MAX_LR}]")  # 0 is left to the no-op guard
        if not 0 <= self.warmup_ratio <= 1:
            raise ValueError("warmup_ratio must be a number in [0, 1]")
        if not (0 <= self.weight_decay < math.inf and 0 < self.grad_clip < math.inf):
            raise ValueError("weight_decay must be a finite number >= 0 and grad_clip one above 0")

    def total_steps(self, steps_per_epoch: int) -> int:
        total = self.steps if self.steps is not None else math.ceil(self.epochs * steps_per_epoch)
        if total < 1:
            raise ValueError("training needs at least one step")
        return total


@dataclass(frozen=True)
class Progress:
    """Reported after every optimizer step."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    lr: float
    grad_norm: float


@dataclass
class TrainResult:
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    probe_loss_before: float = math.nan
    probe_loss_after: float = math.nan


class NoOpTrainingError(RuntimeError):
    """Training finished without changing the parameters or the loss."""


class BatchSource(Protocol):
    """Deterministic (micro-)batches: the same epoch number always yields the same batches."""

    steps_per_epoch: int

    def epoch(self, epoch: int) -> Iterator[Any]: ...

    def probe(self) -> Any: ...


class ShuffledBatches:
    """Each epoch a permutation seeded by ``(seed, epoch)``, cut into batches (the last may be short).

    With ``group_by_length`` the permutation is grouped into batches of similar length
    (transformers' ``get_length_grouped_indices``: random mega-batches of up to 50 batches, sorted
    by length inside), which cuts padding — most of the cost when question lengths vary.
    """

    def __init__(self, data: EncodedRecords, batch_size: int, seed: int, *,
                 group_by_length: bool = True) -> None:
        if len(data) == 0:
            raise ValueError("no records to train on")
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.lengths = [len(ex.prompt_ids) + len(ex.answer_ids) for ex in data.examples]
        self.group_by_length = group_by_length
        self.steps_per_epoch = math.ceil(len(data) / batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        return self.batches(epoch, range(len(self.data)))

    def batches(self, epoch: int, items: Sequence[int]) -> Iterator[Batch]:
        """The examples ``items`` in the seeded order of ``epoch``, in batches."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        if self.group_by_length:
            order = get_length_grouped_indices([self.lengths[i] for i in items], self.batch_size,
                                               generator=generator)
        else:
            order = torch.randperm(len(items), generator=generator).tolist()
        for start in range(0, len(order), self.batch_size):
            yield self.data.batch([items[k] for k in order[start:start + self.batch_size]])

    def probe(self) -> Batch:
        return self.data.batch(range(min(self.batch_size, len(self.data))))


def _groups(batches: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive groups of ``size`` batches (the last one may be shorter)."""
    iterator = iter(batches)
    while group := list(itertools.islice(iterator, size)):
        yield group


def _fingerprint(params: list[torch.Tensor]) -> torch.Tensor:
    """Cheap per-parameter summary (sum, sum of squares) to detect whether training changed anything."""
    with torch.no_grad():
        return torch.tensor([[p.double().sum().item(), p.double().square().sum().item()] for p in params])


class Trainer:
    """Fine-tunes the trainable parameters of ``model`` on ``source`` by minimising :meth:`loss`."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, source: BatchSource) -> None:
        self.model = model
        self.config = config
        self.source = source
        if config.grad_accum < 1:
            raise ValueError("grad_accum must be at least 1")
        autocast_for(model, config.autocast)  # an unusable dtype fails here, before any step
        self.steps_per_epoch = math.ceil(source.steps_per_epoch / config.grad_accum)
        self.total_steps = config.total_steps(self.steps_per_epoch)
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        self.named_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not self.named_params:
            raise NoOpTrainingError("the model has no trainable parameters")
        self.params = [p for _, p in self.named_params]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        warmup = int(config.warmup_ratio * self.total_steps)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, warmup, self.total_steps)

    def loss(self, batch: Any) -> torch.Tensor:
        """Mean NLL of the answer tokens. Unlearning methods override this."""
        return answer_nll(self.model, batch)

    def probe_loss(self) -> float:
        """The loss on the source's fixed probe batch, in eval mode."""
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            value = self.loss(self.source.probe()).item()
        self.model.train(was_training)
        return value

    def fit(self, *, callback: Callable[[Progress], None] | None = None,
            checkpoint_dir: Path | None = None, checkpoint_every: int = 0,
            resume: bool = False) -> TrainResult:
        """Run to ``total_steps``; with ``resume``, continue from ``checkpoint_dir``."""
        if resume:
            if checkpoint_dir is None:
                raise ValueError("resume needs a checkpoint directory")
            result, fingerprint = self._restore(load_checkpoint(checkpoint_dir))
        else:
            torch.manual_seed(self.config.seed)
            fingerprint = _fingerprint(self.params)
            result = TrainResult(steps=0, seconds=0.0, probe_loss_before=self.probe_loss())
        started = time.perf_counter() - result.seconds

        self.model.train()
        while result.steps < self.total_steps:
            epoch, offset = divmod(result.steps, self.steps_per_epoch)
            for index, group in enumerate(_groups(self.source.epoch(epoch), self.config.grad_accum)):
                if index < offset:
                    continue
                self.optimizer.zero_grad(set_to_none=True)
                loss_value = 0.0
                for batch in group:
                    with autocast_for(self.model, self.config.autocast):
                        loss = self.loss(batch) / len(group)
                    loss.backward()
                    loss_value += loss.item()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
                lr = self.scheduler.get_last_lr()[0]
                self.optimizer.step()
                self.scheduler.step()
                result.steps += 1
                result.losses.append(loss_value)
                result.seconds = time.perf_counter() - started
                if callback is not None:
                    callback(Progress(step=result.steps, total_steps=self.total_steps, epoch=epoch,
                                      loss=result.losses[-1], lr=lr, grad_norm=grad_norm.item()))
                if checkpoint_dir is not None and checkpoint_every and result.steps % checkpoint_every == 0:
                    save_checkpoint(checkpoint_dir, self._state(result, fingerprint))
                if result.steps == self.total_steps:
                    break
        self.model.eval()

        result.probe_loss_after = self.probe_loss()
        if torch.equal(_fingerprint(self.params), fingerprint):
            raise NoOpTrainingError(f"{result.steps} steps left every trainable parameter unchanged")
        if result.probe_loss_after == result.probe_loss_before:
            raise NoOpTrainingError(f"{result.steps} steps left the probe loss at {result.probe_loss_before}")
        return result

    def _state(self, result: TrainResult, fingerprint: torch.Tensor) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "total_steps": self.total_steps,
            "params": {name: p.detach().clone() for name, p in self.named_params},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "result": asdict(result),
            "fingerprint": fingerprint,
        }

    def _restore(self, state: dict[str, Any]) -> tuple[TrainResult, torch.Tensor]:
        if state["config"] != asdict(self.config) or state["total_steps"] != self.total_steps:
            raise CheckpointMismatchError(
                f"the checkpoint was written by another recipe: {state['config']} "
                f"({state['total_steps']} steps), not {asdict(self.config)}")
        names = [name for name, _ in self.named_params]
        if sorted(state["params"]) != sorted(names):
            raise CheckpointMismatchError("the checkpoint's trainable parameters do not match this model")
        with torch.no_grad():
            for name, param in self.named_params:
                param.copy_(state["params"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        return TrainResult(**state["result"]), state["fingerprint"]
