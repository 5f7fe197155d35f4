"""The ``over_forgetting`` check on hand-made pooled rows: a shortfall against the never-trained twins
at the depths where they are a fair reference; under a kept patient, a shortfall of answers with the
patient's other values against the original's twins asked under the patient."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from mllm.data.prompts import with_context_of
from mllm.data.schema import FactKind, Level, Record, Split, Task
from mllm.verify import VerdictPolicy
from mllm.verify.attacks.reconstruction import comparable_depths, over_forgetting_check
from mllm.verify.context import VerifyContext
from mllm.verify.engine import Decoded
from mllm.verify.probes import DEPTHS, Probe
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


def _judge(level: Level, pooled: dict[str, Estimate], kept: dict[str, Estimate] | None = None) -> Check:
    return over_forgetting_check(_ctx(level), pooled, comparable_depths(level), kept or {}, evidence=())


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
def test_under_a_kept_patient_the_patients_other_values_are_the_reference(level: Level) -> None:
    # a model that never saw the study answers it with the patient's other studies: below the twins'
    # success, so the success shortfall is not judged there ...
    assert comparable_depths(level) == ()
    below_twins = _pooled(0.0, 0.40, (0.9, 1.0))
    assert _judge(level, below_twins).passed is None
    # ... but it answers with the patient's other values about as often as the original does for a
    # never-seen study of that patient; wrong answers drawn from other patients do not
    check = _judge(level, below_twins, kept=_pooled(0.03, 0.34, (0.7, 1.0)))
    assert check.passed is False and check.threshold == 0.5 and "patient's other values" in check.detail
    assert _judge(level, below_twins, kept=_pooled(0.30, 0.34, (-0.3, 0.5))).passed is True


def test_a_batch_with_a_patient_and_a_study_of_a_kept_patient_is_judged_on_both() -> None:
    fine, over = _pooled(0.12, 0.13, (-0.3, 0.4)), _pooled(0.03, 0.34, (0.7, 1.0))
    check = over_forgetting_check(_ctx(Level.PATIENT), fine, DEPTHS, over, evidence=())
    assert check.passed is False and "patient's other values" in check.detail
    check = over_forgetting_check(_ctx(Level.PATIENT), fine, DEPTHS, fine, evidence=())
    assert check.passed is True and check.threshold == 0.3


def _date(patient: str, study: str, value: str) -> Record:
    return Record(record_id=f"{patient}/{study}", institution_id="H1", patient_id=patient, study_id=study,
                  section=None, level=Level.STUDY, task=Task.GENERATION, fact_kind=FactKind.PRIVATE,
                  split=Split.TRAIN, question="When was the study?", answer=value, image="i.png",
                  fact_key="study.date", fact_value=value, owner_level=Level.STUDY,
                  owner_id=f"H1/{patient}/{study}", form="generation-0")


class _Says:
    """A subject giving one answer to every probe."""

    def __init__(self, text: str) -> None:
        self.text = text

    def decode(self, probes, root, policy) -> list[Decoded]:
        return [Decoded(self.text, finished=True, tokens=3) for _ in probes]


def test_the_truth_or_a_value_the_kept_patient_holds_elsewhere_counts_under_that_patient() -> None:
    forgotten, kept, other = _date("P1", "S2", "2021-05-05"), _date("P1", "S1", "2019-03-01"), \
        _date("P2", "S1", "2020-01-01")
    twin = with_context_of(_date("P3", "S1", "2018-07-07"), forgotten, depth=2)  # asked under P1
    held_out_form = replace(forgotten, record_id="P1/S2/held-out", form="generation-1", eval_only=True)
    corpus = SimpleNamespace(root=None, records=[forgotten, held_out_form, kept, other])
    ctx = VerifyContext(corpus=corpus, scope=SimpleNamespace(forget=[forgotten]), policy=VerdictPolicy(),
                        candidate=_Says(""), original=_Says(""))
    probes = [Probe(forgotten, 2), Probe(twin, 2)]
    assert ctx.kept_patient_value(_Says("2019-03-01"), probes) == [True, True]  # P1's other study
    assert ctx.kept_patient_value(_Says("2020-01-01"), probes) == [False, False]  # another patient's
    # the forgotten value: right for its own probe (a leak, judged by the leak checks), but removed
    # with the node in every form - a held-out phrasing of it is no kept value for the twin
    assert ctx.kept_patient_value(_Says("2021-05-05"), probes) == [True, False]
