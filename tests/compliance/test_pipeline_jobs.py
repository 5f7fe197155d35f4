"""Jobs in one process: planning, the three steps, escalation, leases, cancellation, registry, guard."""

from __future__ import annotations

import json
from datetime import timedelta

import pipeline_engine
import pytest
from click.testing import CliRunner
from django.db import transaction
from django.utils import timezone
from oblivio_site.cli import main
from pipeline_support import *  # noqa: F403
from pipeline_support import Served, drive, pdf_text, plan_one

from compliance.attestation import json_digest
from compliance.errors import Conflict, Invalid
from compliance.lifecycle import Status
from compliance.models import (
    Certificate,
    Deployment,
    GuardRule,
    JobState,
    ModelVersion,
    UnlearningJob,
    VersionStatus,
)
from compliance.pipeline.certify import certificate_verify_stored
from compliance.pipeline.guard import guard_screen
from compliance.pipeline.jobs import (
    LeaseLost,
    job_cancel,
    job_claim,
    job_locked,
    jobs_plan,
    jobs_release_due,
    request_reschedule,
)
from compliance.pipeline.policy import policy_set
from compliance.pipeline.registry import version_rollback
from compliance.pipeline.steps import job_run_step
from compliance.pipeline.storage import artifact_storage
from core.audit import audit_verify
from core.models import AuditEvent
from core.principals import SYSTEM


def statuses(request) -> list[str]:
    events = AuditEvent.objects.filter(object_id=str(request.pk), action="forget_request.status_changed")
    return [event.data["to"] for event in events.order_by("seq")]


def test_an_approved_request_is_unlearned_verified_promoted_and_certified(served: Served, approve) -> None:
    request = approve()
    assert GuardRule.objects.get(request=request).active
    job = plan_one()
    assert job.base_version == served.version and job.forget_records
    assert set(job.targets) == {str(request.pk)}
    job = drive(job)
    request.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and request.status == Status.CERTIFIED
    assert statuses(request) == ["in_review", "approved", "scheduled", "unlearning", "verifying", "certified"]
    deployment = Deployment.objects.get(name="default")
    assert deployment.served == job.candidate and deployment.served.parent == served.version
    assert set(deployment.served.forgotten_records) == set(job.forget_records)
    old = ModelVersion.objects.get(pk=served.version.pk)
    assert old.status == VersionStatus.DELETED and not artifact_storage().exists(old.artifact_digest)
    certificate = Certificate.objects.get(request=request)
    assert certificate_verify_stored(certificate).ok
    assert certificate.pdf[:5] == b"%PDF-"
    assert not GuardRule.objects.get(request=request).active
    assert audit_verify().ok


def test_an_exported_certificate_verifies_with_the_command_its_pdf_prints(served: Served, approve, tmp_path,
                                                                         monkeypatch) -> None:
    """What an auditor receives from ``oblivio certificate export``: the bundle, the PDF and the public key,
    so the PDF's offline check runs as printed in that directory."""
    request = approve()
    drive(plan_one())
    out = tmp_path / "export"
    runner = CliRunner()
    result = runner.invoke(main, ["certificate", "export", str(request.pk), "--out", str(out)])
    assert result.exit_code == 0, result.output
    printed = "oblivio certificate verify certificate.json --public-key key.pem"
    assert printed in " ".join(pdf_text((out / "certificate.pdf").read_bytes()).split())
    monkeypatch.chdir(out)
    result = runner.invoke(main, printed.split()[1:])
    assert result.exit_code == 0 and result.output.startswith("ok: certificate"), result.output
    # a certificate signed by a key this data directory does not hold: a clear error, nothing written
    Certificate.objects.filter(request=request).update(key_id="0" * 16)
    result = runner.invoke(main, ["certificate", "export", str(request.pk), "--out", str(tmp_path / "none")])
    assert result.exit_code == 1 and "not in this data directory" in result.output
    assert not (tmp_path / "none").exists()


