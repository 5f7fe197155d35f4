"""Verdict policy files, the significance rule of a check, and the report's schema and digest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
import rfc8785

from mllm.verify import PolicyError, VerdictPolicy
from mllm.verify.context import VerifyContext
from mllm.verify.report import SCHEMA, Check, VerificationReport
from mllm.verify.stats import Estimate


def test_policy_file_overrides_a_subset_and_refuses_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"max_leak_excess": 0.1, "max_retain_drop": 0}))
    policy = VerdictPolicy.from_file(path)
    assert policy.max_leak_excess == 0.1 and policy.max_retain_drop == 0.0
    assert policy.max_mia_auc == VerdictPolicy().max_mia_auc
    for bad in (
        {"max_leak_exces": 0.1},
        {"max_leak_excess": "0.1"},
        {"relearn_steps": 2.5},
        {"require_significance": 1},
        {"max_mia_auc": float("inf")},
        {"relearn_lr": 1e300},  # finite, but the relearning attack's AdamW overflowed: a traceback
        {"relearn_steps": 0},
        [1, 2],
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(PolicyError):
            VerdictPolicy.from_file(path)
    path.write_text("{not json")
    with pytest.raises(PolicyError, match="not valid JSON"):
        VerdictPolicy.from_file(path)
    with pytest.raises(PolicyError, match="cannot read"):
        VerdictPolicy.from_file(tmp_path / "missing.json")


def _check(
    value: float,
    low: float,
    high: float,
    comparison: str = "<=",
    null: float = 0.0,
    significance: bool = True,
) -> Check:
    return Check(
        name="c",
        attack="a",
        value=value,
        threshold=0.2 if comparison == "<=" else 0.25,
        comparison=comparison,
        estimate=Estimate(value, 10, low, high, "test"),
        diagnosis="d",
        null=null,
        significance=significance,
    )


def test_overrides_name_each_changed_field_and_whether_it_lets_more_candidates_pass() -> None:
    assert VerdictPolicy().overrides() == []
    policy = VerdictPolicy(max_leak_excess=0.5, max_retain_drop=0.05, min_mia_auc=0.1, relearn_steps=20,
                           require_significance=False, seed=4)
    assert {o["field"]: o["direction"] for o in policy.overrides()} == {
        "max_leak_excess": "laxer", "max_retain_drop": "stricter", "min_mia_auc": "laxer",
        "relearn_steps": "stricter", "require_significance": "stricter", "seed": "changed"}
    assert policy.overrides()[0] == {"field": "max_leak_excess", "value": 0.5, "default": 0.2,
                                     "direction": "laxer"}


def test_a_check_fails_only_when_beyond_threshold_and_significant() -> None:
    assert _check(0.1, -0.3, 0.5).passed is True  # within the threshold
    assert _check(0.4, 0.1, 0.7).passed is False  # beyond and the interval excludes 0
    assert _check(0.4, -0.1, 0.9).passed is True  # beyond, but the sample cannot tell it from 0
    assert _check(0.4, -0.1, 0.9, significance=False).passed is False
    assert _check(0.1, 0.0, 0.3, comparison=">=", null=0.5).passed is False  # AUC far below chance
    assert _check(0.1, 0.0, 0.6, comparison=">=", null=0.5).passed is True
    assert _check(float("nan"), 0, 0).passed is None


def test_report_json_follows_its_schema_and_digest_is_sha256_of_rfc8785() -> None:
    checks = [_check(0.4, 0.1, 0.7), _check(0.0, -0.1, 0.1), _check(float("nan"), 0, 0)]
    report = VerificationReport(
        checks=checks,
        attacks={"a": {"x": Estimate(0.5, 4, 0.1, 0.9, "wilson95"), "y": float("nan")}},
        inputs={"candidate_digest": None},
        policy=VerdictPolicy().as_dict(),
        definitions={"m": "d"},
    )
    document = report.to_json()
    schema = json.loads((Path(__file__).parents[3] / "mllm/verify/report.schema.json").read_text())
    jsonschema.validate(document, schema)
    assert document["schema"] == SCHEMA and document["verdict"] == "fail" and not report.passed
    assert [c["status"] for c in document["checks"]] == ["fail", "pass", "not_applicable"]
    assert document["attacks"]["a"]["y"] is None  # no NaN in canonical JSON
    assert report.digest() == hashlib.sha256(rfc8785.dumps(document)).hexdigest()
    assert VerificationReport(checks=[checks[1]], attacks={}, inputs={}, policy={}, definitions={}).passed
    assert not VerificationReport(checks=[checks[2]], attacks={}, inputs={}, policy={}, definitions={}).passed


def test_a_forgetting_check_on_too_few_facts_is_inconclusive_and_so_is_the_verdict() -> None:
    """Below ``min_forget_facts`` a check comparing forgotten records with a reference decides nothing,
    whichever side of its threshold it lands; a failing check elsewhere still fails the verdict."""
    def judged(value: float, low: float, high: float, facts: int | None) -> Check:
        check = _check(value, low, high)
        return Check(**{**check.__dict__, "forget_facts": facts, "min_forget_facts": 3})

    assert judged(0.9, 0.8, 1.0, facts=1).status == "inconclusive"
    assert judged(0.0, -0.1, 0.1, facts=2).status == "inconclusive"
    assert judged(0.9, 0.8, 1.0, facts=3).status == "fail" and judged(0.0, -0.1, 0.1, facts=3).passed
    assert judged(float("nan"), 0, 0, facts=1).status == "not_applicable"
    assert judged(0.9, 0.8, 1.0, facts=None).status == "fail"  # a utility check: no floor

    def report(*checks: Check) -> VerificationReport:
        return VerificationReport(checks=list(checks), attacks={}, inputs={}, policy={}, definitions={})

    leak, utility_ok, utility_lost = judged(0.9, 0.8, 1.0, 1), _check(0.0, -0.1, 0.1), _check(0.4, 0.1, 0.7)
    assert report(leak, utility_ok).verdict == "inconclusive" and not report(leak, utility_ok).passed
    assert report(leak, utility_lost).verdict == "fail"
    document = report(leak, utility_ok).to_json()
    schema = json.loads((Path(__file__).parents[3] / "mllm/verify/report.schema.json").read_text())
    jsonschema.validate(document, schema)
    assert document["checks"][0]["status"] == "inconclusive" and document["checks"][0]["forget_facts"] == 1


def test_the_evidence_floor_counts_distinct_facts_not_records(world) -> None:
    """Three forms of one fact are one fact: a section of the test world is below the floor, its study not."""
    from dataclasses import replace

    ctx = VerifyContext(corpus=world.corpus, scope=world.scope, policy=VerdictPolicy(), candidate=None,
                        original=None)
    forget = list(world.scope.forget)
    one_fact = [r for r in forget if r.fact == forget[0].fact]
    assert len(one_fact) > 1
    fields = dict(name="c", attack="a", value=0.0, threshold=0.2, comparison="<=", estimate=None,
                  diagnosis="d")
    assert ctx.check(evidence=one_fact, **fields).forget_facts == 1
    assert ctx.check(evidence=one_fact, **fields).status == "inconclusive"
    assert ctx.check(evidence=forget, **fields).status == "pass"
    assert replace(ctx.check(**fields), value=0.9).status == "fail"  # no evidence named: no floor


def test_worst_check_is_decided_by_a_significant_failure_not_by_the_largest_value() -> None:
    """A six-item group far past the threshold but with an interval through 0 must not mask a
    two-hundred-item group significantly past it (seed 3's GA candidate passed that way)."""
    ctx = VerifyContext(corpus=None, scope=None, policy=VerdictPolicy(), candidate=None, original=None)
    fields = dict(name="utility_likelihood", attack="utility", threshold=0.5, diagnosis="utility loss",
                  detail="worst group", nothing="no groups")
    rows = {"shared": Estimate(1.22, 6, -0.01, 3.6, "b"), "siblings": Estimate(0.59, 200, 0.34, 0.87, "b"),
            "retain": Estimate(0.1, 200, -0.1, 0.3, "b")}
    check = ctx.worst_check(rows, comparison="<=", **fields)
    assert check.passed is False and check.value == 0.59 and check.detail == "worst group: siblings"
    # no failing row: the one furthest past (or nearest to) the threshold is reported
    del rows["siblings"]
    assert ctx.worst_check(rows, comparison="<=", **fields).detail == "worst group: shared"
    # ">=" checks look the other way; no finite row is "not applicable"
    low = {"loss": Estimate(0.2, 40, 0.1, 0.3, "b"), "zlib": Estimate(0.1, 40, -0.1, 0.6, "b")}
    assert ctx.worst_check(low, comparison=">=", null=0.5, **{**fields, "threshold": 0.25}).value == 0.2
    empty = {"x": Estimate(float("nan"), 0, 0, 0, "b")}
    assert ctx.worst_check(empty, comparison="<=", **fields).passed is None
