from __future__ import annotations

import pytest

from mllm.models.families import LLAVA
from mllm.models.tokenizer import train_tokenizer

IMAGE_TOKEN = LLAVA.tokens.image

TEXTS = ["The nodule measures 12 mm in the left upper lobe.", "CRP 184 mg/L on 2024-03-15",
         "Patient Maria Lopez, MRN 0042137", "hemoglobin 13.5 g/dL"] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=400)


@pytest.mark.parametrize("answer", [
    "The nodule measures 12 mm in the left upper lobe.", "B", " leading and trailing spaces ",
    "Straße, Ñandú — 35.7 °C", "x10^9/L", "line\nbreak", "unseen words entirely: zyxw 987654321"])
def test_answers_round_trip_exactly(tokenizer, answer):
    ids = tokenizer(answer, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == answer


def test_digits_are_split_one_per_token(tokenizer):
    tokens = tokenizer.tokenize("MRN 0042137")
    assert [t for t in tokens if t.isdigit()] == list("0042137")


def test_image_token_is_one_special_token(tokenizer):
    assert tokenizer.image_token == IMAGE_TOKEN
    assert tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) == tokenizer.image_token_id
    ids = tokenizer(f"{IMAGE_TOKEN}What?", add_special_tokens=False).input_ids
    assert ids[0] == tokenizer.image_token_id and ids.count(tokenizer.image_token_id) == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == "What?"


def test_chat_template_renders_image_then_question(tokenizer):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == "<|user|><image>Q?<|assistant|>"
    messages.append({"role": "assistant", "content": "A"})
    assert tokenizer.apply_chat_template(messages, tokenize=False) == "<|user|><image>Q?<|assistant|>A</s>"


def test_training_is_deterministic(tokenizer):
    assert train_tokenizer(TEXTS, vocab_size=400).get_vocab() == tokenizer.get_vocab()
    assert tokenizer.pad_token_id is not None and tokenizer.eos_token_id is not None