def test_failing_verification_climbs_the_ladder_to_exact(served: Served, approve, monkeypatch) -> None:
    monkeypatch.setenv("PIPELINE_TEST_REQUIRED_STRENGTH", "6")  # above rung 2 (160 steps)
    request = approve()
    job = drive(plan_one())
    request.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and job.rung == 2
    assert job.candidate.exact and job.candidate.method == "exact"
    rung = ["scheduled", "unlearning", "verifying"]
    assert statuses(request)[2:] == [*rung, "failed", *rung, "failed", *rung, "certified"]
    rejected = ModelVersion.objects.filter(job=job, status=VersionStatus.REJECTED)
    assert rejected.count() == 2
    assert Certificate.objects.get(request=request).bundle["verification_report"]["verdict"] == "pass"


def test_an_inconclusive_verdict_goes_straight_to_the_exact_rung_which_it_accepts(served: Served, approve
                                                                                  ) -> None:
    """Too few forgotten facts for any check to decide: a stronger approximate run cannot help, retraining
    without the data can; its certificate says the verdict was inconclusive and why it was accepted."""
    policy_set(institution=served.institution, ladder=[{"method": "hierarchy"}, {"method": "hierarchy",
               "config": {"steps": 160}}, {"method": "exact"}], thresholds={"facts_too_few": True},
               guard_stays_on=False, actor=SYSTEM)
    request = approve()
    job = drive(plan_one())
    request.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and request.status == Status.CERTIFIED
    assert job.rung == 2 and job.candidate.method == "exact"  # the 160-step rung was skipped
    rung = ["scheduled", "unlearning", "verifying"]
    assert statuses(request)[2:] == [*rung, "failed", *rung, "certified"]
    failed = AuditEvent.objects.filter(object_id=str(request.pk), data__to="failed").get()
    assert failed.data["verdict"] == "inconclusive" and failed.data["inconclusive_checks"]
    certificate = Certificate.objects.get(request=request)
    check = certificate_verify_stored(certificate)
    assert check.ok, check.problems
    verification = check.predicate["verification"]
    assert verification["verdict"] == "inconclusive" and verification["summary"]["passed"] is True
    text = pdf_text(certificate.pdf)
    assert "INCONCLUSIVE, accepted" in text and "forgetting checks measured" in text
    assert "FAIL" not in text


FORGETTING_WAIVER, UTILITY_WAIVER = "forgetting checks measured", "lineage's first served model"


@pytest.mark.parametrize(("thresholds", "waiver", "not_waived"), [
    # A model retrained without the data is the model that never saw it: forgetting checks failing on
    # it are the verifier's false alarms (measured on the sequential corpus), not a leak.
    ({"false_alarm": True}, FORGETTING_WAIVER, UTILITY_WAIVER),
    # A retraining is a new draw of the training recipe, not derived from the served model: utility lost
    # against the served one (which an earlier lucky retraining may have lifted) does not stop it while
    # it keeps what the lineage's first served model knew.
    ({"served_drop": True}, UTILITY_WAIVER, FORGETTING_WAIVER),
])
def test_an_exact_candidate_is_certified_on_the_checks_its_construction_answers(
        served: Served, approve, thresholds: dict, waiver: str, not_waived: str) -> None:
    """... and an approximate rung failing the same checks is not promoted; the PDF says which waiver."""
    policy_set(institution=served.institution, ladder=[{"method": "hierarchy"}, {"method": "exact"}],
               thresholds=thresholds, guard_stays_on=False, actor=SYSTEM)
    request = approve()
    job = drive(plan_one())
    request.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and job.candidate.method == "exact" and job.rung == 1
    assert ModelVersion.objects.get(job=job, status=VersionStatus.REJECTED).method == "hierarchy"
    certificate = Certificate.objects.get(request=request)
    check = certificate_verify_stored(certificate)
    assert check.ok and check.predicate["verification"]["verdict"] == "fail"
    text = pdf_text(certificate.pdf)
    assert "FAIL, accepted" in text and waiver in text and not_waived not in text


