"""The reference MLLMs, built from configs: a tiny LLaVA (CLIP vision tower + projector + Llama) and a
tiny Qwen2-VL (Qwen2-VL vision transformer + patch merger + Qwen2 with M-RoPE).

Nothing is downloaded: the tokenizer is trained on the corpus text and the weights are random.
``initializer_range`` defaults to 0.06 (about 1/sqrt(d_model)): with transformers' default 0.02 the
tiny model sits on a "template-only" plateau, answering at chance for hundreds of steps.
Both go through the same loader, encoding, training and evaluation code as real checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
)

from .families import FAMILIES, LLAVA, Qwen2VLImageTextProcessor
from .specs import ReferenceSpec
from .tokenizer import train_tokenizer


def build_processor(tokenizer: PreTrainedTokenizerFast, spec: ReferenceSpec) -> Any:
    """The family's processor. LLaVA: CLIP preprocessing at ``spec.image_size`` and ``<image>``
    expansion (``num_additional_image_tokens=1`` accounts for CLIP's CLS token, which the ``default``
    feature strategy drops). Qwen2-VL: every image resized to ``image_size``² pixels exactly."""
    if spec.family == LLAVA.name:
        image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": spec.image_size},
            crop_size={"height": spec.image_size, "width": spec.image_size})
        return LlavaProcessor(
            image_processor=image_processor, tokenizer=tokenizer, patch_size=spec.patch_size,
            vision_feature_select_strategy="default", num_additional_image_tokens=1,
            chat_template=LLAVA.chat_template)
    pixels = spec.image_size ** 2
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=spec.patch_size, merge_size=2)
    return Qwen2VLImageTextProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                     chat_template=FAMILIES[spec.family].chat_template)


def _llava(spec: ReferenceSpec, tokenizer: PreTrainedTokenizerFast) -> LlavaForConditionalGeneration:
    vision = CLIPVisionConfig(
        image_size=spec.image_size, patch_size=spec.patch_size, hidden_size=spec.vision_hidden,
        intermediate_size=4 * spec.vision_hidden, num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads, initializer_range=spec.initializer_range)
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.text_hidden,
        intermediate_size=4 * spec.text_hidden, num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads, num_key_value_heads=spec.text_heads,
        max_position_embeddings=spec.max_positions, initializer_range=spec.initializer_range,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id)
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.image_token_id,
        image_seq_length=spec.image_seq_length, vision_feature_select_strategy="default",
        vision_feature_layer=-1, initializer_range=spec.initializer_range)
    return LlavaForConditionalGeneration(config)


def _mrope_section(head_dim: int) -> list[int]:
    """Rotary frequencies split over (temporal, height, width) as in Qwen2-VL (16, 24, 24 of 64)."""
    half = head_dim // 2
    temporal = half // 4
    height = (half - temporal) // 2
    return [temporal, height, half - temporal - height]


def _qwen2_vl(spec: ReferenceSpec, tokenizer: PreTrainedTokenizerFast) -> Qwen2VLForConditionalGeneration:
    ids = tokenizer.convert_tokens_to_ids
    text = {"vocab_size": len(tokenizer), "hidden_size": spec.text_hidden,
            "intermediate_size": 4 * spec.text_hidden, "num_hidden_layers": spec.text_layers,
            "num_attention_heads": spec.text_heads, "num_key_value_heads": spec.text_heads,
            "max_position_embeddings": spec.max_positions, "initializer_range": spec.initializer_range,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": _mrope_section(spec.text_hidden // spec.text_heads)},
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": None,
            "eos_token_id": tokenizer.eos_token_id}
    vision = {"depth": spec.vision_layers, "embed_dim": spec.vision_hidden, "hidden_size": spec.text_hidden,
              "num_heads": spec.vision_heads, "mlp_ratio": 4, "patch_size": spec.patch_size,
              "spatial_merge_size": 2, "temporal_patch_size": 2, "initializer_range": spec.initializer_range}
    config = Qwen2VLConfig(
        text_config=text, vision_config=vision, image_token_id=tokenizer.image_token_id,
        video_token_id=tokenizer.video_token_id, vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"), initializer_range=spec.initializer_range)
    return Qwen2VLForConditionalGeneration(config)


def build_model(spec: ReferenceSpec, tokenizer: PreTrainedTokenizerFast) -> Any:
    """A randomly initialised ``spec.family`` model whose vocabulary and image token match ``tokenizer``."""
    builder = _llava if spec.family == LLAVA.name else _qwen2_vl
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = builder(spec, tokenizer)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.float().eval()


def build_reference(texts: Iterable[str], spec: ReferenceSpec) -> tuple[Any, Any]:
    """Train a tokenizer on ``texts`` and build the processor and a fresh model for it."""
    tokenizer = train_tokenizer(texts, vocab_size=spec.vocab_size, family=FAMILIES[spec.family])
    return build_model(spec, tokenizer), build_processor(tokenizer, spec)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
