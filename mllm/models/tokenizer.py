"""A byte-level BPE tokenizer trained locally on corpus text, with a model family's special tokens.

Byte-level BPE round-trips any text exactly (a word-level tokenizer would re-join words with
spaces); digits are split one per token so numbers are spelled out rather than memorised as
whole-number tokens. The family's image token is a special token, and its chat template renders
image items of a message as that token, so ``processor.apply_chat_template`` works as with a real
checkpoint of the family (:mod:`mllm.models.families`).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .families import LLAVA, ModelFamily


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 2048,
                    family: ModelFamily = LLAVA) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` (deterministic for the same texts)."""
    tokens = family.tokens
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=tokens.in_order(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer)
    extra = {"image_token": tokens.image, **({"video_token": tokens.video} if tokens.video else {})}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=tokens.pad, bos_token=tokens.bos, eos_token=tokens.eos,
        extra_special_tokens=extra, chat_template=family.chat_template)
