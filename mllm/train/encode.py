"""Records to tensors: the chat-template prompt with the image, the answer, and answer-only labels.

Prompt and answer are tokenised separately and joined (byte-level BPE tokenises a space before the
answer differently in context, so tokenising the joined string would not reproduce the answer's
ids); the answer ends with its model family's end-of-turn token (``</s>`` for LLaVA, ``<|im_end|>``
for Qwen2-VL). ``labels`` are ``-100`` everywhere except the answer tokens and that closing token,
so the loss, and every unlearning objective built on it, acts on the answer only — never on the
question or image tokens. Training batches are right-padded; generation batches (prompt only) are
left-padded.

Processor outputs other than the text are of two kinds. Image tensors (``pixel_values`` — one
``[1, 3, H, W]`` block per image for LLaVA, one row per patch for Qwen2-VL — ``image_grid_thw``,
``image_sizes``) are stored once per image and concatenated along dim 0 in batch order, which is
the order of the image tokens in the flattened batch. Token-aligned outputs (Qwen2-VL's
``mm_token_type_ids``, from which the model computes its M-RoPE positions) are padded with the
input ids (0 = text, on padding and answer tokens).

The processor call (image decoding and preprocessing, chat template, tokenising) is the slow part of
encoding and the same (image, prompt) pair is encoded again and again (a verification reads each probe
with the candidate, the original and the holdout references; training encodes its records every run):
:class:`_ProcessorMemo` keeps what processors of one :func:`~mllm.models.families.processor_digest`
(the same tokenizer, chat template and image preprocessing, so the same outputs: an unlearned model
and its original share one) made of each pair, bounded, least recently used first out. A processor is
never changed once it has encoded; an image file is known by its path, size and modification time.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mllm.data.prompts import render_prompt
from mllm.data.schema import Record
from mllm.models.families import TOKEN_ALIGNED_KEYS, family_of, processor_digest

IGNORE_INDEX = -100
_TEXT_KEYS = ("input_ids", "attention_mask", *TOKEN_ALIGNED_KEYS)


@dataclass(frozen=True)
class Example:
    """One encoded record: prompt ids (image tokens expanded), answer ids (ending in end of turn),
    and the prompt's token-aligned processor outputs (e.g. ``mm_token_type_ids``)."""

    record_id: str
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    image_key: str
    prompt_token_inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass
class Batch:
    """Padded tensors for a list of examples. ``labels`` is ``None`` for prompt-only batches."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None
    image_inputs: dict[str, torch.Tensor]
    token_inputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, **self.token_inputs,
                **self.image_inputs}

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on ``device`` (labels included)."""
        def move(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {key: value.to(device) for key, value in tensors.items()}

        return replace(self, input_ids=self.input_ids.to(device),
                       attention_mask=self.attention_mask.to(device),
                       labels=None if self.labels is None else self.labels.to(device),
                       image_inputs=move(self.image_inputs), token_inputs=move(self.token_inputs))


def prompt_text(processor: Any, question: str) -> str:
    """The user turn (image, then question) rendered by the chat template, ready for the answer."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def answer_ids(processor: Any, answer: str) -> tuple[int, ...]:
    """The answer's ids, tokenised on its own, closed by the family's end-of-turn token."""
    tokenizer = processor.tokenizer
    end_of_turn = family_of(processor).end_of_turn_id(tokenizer)
    return (*tokenizer(answer, add_special_tokens=False).input_ids, end_of_turn)


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
        token_inputs = {key: torch.zeros((len(rows), width), dtype=torch.long)
                        for key in chosen[0].prompt_token_inputs}
        for i, (ex, row) in enumerate(zip(chosen, rows, strict=True)):
            start = 0 if with_answer else width - len(row)
            input_ids[i, start:start + len(row)] = torch.tensor(row)
            attention_mask[i, start:start + len(row)] = 1
            for key, values in ex.prompt_token_inputs.items():
                token_inputs[key][i, start:start + len(values)] = torch.tensor(values)
            if labels is not None:
                labels[i, len(ex.prompt_ids):len(row)] = torch.tensor(ex.answer_ids)
        keys = self.images[chosen[0].image_key]
        image_inputs = {key: torch.cat([self.images[ex.image_key][key] for ex in chosen]) for key in keys}
        return Batch(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                     image_inputs=image_inputs, token_inputs=token_inputs)


_Prompt = tuple[tuple[int, ...], dict[str, tuple[int, ...]]]  # prompt ids, token-aligned inputs


class _ProcessorMemo:
    """The outputs of the processors of one digest: prompt ids per (image file, prompt text) and image
    tensors per image file, each an LRU of bounded size (a 7B family's image tensors are ~1 MB each)."""

    PROMPTS = 65536
    IMAGES = 512

    def __init__(self) -> None:
        self.prompts: OrderedDict[tuple, _Prompt] = OrderedDict()
        self.images: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()

    @staticmethod
    def _get(store: OrderedDict, key: tuple) -> Any:
        value = store.get(key)
        if value is not None:
            store.move_to_end(key)
        return value

    @staticmethod
    def _put(store: OrderedDict, key: tuple, value: Any, bound: int) -> None:
        store[key] = value
        if len(store) > bound:
            store.popitem(last=False)

    def encode(self, processor: Any, path: Path, text: str) -> tuple[_Prompt, dict[str, torch.Tensor]]:
        stat = path.stat()
        image_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        prompt, image = self._get(self.prompts, (image_key, text)), self._get(self.images, image_key)
        if prompt is None or image is None:
            with Image.open(path) as opened:
                encoded = processor(text=[prompt_text(processor, text)], images=[opened.convert("RGB")],
                                    return_tensors="pt")
            prompt = (tuple(encoded["input_ids"][0].tolist()),
                      {key: tuple(encoded[key][0].tolist()) for key in TOKEN_ALIGNED_KEYS if key in encoded})
            self._put(self.prompts, (image_key, text), prompt, self.PROMPTS)
            if image is None:  # else the image's tensors stay the ones already handed out
                image = {k: v for k, v in encoded.items() if k not in _TEXT_KEYS}
                self._put(self.images, image_key, image, self.IMAGES)
        return prompt, image


_DIGESTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_MEMOS: dict[str, _ProcessorMemo] = {}


def _memo_of(processor: Any) -> _ProcessorMemo:
    digest = _DIGESTS.get(processor)
    if digest is None:
        digest = _DIGESTS[processor] = processor_digest(processor)
    return _MEMOS.setdefault(digest, _ProcessorMemo())


def encode_records(processor: Any, records: Sequence[Record], root: Path, *,
                   prompts: Sequence[str] | None = None) -> EncodedRecords:
    """Encode ``records`` whose image paths are relative to ``root`` (the corpus directory).

    ``prompts`` are the prompt texts, one per record (default: ``render_prompt(record, 0)``).
    """
    if prompts is not None and len(prompts) != len(records):
        raise ValueError(f"{len(prompts)} prompts for {len(records)} records")
    memo = _memo_of(processor)
    examples: list[Example] = []
    images: dict[str, dict[str, torch.Tensor]] = {}
    for index, record in enumerate(records):
        text = render_prompt(record, 0) if prompts is None else prompts[index]
        (prompt_ids, token_inputs), image = memo.encode(processor, root / record.image, text)
        images.setdefault(record.image, image)
        examples.append(Example(record_id=record.record_id, prompt_ids=prompt_ids,
                                answer_ids=answer_ids(processor, record.answer), image_key=record.image,
                                prompt_token_inputs=token_inputs))
    return EncodedRecords(examples, images, pad_token_id=processor.tokenizer.pad_token_id)
