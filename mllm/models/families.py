"""Model families: what differs between LLaVA and Qwen2-VL / Qwen2.5-VL checkpoints, in one place.

A family knows
- which ``config.model_type`` values belong to it and which processor classes it uses;
- the **end-of-turn token** that closes an assistant answer (LLaVA: the tokenizer's EOS ``</s>``;
  Qwen: ``<|im_end|>``, which is not the base tokenizer's EOS). Answers are tokenised separately
  and end with it, and greedy decoding stops at it;
- the chat template and special tokens of models Oblivio builds itself (real checkpoints bring
  their own template);
- how to load its processor from a local directory. Qwen2-VL's ``AutoProcessor`` includes a video
  processor that needs torchvision; Oblivio answers about images only, so it builds the processor
  from the PIL image processor and the tokenizer (:class:`Qwen2VLImageTextProcessor`) on every
  machine — the same pixels with or without torchvision.

Everything else — ``pixel_values`` of different shapes, ``image_grid_thw``, ``mm_token_type_ids`` and
M-RoPE positions (computed by the model from those) — is handled generically by encoding and
batching (:mod:`mllm.train.encode`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import (
    AutoProcessor,
    AutoTokenizer,
    LlavaProcessor,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
)

# Processor outputs aligned token by token with ``input_ids``: padded like them (with 0 = text).
TOKEN_ALIGNED_KEYS = ("mm_token_type_ids", "token_type_ids")

LLAVA_CHAT_TEMPLATE = (
    # ``<|user|><image>question<|assistant|>answer</s>``: no system prompt, no whitespace between turns
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '</s>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

QWEN_CHAT_TEMPLATE = (
    # Qwen2-VL-Instruct's template for images and text (default system prompt, ChatML turns)
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class Qwen2VLImageTextProcessor(Qwen2VLProcessor):
    """Qwen2-VL / Qwen2.5-VL processor for images and text only: no video processor, no torchvision.

    For images Qwen2.5-VL's processor does exactly what Qwen2-VL's does (they differ for videos).
    """

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


def _auto_processor(root: Path) -> Any:
    return AutoProcessor.from_pretrained(root, local_files_only=True)


def _qwen_image_text_processor(root: Path) -> Qwen2VLImageTextProcessor:
    tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(root, local_files_only=True)
    return Qwen2VLImageTextProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                     chat_template=tokenizer.chat_template or QWEN_CHAT_TEMPLATE)


@dataclass(frozen=True)
class SpecialTokens:
    """Special tokens of the tokenizers Oblivio trains for a family, in vocabulary order."""

    pad: str
    eos: str
    image: str
    bos: str | None = None
    video: str | None = None
    extra: tuple[str, ...] = ()

    def in_order(self) -> list[str]:
        tokens = (self.pad, self.bos, self.eos, self.image, self.video, *self.extra)
        return [token for token in tokens if token is not None]


@dataclass(frozen=True)
class ModelFamily:
    """One family of image-text checkpoints (see the module docstring)."""

    name: str
    model_types: tuple[str, ...]
    processor_types: tuple[type, ...]
    end_of_turn: str | None  # ``None``: the tokenizer's EOS token
    chat_template: str
    tokens: SpecialTokens
    load_processor: Callable[[Path], Any]  # the processor of the checkpoint in a directory (local files)

    def end_of_turn_id(self, tokenizer: Any) -> int:
        """The id closing an assistant turn; raises if the tokenizer lacks the token."""
        if self.end_of_turn is None:
            return int(tokenizer.eos_token_id)
        token_id = tokenizer.convert_tokens_to_ids(self.end_of_turn)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {self.end_of_turn!r} token ({self.name} end of turn)")
        return int(token_id)

    def stop_ids(self, tokenizer: Any) -> list[int]:
        """Token ids that end a generated answer: end of turn, then EOS if it differs."""
        ids = [self.end_of_turn_id(tokenizer)]
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
            ids.append(int(tokenizer.eos_token_id))
        return ids


LLAVA = ModelFamily(
    name="llava", model_types=("llava",), processor_types=(LlavaProcessor,), end_of_turn=None,
    chat_template=LLAVA_CHAT_TEMPLATE,
    tokens=SpecialTokens(pad="<pad>", bos="<s>", eos="</s>", image="<image>",
                         extra=("<|user|>", "<|assistant|>")),
    load_processor=_auto_processor)
QWEN2_VL = ModelFamily(
    name="qwen2-vl", model_types=("qwen2_vl", "qwen2_5_vl"),
    processor_types=(Qwen2VLProcessor, Qwen2_5_VLProcessor), end_of_turn="<|im_end|>",
    chat_template=QWEN_CHAT_TEMPLATE,
    tokens=SpecialTokens(pad="<|endoftext|>", eos="<|im_end|>", image="<|image_pad|>", video="<|video_pad|>",
                         extra=("<|im_start|>", "<|vision_start|>", "<|vision_end|>")),
    load_processor=_qwen_image_text_processor)
FAMILIES: dict[str, ModelFamily] = {family.name: family for family in (LLAVA, QWEN2_VL)}


class UnknownFamilyError(ValueError):
    """The checkpoint or processor belongs to no supported family."""


def family_for_model_type(model_type: str) -> ModelFamily:
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    supported = ", ".join(t for family in FAMILIES.values() for t in family.model_types)
    raise UnknownFamilyError(f"model type {model_type!r} is not supported (supported: {supported})")


def family_of(processor: Any) -> ModelFamily:
    """The family of a processor (what encoding and decoding need to know)."""
    for family in FAMILIES.values():
        if isinstance(processor, family.processor_types):
            return family
    raise UnknownFamilyError(f"no model family uses a {type(processor).__name__}")


def processor_digest(processor: Any) -> str:
    """SHA-256 of what turns a record into model inputs and answers back into text: the tokenizer
    (vocabulary, merges, normalizer, added and special tokens), the chat template and the image
    preprocessing. Equal for a processor and its saved-and-reloaded copy; an unlearned model keeps
    its original's, so a difference means the candidate changed how it reads or writes."""
    tokenizer = processor.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)  # a fast tokenizer's full definition
    rules = sorted(tokenizer.get_vocab().items()) if backend is None else json.loads(backend.to_str())
    template = getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)
    parts = {
        "tokenizer": rules,
        "special_tokens": sorted(map(str, tokenizer.all_special_tokens)),
        "chat_template": template,
        "image_processor": processor.image_processor.to_dict(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
