"""An institution's pipeline policy is checked by the real engine when it is set (service, CLI, doctor):
a rung method, method setting or threshold a job would trip over mid-run is refused up front."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from factories import institution_make
from oblivio_site.cli import main
from oblivio_site.health import check_policies

from compliance.errors import Invalid
from compliance.models import PipelinePolicy
from compliance.pipeline.engine import EngineError, MllmEngine
from compliance.pipeline.policy import check_ladder, policy_for, policy_set
from core.models import AuditEvent
from core.principals import SYSTEM

pytestmark = pytest.mark.django_db

GOOD_LADDER = [{"method": "hierarchy"}, {"method": "hierarchy", "config": {"steps": 160, "guard": {
    "max_holdout_drop": 0.2}}}, {"method": "exact"}]


@pytest.mark.parametrize(("ladder", "thresholds", "names"), [
    (GOOD_LADDER, {"unknown_field": 1}, "unknown policy field 'unknown_field'"),
    (GOOD_LADDER, {"max_leak_excess": "0.2"}, "'max_leak_excess' must be a finite number"),
    (GOOD_LADDER, {"relearn_fraction": 2.0}, "relearn_fraction"),
    ([{"method": "forget-everything"}], {}, "rung 0 (forget-everything): unknown unlearning method"),
    ([{"method": "hierarchy", "config": {"stepz": 10}}], {}, "no config field 'stepz'"),
    ([{"method": "exact"}, {"method": "npo", "config": {"lr": "fast"}}], {}, "rung 1 (npo)"),
    ([{"method": "hierarchy", "config": {"guard": {"max_drop": 1}}}], {}, "guard"),
])
def test_the_engine_refuses_what_a_job_would_trip_over(ladder, thresholds, names: str) -> None:
    with pytest.raises(EngineError) as caught:
        MllmEngine().check_policy(ladder=ladder, thresholds=thresholds)
    assert names in str(caught.value)


def test_the_engine_accepts_the_default_ladder_and_overrides() -> None:
    from django.conf import settings

    MllmEngine().check_policy(ladder=settings.OBLIVIO_UNLEARN_LADDER, thresholds={})
    MllmEngine().check_policy(ladder=GOOD_LADDER, thresholds={"max_leak_excess": 0.15, "relearn_steps": 8})


def test_a_refused_policy_stores_nothing_and_audits_nothing() -> None:
    institution = institution_make()
    events = AuditEvent.objects.count()
    with pytest.raises(Invalid) as caught:
        policy_set(institution=institution, ladder=GOOD_LADDER, thresholds={"max_mia_auc": float("nan")},
                   guard_stays_on=False, actor=SYSTEM)
    assert caught.value.code == "invalid_policy" and "max_mia_auc" in caught.value.message
    assert not PipelinePolicy.objects.exists() and AuditEvent.objects.count() == events
    policy_set(institution=institution, ladder=GOOD_LADDER, thresholds={"max_leak_excess": 0.15},
               guard_stays_on=True, actor=SYSTEM)
    assert policy_for(institution).thresholds == {"max_leak_excess": 0.15}
    assert AuditEvent.objects.count() == events + 1


def test_the_cli_sets_shows_and_refuses_policies() -> None:
    institution = institution_make()
    runner = CliRunner()
    refused = runner.invoke(main, ["policy", "set", institution.code, "--ladder", '[{"method": "ga"}]',
                                   "--thresholds", '{"max_leak_excess": -1, "nope": 1}'])
    assert refused.exit_code == 1 and "unknown policy field 'nope'" in refused.output
    assert not PipelinePolicy.objects.exists()
    assert runner.invoke(main, ["policy", "set", institution.code, "--ladder", "[{"]).exit_code == 1
    assert runner.invoke(main, ["policy", "set", "NO-SUCH", "--ladder", "[]"]).exit_code == 1
    done = runner.invoke(main, ["policy", "set", institution.code, "--ladder", json.dumps(GOOD_LADDER),
                                "--guard-stays-on"])
    assert done.exit_code == 0, done.output
    shown = runner.invoke(main, ["policy", "show", institution.code])
    assert json.loads(shown.output) == {"ladder": check_ladder(GOOD_LADDER), "thresholds": {},
                                        "guard_stays_on": True}


def test_doctor_names_a_default_policy_the_engine_would_refuse(settings) -> None:
    assert check_policies().ok
    settings.OBLIVIO_VERDICT_THRESHOLDS = {"max_leak_excess": "lax"}
    check = check_policies()
    assert not check.ok and check.detail.startswith("default: thresholds:")