def test_an_exact_candidate_failing_an_integrity_check_is_not_promoted(served: Served, approve,
                                                                        monkeypatch) -> None:
    """Construction vouches for forgetting only: an exact candidate that fails any other check (here it
    forgot other records than the request's) goes to a person like any other."""
    policy_set(institution=served.institution, ladder=[{"method": "exact"}], thresholds={},
               guard_stays_on=False, actor=SYSTEM)
    monkeypatch.setattr(pipeline_engine.ScriptedEngine, "unlearn", _forgetting_too_much(
        pipeline_engine.ScriptedEngine.unlearn))
    request = approve()
    job = drive(plan_one())
    request.refresh_from_db()
    assert job.state == JobState.ESCALATED and request.status == Status.ESCALATED
    assert [c["name"] for c in job.failure["failed_checks"]] == ["forgot_requested_records"]
    assert not Certificate.objects.exists()


def test_an_exact_retraining_that_lost_what_the_lineage_knew_goes_to_a_person(served: Served,
                                                                              approve) -> None:
    policy_set(institution=served.institution, ladder=[{"method": "exact"}],
               thresholds={"served_drop": True, "lineage_drop": True}, guard_stays_on=False, actor=SYSTEM)
    request = approve()
    job = drive(plan_one())
    request.refresh_from_db()
    assert job.state == JobState.ESCALATED and request.status == Status.ESCALATED
    assert {c["name"] for c in job.failure["failed_checks"]} == {"far_retain", "cumulative_utility"}
    assert not Certificate.objects.exists()


def _forgetting_too_much(unlearn):
    def wrapped(self, **kwargs):
        outcome = unlearn(self, **kwargs)
        marker = json.loads((outcome.artifact_dir / "unlearned.json").read_text())
        marker["forget"].append("r-not-in-scope")
        (outcome.artifact_dir / "unlearned.json").write_text(json.dumps(marker))
        return outcome
    return wrapped


def test_an_inconclusive_verdict_without_an_exact_rung_goes_to_a_person(served: Served, approve) -> None:
    policy_set(institution=served.institution, ladder=[{"method": "npo"}, {"method": "npo", "config":
               {"steps": 60}}], thresholds={"facts_too_few": True}, guard_stays_on=False, actor=SYSTEM)
    request = approve()
    job = drive(plan_one())
    request.refresh_from_db()
    assert job.state == JobState.ESCALATED and request.status == Status.ESCALATED
    assert job.rung == 0 and job.failure["verdict"] == "inconclusive"  # the stronger npo was not tried
    assert job.failure["inconclusive_checks"] and not job.failure["failed_checks"]
    assert Deployment.objects.get(name="default").served == served.version
    assert not Certificate.objects.exists()


def test_when_every_rung_fails_the_request_is_escalated_with_the_failed_checks(served: Served, approve,
                                                                               monkeypatch) -> None:
    monkeypatch.setenv("PIPELINE_TEST_REQUIRED_STRENGTH", "5")
    policy_set(institution=served.institution, ladder=[{"method": "npo"}, {"method": "npo", "config":
               {"steps": 60}}], thresholds={}, guard_stays_on=False, actor=SYSTEM)
    request = approve()
    job = drive(plan_one())
    request.refresh_from_db()
    assert job.state == JobState.ESCALATED and request.status == Status.ESCALATED
    assert [c["name"] for c in job.failure["failed_checks"]] == ["forget_strength"]
    escalation = AuditEvent.objects.filter(object_id=str(request.pk), data__to="escalated").get()
    assert escalation.data["failed_checks"][0]["threshold"] == 5.0
    assert Deployment.objects.get(name="default").served == served.version  # nothing promoted
    assert not Certificate.objects.exists()
    assert GuardRule.objects.get(request=request).active  # still refusing: nothing was unlearned


