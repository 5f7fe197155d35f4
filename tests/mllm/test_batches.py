"""The batches of a fine-tune: every record at its training depth, drawn once or anew every epoch."""

from __future__ import annotations

from collections import Counter

import pytest

from mllm.data.prompts import DEPTHS, training_depth, training_prompts
from mllm.models.specs import SPECS
from mllm.train.batches import DepthDrawnBatches, training_batches
from mllm.train.loop import ShuffledBatches, TrainConfig
from mllm.train.recipe import fresh_reference


@pytest.fixture(scope="module")
def processor():
    return fresh_reference(SPECS["tiny"])[1]


def _shown(source: DepthDrawnBatches, epoch: int) -> dict[str, int]:
    """record id -> the depth ``source`` shows it at in ``epoch``."""
    count = len(source.records)
    return {source.data.examples[i].record_id: i // count for i in source.items(epoch)}


def test_per_epoch_draws_show_every_record_once_per_epoch_at_a_new_depth(corpus, processor):
    records = corpus.select(trainable=True)
    source = DepthDrawnBatches(processor, records, corpus.root, batch_size=8, seed=3)
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
    full = DepthDrawnBatches(processor, records, corpus.root, batch_size=8, seed=0)
    kept = DepthDrawnBatches(processor, records[::2], corpus.root, batch_size=8, seed=0)
    for epoch in range(3):
        everything = _shown(full, epoch)
        assert _shown(kept, epoch) == {rid: everything[rid] for rid in _shown(kept, epoch)}


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
