"""The ``over_forgetting`` check on hand-made pooled rows: a shortfall for a whole patient or
institution, an absolute deficit under a kept patient."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mllm.data.schema import Level
from mllm.verify import VerdictPolicy
from mllm.verify.attacks.reconstruction import over_forgetting_check
from mllm.verify.report import Check
from mllm.verify.stats import Estimate


def _ctx(level: Level) -> SimpleNamespace:
    return SimpleNamespace(
        policy=VerdictPolicy(),
        scope=SimpleNamespace(node=SimpleNamespace(level=level)),
        check=lambda **fields: Check(significance=True, **fields),
    )


def _pooled(forget: float, reference: float, shortfall_interval: tuple[float, float]) -> dict[str, Estimate]:
    excess = forget - reference
    return {
        "forget": Estimate(forget, 72, 0, 1, "wilson95"),
        "reference": Estimate(reference, 72, 0, 1, "bootstrap"),
        "excess": Estimate(excess, 72, excess - 0.05, excess + 0.05, "bootstrap"),
        "shortfall": Estimate(1 - forget / reference, 72, *shortfall_interval, "bootstrap"),
    }


@pytest.mark.parametrize("level", [Level.PATIENT, Level.INSTITUTION])
def test_a_whole_subject_answered_far_below_its_twins_fails_on_the_shortfall(level: Level) -> None:
    # 0.03 where never-trained twins get 0.13: only 0.10 points below, but 77 % of their success missed
    check = over_forgetting_check(_ctx(level), _pooled(0.03, 0.13, (0.4, 0.95)))
    assert check.value == pytest.approx(0.77, abs=0.01) and check.threshold == 0.3 and check.passed is False
    # at the twins' level, or a shortfall the sample does not support: passes
    assert over_forgetting_check(_ctx(level), _pooled(0.12, 0.13, (-0.3, 0.4))).passed is True
    assert over_forgetting_check(_ctx(level), _pooled(0.03, 0.13, (-0.1, 1.0))).passed is True


@pytest.mark.parametrize("level", [Level.STUDY, Level.SECTION])
def test_under_a_kept_patient_the_deficit_in_points_is_judged(level: Level) -> None:
    # the same forget set under a kept patient: 0.10 points below its twins is within 0.2
    check = over_forgetting_check(_ctx(level), _pooled(0.03, 0.13, (0.4, 0.95)))
    assert check.value == pytest.approx(0.10) and check.threshold == 0.2 and check.passed is True
    assert over_forgetting_check(_ctx(level), _pooled(0.05, 0.40, (0.7, 0.95))).passed is False
