"""Encoding reuses what a processor made of an (image, prompt) pair, and only while that is still right:
the same image file and a processor that reads exactly alike (same digest)."""

from __future__ import annotations

import shutil

import torch
from PIL import Image

from mllm.data.schema import load_corpus
from mllm.models.specs import SPECS
from mllm.train.encode import encode_records
from mllm.train.recipe import fresh_reference


def _pixels(data) -> torch.Tensor:
    return data.images[data.examples[0].image_key]["pixel_values"]


def test_a_pair_is_processed_once_per_reading_and_again_when_image_or_processor_differ(corpus, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(corpus.root, root)
    copy = load_corpus(root)
    records = copy.select(trainable=True)[:3]
    _, processor = fresh_reference(SPECS["tiny"])
    first = encode_records(processor, records, root)

    again = encode_records(fresh_reference(SPECS["tiny"])[1], records, root)  # another object, same digest
    assert [e.prompt_ids for e in again.examples] == [e.prompt_ids for e in first.examples]
    assert _pixels(again) is _pixels(first)  # reused, not processed again

    with Image.open(root / records[0].image) as image:
        image.convert("RGB").rotate(90).save(root / records[0].image)  # the same path, another image
    rewritten = encode_records(processor, records[:1], root)
    assert not torch.equal(_pixels(rewritten), _pixels(first))

    other = fresh_reference(SPECS["tiny"])[1]
    other.image_processor.image_mean = [0.0, 0.0, 0.0]  # reads images differently: another digest
    renormalised = encode_records(other, records[:1], root)
    assert not torch.equal(_pixels(renormalised), _pixels(rewritten))
