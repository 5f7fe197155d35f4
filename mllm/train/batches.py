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

from mllm.data.prompts import DEPTHS, render_prompt, training_depth, training_prompts
from mllm.data.schema import Record

from .encode import Batch, encode_records
from .loop import ShuffledBatches, TrainConfig


class DepthDrawnBatches(ShuffledBatches):
    """``records`` encoded at every depth; epoch ``e`` shows ``r`` at ``training_depth(r, seed, e)``."""

    def __init__(self, processor: Any, records: Sequence[Record], root: Path, batch_size: int,
                 seed: int) -> None:
        rendered = [(record, render_prompt(record, depth)) for depth in DEPTHS for record in records]
        data = encode_records(processor, [record for record, _ in rendered], root,
                              prompts=[prompt for _, prompt in rendered])
        super().__init__(data, batch_size, seed)
        self.records = list(records)
        self.steps_per_epoch = math.ceil(len(self.records) / batch_size)

    def items(self, epoch: int) -> list[int]:
        """Each record's example in ``epoch`` (``d * len(records) + i``: record ``i`` at depth ``d``)."""
        count = len(self.records)
        return [DEPTHS.index(training_depth(record, self.seed, epoch)) * count + i
                for i, record in enumerate(self.records)]

    def epoch(self, epoch: int) -> Iterator[Batch]:
        return self.batches(epoch, self.items(epoch))

    def probe(self) -> Batch:
        return self.data.batch(range(min(self.batch_size, len(self.records))))  # depth 0


def training_batches(processor: Any, records: Sequence[Record], root: Path, config: TrainConfig, *,
                     prompts: Sequence[str] | None = None) -> ShuffledBatches:
    """The batch source of a fine-tune on ``records``: at the training depth mix drawn as
    ``config.depth_draw`` says, or (``prompts``) exactly these prompt texts, one per record."""
    if prompts is None and config.depth_draw == "per-epoch":
        return DepthDrawnBatches(processor, records, root, config.batch_size, config.seed)
    if prompts is None:
        prompts = training_prompts(records, config.seed)
    return ShuffledBatches(encode_records(processor, records, root, prompts=prompts), config.batch_size,
                           config.seed)
