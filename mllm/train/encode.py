"""Records to tensors: the chat-template prompt with the image, the answer, and answer-only labels.

Prompt and answer are tokenised separately and joined (byte-level BPE tokenises a space before the
answer differently in context, so tokenising the joined string would not reproduce the answer's
ids). ``labels`` are ``-100`` everywhere except the answer tokens and the closing EOS, so the loss,
and every unlearning objective built on it, acts on the answer only — never on the question or
image tokens. Training batches are right-padded; generation batches (prompt only) are left-padded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mllm.data.prompts import render_prompt
from mllm.data.schema import Record

IGNORE_INDEX = -100
_TEXT_KEYS = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class Example:
    """One encoded record: prompt ids (image tokens expanded), answer ids (ending in EOS)."""

    record_id: str
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    image_key: str


@dataclass
class Batch:
    """Padded tensors for a list of examples. ``labels`` is ``None`` for prompt-only batches."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None
    image_inputs: dict[str, torch.Tensor]

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, **self.image_inputs}


def prompt_text(processor: Any, question: str) -> str:
    """The user turn (image, then question) rendered by the chat template, ready for the answer."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def answer_ids(processor: Any, answer: str) -> tuple[int, ...]:
    tokenizer = processor.tokenizer
    return (*tokenizer(answer, add_special_tokens=False).input_ids, tokenizer.eos_token_id)


class EncodedRecords:
    """Encoded examples plus the processed image tensors they point to (each image processed once)."""

    def __init__(self, examples: list[Example], images: dict[str, dict[str, torch.Tensor]],
                 pad_token_id: int) -> None:
        self.examples = examples
        self.images = images
        self.pad_token_id = pad_token_id

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, indices: Sequence[int], *, with_answer: bool = True) -> Batch:
        """Right-padded prompt+answer with labels, or (``with_answer=False``) left-padded prompts."""
        chosen = [self.examples[i] for i in indices]
        rows = [ex.prompt_ids + ex.answer_ids if with_answer else ex.prompt_ids for ex in chosen]
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long) if with_answer else None
        for i, (ex, row) in enumerate(zip(chosen, rows, strict=True)):
            start = 0 if with_answer else width - len(row)
            input_ids[i, start:start + len(row)] = torch.tensor(row)
            attention_mask[i, start:start + len(row)] = 1
            if labels is not None:
                labels[i, len(ex.prompt_ids):len(row)] = torch.tensor(ex.answer_ids)
        keys = self.images[chosen[0].image_key]
        image_inputs = {key: torch.cat([self.images[ex.image_key][key] for ex in chosen]) for key in keys}
        return Batch(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                     image_inputs=image_inputs)


def encode_records(processor: Any, records: Sequence[Record], root: Path, *,
                   prompts: Sequence[str] | None = None) -> EncodedRecords:
    """Encode ``records`` whose image paths are relative to ``root`` (the corpus directory).

    ``prompts`` are the prompt texts, one per record (default: ``render_prompt(record, 0)``).
    """
    if prompts is not None and len(prompts) != len(records):
        raise ValueError("give one prompt per record")
    examples: list[Example] = []
    images: dict[str, dict[str, torch.Tensor]] = {}
    for index, record in enumerate(records):
        text = render_prompt(record, 0) if prompts is None else prompts[index]
        with Image.open(root / record.image) as image:
            encoded = processor(text=[prompt_text(processor, text)], images=[image.convert("RGB")],
                                return_tensors="pt")
        images.setdefault(record.image, {k: v for k, v in encoded.items() if k not in _TEXT_KEYS})
        examples.append(Example(record_id=record.record_id,
                                prompt_ids=tuple(encoded["input_ids"][0].tolist()),
                                answer_ids=answer_ids(processor, record.answer), image_key=record.image))
    return EncodedRecords(examples, images, pad_token_id=processor.tokenizer.pad_token_id)
