"""The reference MLLM: a tiny LLaVA (CLIP vision tower + projector + Llama) built from configs.

Nothing is downloaded: the tokenizer is trained on the corpus text and the weights are random.
``initializer_range`` defaults to 0.06 (about 1/sqrt(d_model)): with transformers' default 0.02 the
tiny model sits on a "template-only" plateau, answering at chance for hundreds of steps.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from .specs import ReferenceSpec
from .tokenizer import CHAT_TEMPLATE, train_tokenizer


def build_processor(tokenizer: PreTrainedTokenizerFast, spec: ReferenceSpec) -> LlavaProcessor:
    """The LLaVA processor: CLIP preprocessing at ``spec.image_size`` and ``<image>`` expansion.

    ``num_additional_image_tokens=1`` accounts for CLIP's CLS token, which the ``default`` feature
    strategy drops, so the prompt gets exactly ``image_seq_length`` image tokens.
    """
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size})
    return LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=spec.patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE)


def build_model(spec: ReferenceSpec, tokenizer: PreTrainedTokenizerFast) -> LlavaForConditionalGeneration:
    """A randomly initialised LLaVA whose vocabulary and image token match ``tokenizer``."""
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
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.float().eval()


def build_reference(texts: Iterable[str], spec: ReferenceSpec
                    ) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """Train a tokenizer on ``texts`` and build the processor and a fresh model for it."""
    tokenizer = train_tokenizer(texts, vocab_size=spec.vocab_size)
    return build_model(spec, tokenizer), build_processor(tokenizer, spec)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