def test_a_verdict_policy_the_engine_rejects_escalates_at_once_instead_of_crashing_the_step(
        served: Served, approve, pipeline_settings) -> None:
    """A misconfigured threshold is no reason to try a stronger method: a person fixes the policy. (An
    institution's policy is checked when it is set; the deployment default comes from the environment.)"""
    with pytest.raises(Invalid):
        policy_set(institution=served.institution, ladder=[{"method": "hierarchy"}],
                   thresholds={"unknown_threshold": 1}, guard_stays_on=False, actor=SYSTEM)
    pipeline_settings.OBLIVIO_UNLEARN_LADDER = [{"method": "hierarchy"}, {"method": "exact"}]
    pipeline_settings.OBLIVIO_VERDICT_THRESHOLDS = {"unknown_threshold": 1}
    request = approve()
    job = drive(plan_one())
    request.refresh_from_db()
    assert job.state == JobState.ESCALATED and request.status == Status.ESCALATED and job.rung == 0
    assert "unknown policy field" in job.failure["error"]
    assert Deployment.objects.get(name="default").served == served.version


def test_an_unlearning_error_counts_as_a_failed_rung(served: Served, approve, monkeypatch) -> None:
    monkeypatch.setenv("PIPELINE_TEST_UNLEARN_ERROR", "hierarchy")
    request = approve()
    job = drive(plan_one())
    assert job.state == JobState.SUCCEEDED and job.candidate.method == "exact"
    request.refresh_from_db()
    assert request.status == Status.CERTIFIED


def test_requests_approved_within_the_window_share_one_job(served: Served, approve,
                                                           pipeline_settings) -> None:
    pipeline_settings.OBLIVIO_JOB_BATCH_WINDOW_SECONDS = 3600
    first, second = approve(served.mrns[0]), approve(served.mrns[1])
    jobs = jobs_plan()
    assert len(set(jobs)) == 1 and jobs_release_due() == 0  # window still open
    UnlearningJob.objects.update(not_before=timezone.now())
    assert jobs_release_due() == 1
    job = drive(UnlearningJob.objects.get())
    assert job.requests.count() == 2 and job.state == JobState.SUCCEEDED
    for request in (first, second):
        assert certificate_verify_stored(Certificate.objects.get(request=request)).ok
    assert ModelVersion.objects.filter(status=VersionStatus.SERVED).count() == 1


def test_the_next_request_is_scoped_against_the_served_version(served: Served, approve) -> None:
    approve(served.mrns[0])
    drive(plan_one())
    first_model = Deployment.objects.get(name="default").served
    approve(served.mrns[1])
    job = drive(plan_one())
    assert job.base_version == first_model
    assert set(job.candidate.forgotten_records) > set(first_model.forgotten_records)


def test_the_lineage_baseline_measured_on_the_first_served_version_follows_every_later_one(
        served: Served, approve) -> None:
    """The first verification measures the utility baseline on the first served version; it is kept
    there, handed on to each candidate and given to every later verification unchanged, and its digest
    is in the audit chain."""
    first_model = Deployment.objects.get(name="default").served
    assert first_model.utility_baseline == {}
    approve(served.mrns[0])
    first_job = drive(plan_one())
    first_model.refresh_from_db()
    measured = first_model.utility_baseline
    assert measured and measured == first_job.candidate.utility_baseline
    approve(served.mrns[1])
    second_job = drive(plan_one())
    assert second_job.base_version == first_job.candidate
    assert second_job.verifications.get().report["baseline"] == measured
    assert second_job.candidate.utility_baseline == measured
    recorded = AuditEvent.objects.filter(action="verification.recorded").order_by("seq")
    assert {e.data["utility_baseline_digest"] for e in recorded} == {json_digest(measured)}
    kept = AuditEvent.objects.filter(action="model_version.baseline_kept")
    assert {e.object_id for e in kept} == {str(first_model.pk), str(first_job.candidate.pk),
                                           str(second_job.candidate.pk)}
    assert {e.data["baseline_digest"] for e in kept} == {json_digest(measured)}


