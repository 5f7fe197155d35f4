"""Replay of public teaching-file records in a fine-tune: the same records every time, kept while
unlearning."""

from __future__ import annotations

from pathlib import Path

import pytest

from mllm.data.schema import Corpus, FactKind, Level
from mllm.data.scope import NodeRef, resolve_scope
from mllm.data.teaching import INSTITUTION
from mllm.models.specs import SPECS
from mllm.train.loop import TrainConfig
from mllm.train.recipe import TrainJob, run_train_job
from mllm.train.replay import replay_records
from mllm.unlearn import unlearn
from mllm.unlearn.methods.hierarchy import Hierarchy

LENIENT = {"guard": {"min_retain_ratio": 0.0, "max_holdout_drop": 1.0, "min_stop_ratio": 0.0,
                     "max_length_ratio": 100.0, "max_new_tokens": 4, "generations": 2}}


def test_replay_records_are_the_same_every_time_public_and_end_with_their_question() -> None:
    with replay_records(2, seed=5) as (records, prompts):
        assert len(records) == len(prompts) == 2 * 16  # 4 facts x 4 questions per case
        images = [Path(r.image) for r in records]
        assert all(p.is_absolute() and p.is_file() for p in images)
        assert {r.institution_id for r in records} == {INSTITUTION}
        assert {r.fact_kind for r in records} == {FactKind.IMAGE_GROUNDED}
        assert all(p.endswith(r.question) for p, r in zip(prompts, records, strict=True))
        first = [(r.record_id, r.question, r.answer, Path(r.image).name) for r in records]
    assert not any(p.exists() for p in images)  # the images live only while the context is open
    with replay_records(2, seed=5) as (again, _):
        assert [(r.record_id, r.question, r.answer, Path(r.image).name) for r in again] == first
    with replay_records(0, seed=5) as (none, no_prompts):
        assert none == [] and no_prompts == []


def test_hierarchy_keeps_the_records_its_lineage_replayed(corpus: Corpus, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``unlearn`` hands the method the teaching-file records the model's recipe replayed (their images
    on disk during the run), and ``hierarchy`` trains them in its kept stream: image reading stays a
    skill while the patient's images are forgotten (docs/design.md, ``hierarchy``)."""
    served = tmp_path / "model"
    run_train_job(TrainJob(corpus=corpus.root, out=served, config=TrainConfig(steps=2, batch_size=4, seed=3),
                           spec=SPECS["tiny"], replay=1, checkpoint_every=0))
    seen: dict[str, set] = {"replay": set(), "kept": set()}
    encode = Hierarchy.encode

    def spy(self: Hierarchy, groups: dict) -> object:
        seen["replay"] |= {(r.record_id, Path(r.image).is_file()) for r in self.ctx.replay}
        seen["kept"] |= {item.record.record_id for item in groups.get("kept", ())}
        return encode(self, groups)

    monkeypatch.setattr(Hierarchy, "encode", spy)
    scope = resolve_scope(corpus, NodeRef.of(corpus.select(trainable=True)[0], Level.STUDY))
    unlearn(model_dir=served, corpus=corpus, scope=scope, method="hierarchy", out=tmp_path / "unlearned",
            config={"steps": 1, "min_forget_passes": 0, **LENIENT})
    with replay_records(1, seed=3) as (public, _):
        replayed = {r.record_id for r in public}
    assert seen["replay"] == {(record_id, True) for record_id in replayed}
    assert replayed <= seen["kept"]
