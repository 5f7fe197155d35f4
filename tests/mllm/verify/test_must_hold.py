"""The verdict on real tiny candidates: the retrain oracle passes, each broken candidate fails, and
for the right reason (the check that names its failure mode fails)."""

from __future__ import annotations

import json

import pytest

from mllm.data.schema import FactKind, Task
from mllm.verify.calibration import EXPECTED_FAILURES, PASSING

pytestmark = pytest.mark.slow


def test_retrain_oracle_passes(report_of) -> None:
    report = report_of(PASSING)
    assert report.passed, [(c.name, c.value, c.threshold) for c in report.failed]
    assert report.to_json()["verdict"] == "pass"


@pytest.mark.parametrize("name", list(EXPECTED_FAILURES))
def test_broken_candidate_fails_for_the_right_reason(report_of, name: str) -> None:
    report = report_of(name)
    must_fail, must_pass = EXPECTED_FAILURES[name]
    failed = {c.name for c in report.failed}
    assert not report.passed
    assert must_fail <= failed, f"{name}: failed {sorted(failed)}"
    assert not (must_pass & failed), f"{name}: also failed {sorted(must_pass & failed)}"


def test_report_carries_no_phi_and_every_figure_has_its_sample_size(report_of, world) -> None:
    text = json.dumps(report_of("no-op").to_json())
    for record in world.corpus.records:
        assert record.patient_id not in text and record.study_id not in text
        if record.fact_kind is FactKind.PRIVATE and record.task is not Task.CLASSIFICATION:
            assert record.answer not in text
    for check in report_of("no-op").to_json()["checks"]:
        if check["estimate"] is not None:
            assert {"n", "low", "high", "method"} <= set(check["estimate"])