@pytest.mark.parametrize("rewrite", ["raised", "wiped", "injected"])
def test_a_lineage_baseline_rewritten_in_the_database_stops_the_job(served: Served, approve,
                                                                    rewrite: str) -> None:
    """A baseline that is not the one the audit chain recorded for the version (raised to let losses
    pass, wiped to restart the lineage on a degraded model, or put on a version no verification
    measured) is never verified against: the job goes to a person and nothing is promoted."""
    if rewrite != "injected":
        approve(served.mrns[0])
        drive(plan_one())
    served_now = Deployment.objects.get(name="default").served
    forged = {**dict.fromkeys(served_now.utility_baseline, True), "r-forged": True}
    rewritten = {} if rewrite == "wiped" else forged
    ModelVersion.objects.filter(pk=served_now.pk).update(utility_baseline=rewritten)
    request = approve(served.mrns[1])
    job = drive(plan_one())
    request.refresh_from_db()
    assert job.state == JobState.ESCALATED and request.status == Status.ESCALATED
    assert job.failure["step"] == "verify" and "audit chain" in job.failure["error"]
    assert not job.verifications.exists()
    assert Deployment.objects.get(name="default").served == served_now
    assert not Certificate.objects.filter(request=request).exists()


def test_a_lease_is_exclusive_and_an_expired_one_is_taken_over_with_fencing(served: Served, approve) -> None:
    approve()
    job = plan_one()
    assert job_claim(job.pk, step="unlearn", owner="worker-a") is not None
    assert job_claim(job.pk, step="unlearn", owner="worker-b") is None
    assert job_claim(job.pk, step="verify", owner="worker-b") is None  # not at that step
    UnlearningJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    taken = job_claim(job.pk, step="unlearn", owner="worker-b")
    assert taken is not None and taken.attempts == 2
    assert AuditEvent.objects.filter(action="unlearning_job.taken_over", object_id=str(job.pk)).exists()
    with pytest.raises(LeaseLost), transaction.atomic():  # the presumed-dead worker can no longer write
        job_locked(job.pk, owner="worker-a")
    UnlearningJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    job = drive(job)
    assert job.state == JobState.SUCCEEDED


def test_cancelling_a_queued_job_stops_it_and_escalates_its_requests(served: Served, approve,
                                                                     officer) -> None:
    request = approve()
    job = plan_one()
    job_cancel(job_id=job.pk, actor=officer.principal)
    job.refresh_from_db()
    request.refresh_from_db()
    assert job.state == JobState.CANCELLED and request.status == Status.ESCALATED  # still owed
    assert job_run_step(str(job.pk), "unlearn") == "not claimed"
    with pytest.raises(Conflict):
        job_cancel(job_id=job.pk, actor=officer.principal)
    assert Deployment.objects.get(name="default").served == served.version


def test_cancelling_a_running_job_stops_it_at_the_next_step_boundary(served: Served, approve,
                                                                      officer) -> None:
    request = approve()
    job = plan_one()
    assert job_run_step(str(job.pk), "unlearn") == "done"
    job_claim(job.pk, step="verify", owner="worker-a")  # a worker holds it
    job_cancel(job_id=job.pk, actor=officer.principal)
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and job.cancel_requested
    UnlearningJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert job_run_step(str(job.pk), "verify") == "stopped"
    job.refresh_from_db()
    request.refresh_from_db()
    assert job.state == JobState.CANCELLED and request.status == Status.ESCALATED
    assert not Certificate.objects.exists()


def test_an_officer_reschedules_an_escalated_request_into_a_new_job_that_certifies_it(
        served: Served, approve, officer) -> None:
    request = approve()
    cancelled = plan_one()
    with pytest.raises(Conflict):  # only escalated requests
        request_reschedule(request_id=request.pk, actor=officer.principal)
    job_cancel(job_id=cancelled.pk, actor=officer.principal)
    request_reschedule(request_id=request.pk, actor=officer.principal, note="worker maintenance over")
    request.refresh_from_db()
    job = UnlearningJob.objects.exclude(pk=cancelled.pk).get()
    assert request.status == Status.SCHEDULED and job.rung == 0 and request in job.requests.all()
    event = AuditEvent.objects.filter(action="forget_request.status_changed", object_id=str(request.pk)) \
        .order_by("-seq").first()
    assert event.actor == officer.principal.name and event.data["reason"] == "rescheduled"
    UnlearningJob.objects.filter(pk=job.pk).update(not_before=timezone.now())
    assert jobs_release_due() == 1
    assert drive(job).state == JobState.SUCCEEDED
    request.refresh_from_db()
    assert request.status == Status.CERTIFIED
    with pytest.raises(Conflict):
        request_reschedule(request_id=request.pk, actor=officer.principal)


