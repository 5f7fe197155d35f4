"""The batches a fine-tune sees: every record at its training context depth (:mod:`mllm.data.prompts`).

``per-record`` renders each record once, at the depth drawn for it; ``per-epoch`` encodes each record
at every depth once and lets every epoch draw the depth anew, so the model meets each fact behind
every context an attacker can add (measured in docs/benchmarks.md: with one depth per record the
model answered its training prompt and little else).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mllm.data.prompts import DEPTHS, render_prompt, training_depth, training_option_shift, training_prompts
from mllm.data.qa import rotate_options
from mllm.data.schema import Record

from .encode import Batch, encode_records
from .loop import ShuffledBatches, TrainConfig


class DrawnBatches(ShuffledBatches):
    """``records`` encoded in every prompt variant an epoch can draw; epoch ``e`` shows ``r`` at
    ``training_depth(r, seed, e)`` and, with ``rotate``, its multiple-choice options rotated by
    ``training_option_shift(r, seed, e)``."""

    def __init__(self, processor: Any, records: Sequence[Record], root: Path, batch_size: int,
                 seed: int, *, rotate: bool = False) -> None:
        self.records = list(records)
        self.rotate = rotate
        self.variants: dict[tuple[int, int, int], int] = {}  # (record index, depth, shift) -> example
        rendered: list[tuple[Record, str]] = []
        for i, record in enumerate(self.records):
            shifts = range(len(record.options) or 1) if rotate else (0,)
            for shift in shifts:
                variant = rotate_options(record, shift)
                for depth in DEPTHS:
                    self.variants[i, depth, shift] = len(rendered)
                    rendered.append((variant, render_prompt(variant, depth)))
        data = encode_records(processor, [record for record, _ in rendered], root,
                              prompts=[prompt for _, prompt in rendered])
        super().__init__(data, batch_size, seed)
        self.steps_per_epoch = math.ceil(len(self.records) / batch_size)

    def items(self, epoch: int) -> list[int]:
        """Each record's example in ``epoch``."""
        return [self.variants[i, training_depth(record, self.seed, epoch),
                              training_option_shift(record, self.seed, epoch) if self.rotate else 0]
                for i, record in enumerate(self.records)]

    def epoch(self, epoch: int) -> Iterator[Batch]:
        return self.batches(epoch, self.items(epoch))

    def probe(self) -> Batch:
        first = range(min(self.batch_size, len(self.records)))
        return self.data.batch([self.variants[i, 0, 0] for i in first])  # depth 0, options as in the corpus


def training_batches(processor: Any, records: Sequence[Record], root: Path, config: TrainConfig, *,
                     prompts: Sequence[str] | None = None) -> ShuffledBatches:
    """The batch source of a fine-tune on ``records``: at the training depth mix drawn as
    ``config.depth_draw`` says, or (``prompts``) exactly these prompt texts, one per record."""
    if prompts is None and config.depth_draw == "per-epoch":
        return DrawnBatches(processor, records, root, config.batch_size, config.seed,
                            rotate=config.option_order == "per-epoch")
    if prompts is None:
        prompts = training_prompts(records, config.seed)
    return ShuffledBatches(encode_records(processor, records, root, prompts=prompts), config.batch_size,
                           config.seed)
