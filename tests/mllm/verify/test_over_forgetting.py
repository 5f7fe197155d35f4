"""The ``over_forgetting`` check on hand-made pooled rows: a shortfall against the never-trained twins
at the depths where they are a fair reference; not judged under a kept patient."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mllm.data.schema import Level
from mllm.verify import VerdictPolicy
from mllm.verify.attacks.reconstruction import comparable_depths, over_forgetting_check
from mllm.verify.probes import DEPTHS
from mllm.verify.report import Check
from mllm.verify.stats import Estimate


def _ctx(level: Level) -> SimpleNamespace:
    return SimpleNamespace(
        policy=VerdictPolicy(),
        scope=SimpleNamespace(node=SimpleNamespace(level=level)),
        check=lambda evidence, **fields: Check(significance=True, **fields),  # the evidence floor: elsewhere
    )


def _pooled(forget: float, reference: float, shortfall_interval: tuple[float, float]) -> dict[str, Estimate]:
    excess = forget - reference
    return {
        "forget": Estimate(forget, 72, 0, 1, "wilson95"),
        "reference": Estimate(reference, 72, 0, 1, "bootstrap"),
        "excess": Estimate(excess, 72, excess - 0.05, excess + 0.05, "bootstrap"),
        "shortfall": Estimate(1 - forget / reference, 72, *shortfall_interval, "bootstrap"),
    }


def _judge(level: Level, pooled: dict[str, Estimate]) -> Check:
    return over_forgetting_check(_ctx(level), pooled, comparable_depths(level), evidence=())


@pytest.mark.parametrize("level", [Level.PATIENT, Level.INSTITUTION])
def test_a_whole_subject_answered_far_below_its_twins_fails_on_the_shortfall(level: Level) -> None:
    # 0.03 where never-trained twins get 0.13: only 0.10 points below, but 77 % of their success missed
    check = _judge(level, _pooled(0.03, 0.13, (0.4, 0.95)))
    assert check.value == pytest.approx(0.77, abs=0.01) and check.threshold == 0.3 and check.passed is False
    # at the twins' level, or a shortfall the sample does not support: passes
    assert _judge(level, _pooled(0.12, 0.13, (-0.3, 0.4))).passed is True
    assert _judge(level, _pooled(0.03, 0.13, (-0.1, 1.0))).passed is True


def test_an_institution_is_compared_with_its_twins_without_context() -> None:
    # the twins' prompts name trained institutions from depth 1 on, a forgotten institution's do not
    assert comparable_depths(Level.INSTITUTION) == (0,) and comparable_depths(Level.PATIENT) == DEPTHS
    assert _judge(Level.INSTITUTION, _pooled(0.03, 0.13, (0.4, 0.95))).detail.startswith("depth 0 and")


@pytest.mark.parametrize("level", [Level.STUDY, Level.SECTION])
def test_under_a_kept_patient_the_twins_are_no_reference(level: Level) -> None:
    # a model that never saw the study answers it with the patient's other studies: below the twins
    assert comparable_depths(level) == ()
    check = _judge(level, _pooled(0.0, 0.40, (0.9, 1.0)))
    assert check.passed is None and "kept patient" in check.detail