def test_rollback_never_serves_forgotten_data_again(served: Served, approve, officer, tmp_path) -> None:
    approve()
    drive(plan_one())
    with pytest.raises(Conflict):  # the original model was deleted: it held the forgotten patient
        version_rollback(deployment="default", version_id=str(served.version.pk), actor=officer.principal,
                         reason="regression")
    served_now = Deployment.objects.get(name="default").served
    # a version that forgot the same records (a retrained model) may be rolled back to
    second = ModelVersion.objects.create(
        deployment=served_now.deployment, artifact_digest="cd" * 32, storage_key="", corpus=served.corpus,
        corpus_root=str(served.corpus_dir), forgotten_records=served_now.forgotten_records,
        status=VersionStatus.RETIRED)
    version_rollback(deployment="default", version_id=str(second.pk), actor=officer.principal,
                     reason="regression")
    assert Deployment.objects.get(name="default").served == second
    served_now.refresh_from_db()
    assert served_now.status == VersionStatus.RETIRED


def _image_of(served: Served, mrn: str) -> bytes:
    records = [json.loads(line) for line in (served.corpus_dir / "records.jsonl").read_text().splitlines()]
    return (served.corpus_dir / next(r["image"] for r in records if r["patient_id"] == mrn)).read_bytes()


def test_the_guard_refuses_in_scope_prompts_and_images_until_certification(served: Served, approve) -> None:
    mrn, other = served.mrns[0], served.mrns[1]
    assert not guard_screen(prompt=f"What did the study of patient {mrn} show?").refused
    request = approve(mrn)
    rule = GuardRule.objects.get(request=request)
    assert mrn not in str(rule.identifier_hashes) and rule.image_digests
    assert guard_screen(prompt=f"What did the study of patient {mrn} show?").refused
    assert guard_screen(prompt="Summarise the chart.", identifiers=[mrn]).refused
    assert not guard_screen(prompt=f"What did the study of patient {other} show?").refused
    assert guard_screen(prompt="Describe this image.", images=[_image_of(served, mrn)]).refused
    assert not guard_screen(prompt="Describe this image.", images=[_image_of(served, other)]).refused
    drive(plan_one())
    assert not guard_screen(prompt=f"What did the study of patient {mrn} show?").refused
    rule.refresh_from_db()
    assert rule.refusals == 3 and not rule.active
    assert AuditEvent.objects.filter(action="inference_guard.deactivated", object_id=str(request.pk)).exists()


def test_policy_can_keep_the_guard_on_after_certification(served: Served, approve) -> None:
    policy_set(institution=served.institution, ladder=[{"method": "npo"}], thresholds={}, guard_stays_on=True,
               actor=SYSTEM)
    request = approve()
    drive(plan_one())
    assert GuardRule.objects.get(request=request).active
    certificate = Certificate.objects.get(request=request)
    guard = certificate_verify_stored(certificate).predicate["inference_guard"]
    assert guard["stays_on_after_certification"] is True


def test_certificates_signed_before_a_key_rotation_still_verify(served: Served, approve, officer) -> None:
    from core.keys import signing_key_rotate

    first = approve(served.mrns[0])
    drive(plan_one())
    old_id, new_id = signing_key_rotate(actor=officer.principal)
    second = approve(served.mrns[1])
    drive(plan_one())
    old, new = Certificate.objects.get(request=first), Certificate.objects.get(request=second)
    assert (old.key_id, new.key_id) == (old_id, new_id)
    assert certificate_verify_stored(old).ok and certificate_verify_stored(new).ok


