"""The pretrained reference base: an interrupted pretraining resumes to the very same artifact."""

from __future__ import annotations

import pytest

from mllm.models.specs import SPECS
from mllm.train.loop import TrainConfig
from mllm.train.pretrain import PretrainJob, run_pretrain_job

CONFIG = TrainConfig(epochs=1, batch_size=8, lr=3e-3, seed=0)


class Interrupted(Exception):
    pass


def test_interrupted_pretraining_resumes_to_the_same_digest(tmp_path) -> None:
    def job(name: str, *, resume: bool = False) -> PretrainJob:
        return PretrainJob(out=tmp_path / name, spec=SPECS["tiny"], cases=6, config=CONFIG,
                           checkpoint_every=2, resume=resume)

    uninterrupted = run_pretrain_job(job("a"))

    def stop_at_step_5(progress) -> None:
        if progress.step == 5:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_pretrain_job(job("b"), stop_at_step_5)
    assert not (tmp_path / "b").exists() and (tmp_path / "b.ckpt").is_dir()  # nothing half-written
    resumed = run_pretrain_job(job("b", resume=True))
    assert resumed.result.steps == uninterrupted.result.steps == 12  # 96 records, batch 8
    assert resumed.digest == uninterrupted.digest
    assert not (tmp_path / "b.ckpt").exists()
