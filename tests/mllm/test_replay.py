"""Replay of public teaching-file records in a fine-tune: the same records every time."""

from __future__ import annotations

from pathlib import Path

from mllm.data.prompts import training_prompts
from mllm.data.schema import FactKind
from mllm.data.teaching import INSTITUTION
from mllm.train.replay import replay_records


def test_replay_records_are_the_same_every_time_public_and_end_with_their_question() -> None:
    with replay_records(2, seed=5) as records:
        prompts = training_prompts(records, seed=5)
        assert len(records) == 2 * 16  # 4 facts x 4 questions per case
        images = [Path(r.image) for r in records]
        assert all(p.is_absolute() and p.is_file() for p in images)
        assert {r.institution_id for r in records} == {INSTITUTION}
        assert {r.fact_kind for r in records} == {FactKind.IMAGE_GROUNDED}
        assert all(p.endswith(r.question) for p, r in zip(prompts, records, strict=True))
        first = [(r.record_id, r.question, r.answer, Path(r.image).name) for r in records]
    assert not any(p.exists() for p in images)  # the images live only while the context is open
    with replay_records(2, seed=5) as again:
        assert [(r.record_id, r.question, r.answer, Path(r.image).name) for r in again] == first
    with replay_records(0, seed=5) as none:
        assert none == []