def test_a_request_whose_data_an_earlier_job_removed_is_certified_by_reference(served: Served,
                                                                                approve) -> None:
    first = approve(served.mrns[0])
    drive(plan_one())
    served_before = Deployment.objects.get(name="default").served
    again = approve(served.mrns[0])  # the same patient asks again (or another channel files it)
    assert jobs_plan() == []
    again.refresh_from_db()
    assert again.status == Status.CERTIFIED
    assert statuses(again) == ["in_review", "approved", "certified"]
    assert UnlearningJob.objects.count() == 1  # nothing was unlearned twice
    assert Deployment.objects.get(name="default").served == served_before
    earlier, certificate = Certificate.objects.get(request=first), Certificate.objects.get(request=again)
    assert certificate_verify_stored(certificate).ok
    predicate = certificate_verify_stored(certificate).predicate
    assert [c["certificate_id"] for c in predicate["covered_by"]] == [str(earlier.pk)]
    assert predicate["models"]["after"]["artifact_digest"] == earlier.version.artifact_digest
    assert predicate["scope"]["counts"]["forget"] == len(Deployment.objects.get(name="default")
                                                         .served.forgotten_records)
    assert not GuardRule.objects.get(request=again).active



def test_a_request_whose_data_several_earlier_jobs_removed_is_certified_by_all_of_them(served: Served,
                                                                                     approve) -> None:
    study = approve(study_uid=served.study_uids(served.mrns[0])[0])
    drive(plan_one())
    patient = approve(served.mrns[0])  # the rest of the patient: its other studies and own facts
    second_job = drive(plan_one())
    assert second_job.forget_records and not set(second_job.forget_records) & set(
        UnlearningJob.objects.get(requests=study).forget_records)
    again = approve(served.mrns[0])
    assert jobs_plan() == []
    again.refresh_from_db()
    assert again.status == Status.CERTIFIED and UnlearningJob.objects.count() == 2
    certificate = Certificate.objects.get(request=again)
    predicate = certificate_verify_stored(certificate).predicate
    earlier = [Certificate.objects.get(request=study), Certificate.objects.get(request=patient)]
    assert [c["certificate_id"] for c in predicate["covered_by"]] == [str(c.pk) for c in earlier]
    assert predicate["models"]["after"]["artifact_digest"] == earlier[1].version.artifact_digest
    assert predicate["scope"]["counts"]["forget"] == len(Deployment.objects.get(name="default")
                                                         .served.forgotten_records)
    assert "the job of certificate" in pdf_text(certificate.pdf)


def test_a_request_no_served_model_was_trained_on_is_certified_as_not_trained(served: Served,
                                                                              approve) -> None:
    records = [json.loads(line) for line in (served.corpus_dir / "records.jsonl").read_text().splitlines()]
    never_trained = next(r["patient_id"] for r in records
                         if r["institution_id"] == "H1" and r["split"] == "holdout")
    request = approve(never_trained)
    assert jobs_plan() == []
    request.refresh_from_db()
    assert request.status == Status.CERTIFIED and not UnlearningJob.objects.exists()
    assert statuses(request) == ["in_review", "approved", "certified"]
    certificate = Certificate.objects.get(request=request)
    assert certificate.job is None and certificate.version == served.version
    check = certificate_verify_stored(certificate)
    assert check.ok
    predicate = check.predicate
    assert predicate["method"] == {"name": "not-trained", "guarantee": "exact"}
    assert predicate["scope"]["counts"]["forget"] == 0
    assert predicate["models"]["before"] == predicate["models"]["after"]
    assert predicate["models"]["after"]["artifact_digest"] == served.version.artifact_digest
    assert certificate.bundle["verification_report"]["served_models"][0]["trained_records_in_scope"] == 0
    assert "nothing to unlearn" in pdf_text(certificate.pdf)
    assert never_trained not in json.dumps(certificate.bundle) + pdf_text(certificate.pdf)
    assert Deployment.objects.get(name="default").served == served.version
    assert not GuardRule.objects.get(request=request).active


def test_rescheduling_a_request_another_job_has_fulfilled_certifies_it(served: Served, approve,
                                                                        officer) -> None:
    stuck = approve(served.mrns[0])
    job_cancel(job_id=plan_one().pk, actor=officer.principal)
    approve(served.mrns[0])
    drive(plan_one())
    rescheduled = request_reschedule(request_id=stuck.pk, actor=officer.principal)
    assert rescheduled.status == Status.CERTIFIED
    assert certificate_verify_stored(Certificate.objects.get(request=stuck)).predicate["covered_by"]
