"""Training items for unlearning: which prompt, which target answer, encoded once, batched in pairs.

An :class:`Item` is a record asked at a context depth with a target answer (the record's own answer,
or a replacement for a forgotten private fact). :class:`Streams` holds one encoded group per name
(``forget``, ``retain``, ``siblings.patient`` ...) and yields, at every step, one batch from each:
the paired forget/retain batches every method trains on. Order is a seeded permutation per group
and epoch, so the same seed gives the same batches.

Prompts are rendered by :func:`mllm.data.prompts.render_prompt` at the item's context depth.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mllm.data.prompts import render_prompt
from mllm.data.schema import Record
from mllm.models.families import family_of
from mllm.train.encode import Batch, EncodedRecords, encode_records


@dataclass(frozen=True)
class Item:
    """A record asked at ``depth`` whose training target is ``answer``."""

    record: Record
    answer: str
    depth: int = 0


def stop_token_ids(processor: Any) -> frozenset[int]:
    """Tokens that end an answer: the model family's end of turn, and EOS."""
    return frozenset(family_of(processor).stop_ids(processor.tokenizer))


def items(records: Iterable[Record], depths: Sequence[int] = (0,)) -> list[Item]:
    """Each record with its own answer at each depth."""
    return [Item(record, record.answer, depth) for record in records for depth in depths]


def encode_items(processor: Any, items_: Sequence[Item], root: Path) -> EncodedRecords:
    """Encode prompts at their depths with the items' target answers (answer-only labels)."""
    records = [dataclasses.replace(item.record, answer=item.answer) for item in items_]
    return encode_records(processor, records, root,
                          prompts=[render_prompt(item.record, item.depth) for item in items_])


def answer_token_ids(processor: Any, answers: Iterable[str]) -> frozenset[int]:
    """Token ids of ``answers`` (without special tokens): the vocabulary of forgotten answers."""
    tokenizer = processor.tokenizer
    return frozenset(i for answer in answers for i in tokenizer(answer, add_special_tokens=False).input_ids)


class Streams:
    """Named encoded groups; :meth:`step` gives one batch of each (cycling, seeded order)."""

    def __init__(self, groups: dict[str, EncodedRecords], batch_size: int, seed: int) -> None:
        self.groups = {name: data for name, data in groups.items() if len(data)}
        if not self.groups:
            raise ValueError("nothing to train on: every group is empty")
        self.batch_size = batch_size
        self.seed = seed

    def _indices(self, name: str, step: int) -> list[int]:
        size = len(self.groups[name])
        per_epoch = max(1, -(-size // self.batch_size))
        epoch, offset = divmod(step, per_epoch)
        salt = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + salt + epoch)
        order = torch.randperm(size, generator=generator).tolist()
        return order[offset * self.batch_size:(offset + 1) * self.batch_size]

    def step(self, step: int) -> dict[str, Batch]:
        return {name: data.batch(self._indices(name, step)) for name, data in self.groups.items()}

    def probe(self) -> dict[str, Batch]:
        return {name: data.batch(range(min(self.batch_size, len(data))))
                for name, data in self.groups.items()}
