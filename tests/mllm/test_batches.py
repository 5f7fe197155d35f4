"""The batches of a fine-tune: every record at its training depth, drawn once or anew every epoch."""

from __future__ import annotations

from collections import Counter

import pytest

from mllm.data.prompts import DEPTHS, render_prompt, training_depth, training_option_shift, training_prompts
from mllm.data.qa import rotate_options
from mllm.data.schema import Task
from mllm.models.specs import SPECS
from mllm.train.batches import DrawnBatches, training_batches
from mllm.train.loop import ShuffledBatches, TrainConfig
from mllm.train.recipe import fresh_reference


@pytest.fixture(scope="module")
def processor():
    return fresh_reference(SPECS["tiny"])[1]


def _shown(source: DrawnBatches, epoch: int, part: int = 1) -> dict[str, int]:
    """record id -> the depth (``part`` 1) or option shift (``part`` 2) it is shown at in ``epoch``."""
    variant = {example: key for key, example in source.variants.items()}
    return {source.data.examples[i].record_id: variant[i][part] for i in source.items(epoch)}


def test_per_epoch_draws_show_every_record_once_per_epoch_at_a_new_depth(corpus, processor):
    records = corpus.select(trainable=True)
    source = DrawnBatches(processor, records, corpus.root, batch_size=8, seed=3)
    assert source.steps_per_epoch == -(-len(records) // 8)
    epochs = [_shown(source, epoch) for epoch in range(6)]
    for epoch, shown in enumerate(epochs):
        assert shown == {r.record_id: training_depth(r, 3, epoch) for r in records}
    per_record = {r.record_id: {shown[r.record_id] for shown in epochs} for r in records}
    assert sum(len(depths) > 1 for depths in per_record.values()) > 0.9 * len(records)
    assert set(Counter(shown[r.record_id] for shown in epochs for r in records)) == set(DEPTHS)
    batches = list(source.epoch(0))
    assert sum(len(b.input_ids) for b in batches) == len(records)


def test_a_records_draws_do_not_depend_on_the_other_records(corpus, processor):
    """The retrain oracle leaves records out: the records it keeps must meet the same prompts."""
    records = corpus.select(trainable=True)
    full = DrawnBatches(processor, records, corpus.root, batch_size=8, seed=0)
    kept = DrawnBatches(processor, records[::2], corpus.root, batch_size=8, seed=0)
    for epoch in range(3):
        everything = _shown(full, epoch)
        assert _shown(kept, epoch) == {rid: everything[rid] for rid in _shown(kept, epoch)}


def test_per_epoch_option_order_shows_every_order_with_its_letter(corpus, processor):
    records = corpus.select(trainable=True)
    config = TrainConfig(batch_size=8, seed=1, depth_draw="per-epoch", option_order="per-epoch")
    source = training_batches(processor, records, corpus.root, config)
    assert isinstance(source, DrawnBatches) and source.rotate
    fixed = DrawnBatches(processor, records, corpus.root, batch_size=8, seed=1)
    for epoch in range(4):
        assert _shown(source, epoch) == _shown(fixed, epoch)  # the depth draws are unchanged
        shifts = _shown(source, epoch, part=2)
        assert shifts == {r.record_id: training_option_shift(r, 1, epoch) for r in records}
        assert set(_shown(fixed, epoch, part=2).values()) == {0}
    by_id = {r.record_id: r for r in records}
    choice = next(r for r in records if r.task is Task.CLASSIFICATION)
    tokenizer = processor.tokenizer
    for epoch in range(8):
        index = next(i for i in source.items(epoch) if source.data.examples[i].record_id == choice.record_id)
        example = source.data.examples[index]
        shown = rotate_options(choice, training_option_shift(choice, 1, epoch))
        depth = training_depth(choice, 1, epoch)
        assert render_prompt(shown, depth).split("\n")[-1] in tokenizer.decode(example.prompt_ids)
        assert tokenizer.decode(example.answer_ids, skip_special_tokens=True).strip() == shown.answer
    assert len({_shown(source, e, part=2)[choice.record_id] for e in range(8)}) > 1
    rotated = [rid for rid, shift in _shown(source, 0, part=2).items() if shift]
    assert rotated and all(by_id[rid].task is Task.CLASSIFICATION for rid in rotated)


def test_option_order_needs_per_epoch_depth_draws():
    with pytest.raises(ValueError, match="option_order"):
        TrainConfig(option_order="per-step", depth_draw="per-epoch")
    with pytest.raises(ValueError, match="needs depth_draw"):
        TrainConfig(option_order="per-epoch")


def test_per_record_draw_trains_the_training_prompts(corpus, processor):
    records = corpus.select(trainable=True)
    source = training_batches(processor, records, corpus.root, TrainConfig(batch_size=4, seed=2))
    assert type(source) is ShuffledBatches
    prompts = training_prompts(records, 2)
    decoded = [processor.tokenizer.decode(ex.prompt_ids, skip_special_tokens=True)
               for ex in source.data.examples]
    assert all(p.split("\n")[-1] in text for p, text in zip(prompts, decoded, strict=True))
    assert sum("Institution" in text for text in decoded) == sum("Institution" in p for p in prompts) > 0


def test_an_unknown_depth_draw_is_refused():
    with pytest.raises(ValueError, match="depth_draw"):
        TrainConfig(depth_draw="per-batch")
