"""A database superuser who rewrites compliance rows without their audit events is caught: by
``oblivio audit verify`` (the chain's state checks) and by the pipeline, which does not act on a status
the chain does not hold."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import F
from django.utils import timezone
from pipeline_support import *  # noqa: F403
from pipeline_support import Served, plan_one, write_model

from compliance.accounts import apikey_revoke, role_grant, role_revoke
from compliance.deadlines import ExtensionUnit
from compliance.forget_requests import (
    forget_request_approve,
    forget_request_create,
    forget_request_extend,
    forget_request_refuse,
    forget_request_review,
)
from compliance.legal import LegalBasis, RefusalReason, Regulation, RequesterType
from compliance.lifecycle import Status
from compliance.models import (
    ApiKey,
    Certificate,
    Deployment,
    ForgetRequest,
    GuardRule,
    JobState,
    JobStep,
    PipelinePolicy,
    UnlearningJob,
    VerificationRecord,
    WebhookEndpoint,
)
from compliance.pipeline.jobs import jobs_plan
from compliance.pipeline.policy import policy_set
from compliance.pipeline.registry import model_version_register
from compliance.pipeline.steps import job_run_step
from compliance.subjects import SubjectIdentifiers
from compliance.webhooks import webhook_endpoint_create, webhook_endpoint_disable
from core.audit import audit_verify
from core.cli import audit as audit_cli
from core.principals import SYSTEM, Role
from core.tasks import audit_verify_task
from hierarchy.models import Institution

MALLORY = "user:mallory-approved-this"


@pytest.fixture
def on_file(make_request: Callable[..., ForgetRequest], officer: Any) -> dict[str, ForgetRequest]:
    """Requests in the states a hospital's file holds, each made by the services."""
    received, approved, refused, extended = (make_request() for _ in range(4))
    for request in (approved, refused):
        forget_request_review(request_id=request.pk, actor=officer.principal)
    forget_request_approve(request_id=approved.pk, actor=officer.principal, note="scope confirmed")
    forget_request_refuse(request_id=refused.pk, actor=officer.principal, reason=RefusalReason.OTHER,
                          text="a legal hold applies")
    forget_request_extend(request_id=extended.pk, actor=officer.principal, length=2,
                          unit=ExtensionUnit.MONTHS, notice_sent_at=timezone.now(), note="complex case")
    return {name: ForgetRequest.objects.get(pk=request.pk) for name, request in
            (("received", received), ("approved", approved), ("refused", refused), ("extended", extended))}


def test_rows_the_services_wrote_agree_with_the_chain(on_file: dict[str, ForgetRequest]) -> None:
    assert audit_verify().ok


REWRITES: dict[str, tuple[str, Callable[[], dict[str, Any]], str]] = {
    "an approval without a decision": ("received", lambda: {"status": Status.APPROVED}, "status"),
    "a refusal turned into an approval": ("refused", lambda: {"status": Status.APPROVED}, "status"),
    "a later deadline": ("received", lambda: {"deadline": F("deadline") + timedelta(days=60)}, "deadline"),
    "an extension undone": ("extended", lambda: {"deadline": F("base_deadline")}, "deadline"),
    "another approver (four-eyes faked)": ("approved", lambda: {"decided_by": MALLORY}, "decided_by"),
    "another refusal reason": ("refused", lambda: {"reason_code": "manifestly_unfounded"}, "reason_code"),
    "another subject": ("received", lambda: {"subject_hash": "0" * 64}, "subject_hash"),
    "another legal basis": ("received", lambda: {"legal_basis": "gdpr_17_1_a"}, "legal_basis"),
}


@pytest.mark.parametrize("name", REWRITES)
def test_a_rewritten_request_row_is_named(on_file: dict[str, ForgetRequest], name: str) -> None:
    which, change, field = REWRITES[name]
    request = on_file[which]
    ForgetRequest.objects.filter(pk=request.pk).update(**change())
    result = audit_verify()
    assert not result.ok and result.first_bad_seq is None  # the chain itself is intact
    assert str(request.pk) in result.problem and field in result.problem
    assert MALLORY not in result.problem  # stored values are not echoed


def test_a_decision_made_on_top_of_a_rewritten_status_stays_visible(on_file, second_officer) -> None:
    request = on_file["received"]  # never reviewed: the superuser skips the review step
    ForgetRequest.objects.filter(pk=request.pk).update(status=Status.IN_REVIEW)
    forget_request_approve(request_id=request.pk, actor=second_officer.principal)  # the row agrees again
    result = audit_verify()
    assert not result.ok and str(request.pk) in result.problem and "started from" in result.problem


def test_a_deleted_or_inserted_request_row_is_named(on_file: dict[str, ForgetRequest]) -> None:
    gone = on_file["received"]
    ForgetRequest.objects.filter(pk=gone.pk).delete()
    assert "row is gone" in audit_verify().problem

    forged = on_file["approved"]
    forged.pk = uuid.uuid4()
    forged.save(force_insert=True)
    result = audit_verify()
    assert not result.ok and str(forged.pk) in result.problem and "no creation event" in result.problem


def test_cli_names_the_rewritten_request(on_file: dict[str, ForgetRequest]) -> None:
    ForgetRequest.objects.filter(pk=on_file["received"].pk).update(status=Status.APPROVED)
    result = CliRunner().invoke(audit_cli, ["verify"])
    assert result.exit_code == 1
    assert f"TAMPERED: forget request {on_file['received'].pk}: status not as its audit" in result.output
    assert "#None" not in result.output


def test_a_status_set_in_the_database_is_not_planned(served: Served, approve) -> None:
    approved = approve()
    rewritten = forget_request_create(
        actor=SYSTEM, subject=SubjectIdentifiers(mrn_system=served.institution.mrn_system,
                                                 mrn_value=served.mrns[1]),
        regulation=Regulation.GDPR, legal_basis=LegalBasis.GDPR_17_1_B,
        requester_type=RequesterType.DATA_SUBJECT)
    ForgetRequest.objects.filter(pk=rewritten.pk).update(status=Status.APPROVED)
    jobs = jobs_plan()
    assert [set(job.targets) for job in jobs] == [{str(approved.pk)}]
    assert ForgetRequest.objects.get(pk=rewritten.pk).status == Status.APPROVED  # left for a person
    assert str(rewritten.pk) in audit_verify().problem


def test_a_served_pointer_moved_in_the_database_is_named(served: Served, tmp_path) -> None:
    assert audit_verify().ok
    other = model_version_register(deployment="default", artifact_dir=write_model(tmp_path / "other", "b"),
                                   corpus=served.corpus, corpus_root=served.corpus_dir, actor=SYSTEM,
                                   serve=False)
    Deployment.objects.filter(name="default").update(served=other)
    result = audit_verify()
    assert not result.ok and "serves another model version" in result.problem


@pytest.fixture
def access(tree, make_key, make_person, officer) -> dict[str, Any]:
    """An API key revoked and one live, people whose roles were granted and revoked by the services."""
    live, revoked = make_key(tree.institutions[0].code), make_key(tree.institutions[0].code)
    apikey_revoke(prefix=revoked.principal.name.removeprefix("api-key:"), actor=SYSTEM)
    auditor = make_person(Role.AUDITOR)
    role_grant(username=auditor.username, role=Role.ML_ENGINEER, actor=SYSTEM)
    role_revoke(username=auditor.username, role=Role.ML_ENGINEER, actor=SYSTEM)
    return {"live": live, "revoked": revoked, "auditor": auditor, "other_code": tree.institutions[1].code}


def _key(key: Any) -> ApiKey:
    return ApiKey.objects.get(pk=key.principal.api_key_id)


def test_access_the_services_granted_agrees_with_the_chain(access: dict[str, Any]) -> None:
    assert audit_verify().ok


def test_a_revocation_undone_in_the_database_is_named(access: dict[str, Any]) -> None:
    ApiKey.objects.filter(pk=_key(access["revoked"]).pk).update(revoked_at=None)
    result = audit_verify()
    assert not result.ok and f"API key #{_key(access['revoked']).pk}: revoked" in result.problem


def test_a_key_scope_widened_in_the_database_is_named(access: dict[str, Any]) -> None:
    _key(access["live"]).institutions.add(Institution.objects.get(code=access["other_code"]))
    assert "institutions not as" in audit_verify().problem


def test_a_key_inserted_in_the_database_is_named(access: dict[str, Any]) -> None:
    forged = ApiKey.objects.create(name="backdoor", prefix="deadbeef", digest="0" * 64, created_by="x")
    assert f"API key #{forged.pk} has no creation event" in audit_verify().problem


def test_a_role_put_into_the_group_table_is_named(access: dict[str, Any]) -> None:
    user = get_user_model().objects.get(username=access["auditor"].username)
    user.groups.add(Group.objects.get(name=str(Role.COMPLIANCE_OFFICER)))
    result = audit_verify()
    assert not result.ok and f"user #{user.pk} holds a role no audit event granted" in result.problem


@pytest.mark.parametrize("change", [{"active": False}, {"identifier_hashes": [], "image_digests": []}])
def test_a_guard_switched_off_in_the_database_is_named(served: Served, approve, change) -> None:
    request = approve()
    assert audit_verify().ok
    GuardRule.objects.filter(request=request).update(**change)
    result = audit_verify()
    assert not result.ok and str(request.pk) in result.problem and "guard" in result.problem


def test_nothing_is_planned_on_a_moved_served_pointer(served: Served, approve, tmp_path) -> None:
    request = approve()
    other = model_version_register(deployment="default", artifact_dir=write_model(tmp_path / "other", "b"),
                                   corpus=served.corpus, corpus_root=served.corpus_dir, actor=SYSTEM,
                                   serve=False)
    Deployment.objects.filter(name="default").update(served=other)
    assert jobs_plan() == []
    assert ForgetRequest.objects.get(pk=request.pk).status == Status.APPROVED  # not certified "not trained"


@pytest.fixture
def endpoints(tree, receiver) -> dict[str, WebhookEndpoint]:
    """A live webhook endpoint and a disabled one, both made by the services."""
    code = tree.institutions[0].code
    live = webhook_endpoint_create(institution_code=code, url=receiver.url, events=[], actor=SYSTEM)
    gone = webhook_endpoint_create(institution_code=code, url=receiver.url, events=[], actor=SYSTEM)
    webhook_endpoint_disable(endpoint_id=gone.pk, actor=SYSTEM)
    assert audit_verify().ok
    return {"live": live, "disabled": gone}


@pytest.mark.parametrize("which, change, field", [
    ("live", {"url": "https://attacker.example/collect"}, "url"),
    ("live", {"events": ["request.created"]}, "events"),
    ("disabled", {"is_active": True}, "active"),
])
def test_a_webhook_endpoint_rewritten_in_the_database_is_named(endpoints, which, change, field) -> None:
    WebhookEndpoint.objects.filter(pk=endpoints[which].pk).update(**change)
    result = audit_verify()
    assert not result.ok and f"webhook endpoint #{endpoints[which].pk}: {field}" in result.problem
    assert "attacker" not in result.problem


def test_a_webhook_endpoint_inserted_in_the_database_is_named(endpoints) -> None:
    forged = WebhookEndpoint.objects.create(institution=endpoints["live"].institution, sealed_secret="x",
                                            url="https://attacker.example/collect")
    assert f"webhook endpoint #{forged.pk} has no creation event" in audit_verify().problem


def test_the_scheduled_verification_logs_tampering(on_file: dict[str, ForgetRequest], caplog) -> None:
    assert audit_verify_task() is True and not caplog.records
    ForgetRequest.objects.filter(pk=on_file["refused"].pk).update(status=Status.APPROVED)
    assert audit_verify_task() is False
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert str(on_file["refused"].pk) in record.getMessage() and "status" in record.getMessage()


# --- the pipeline's own rows: an institution's policy, a job's policy, a verdict ------------------

LOOSE = {"max_mia_auc": 1.0, "max_forget_excess": 1.0}


@pytest.fixture
def strict_policy(served: Served) -> PipelinePolicy:
    """The institution chose its ladder and thresholds through the service."""
    policy_set(institution=served.institution, ladder=[{"method": "hierarchy"}], thresholds={},
               guard_stays_on=False, actor=SYSTEM)
    assert audit_verify().ok
    return PipelinePolicy.objects.get(institution=served.institution)


def test_a_policy_loosened_in_the_database_is_named_and_not_planned(strict_policy, approve) -> None:
    PipelinePolicy.objects.filter(pk=strict_policy.pk).update(thresholds=LOOSE)
    result = audit_verify()
    assert not result.ok and f"pipeline policy #{strict_policy.pk}: thresholds not as" in result.problem
    request = approve()
    assert jobs_plan() == []
    assert ForgetRequest.objects.get(pk=request.pk).status == Status.APPROVED  # left for a person


def test_a_policy_deleted_in_the_database_is_named_and_not_planned(strict_policy, approve) -> None:
    """Deleting the row puts the institution back on the deployment's defaults, which it did not choose."""
    PipelinePolicy.objects.filter(pk=strict_policy.pk).delete()
    assert "pipeline policy recorded in the audit chain is gone" in audit_verify().problem
    approve()
    assert jobs_plan() == []


def _run(job: UnlearningJob, *steps: JobStep) -> UnlearningJob:
    for step in steps:
        job.refresh_from_db()
        assert job.step == step and job_run_step(str(job.pk), job.step) == "done"
    job.refresh_from_db()
    return job


def test_a_job_policy_loosened_after_planning_stops_the_job(strict_policy, approve) -> None:
    request = approve()
    job = plan_one()
    UnlearningJob.objects.filter(pk=job.pk).update(policy={"ladder": [{"method": "hierarchy", "config": {}}],
                                                           "thresholds": LOOSE, "guard_stays_on": False})
    assert f"job {job.pk}: policy not as its planning event records" in audit_verify().problem
    assert job_run_step(str(job.pk), JobStep.UNLEARN) == "stopped"
    job.refresh_from_db()
    request.refresh_from_db()
    assert job.state == JobState.FAILED and "policy" in job.failure["error"]
    assert request.status == Status.ESCALATED and job.candidate is None


def test_a_verification_report_edited_before_certification_is_not_promoted(served: Served, approve) -> None:
    request = approve()
    job = _run(plan_one(), JobStep.UNLEARN, JobStep.VERIFY)
    assert job.step == JobStep.CERTIFY and audit_verify().ok
    record = VerificationRecord.objects.get(job=job)
    VerificationRecord.objects.filter(pk=record.pk).update(report={**record.report, "checks": []})
    assert f"verification record #{record.pk}: report not as its digest records" in audit_verify().problem
    assert job_run_step(str(job.pk), JobStep.CERTIFY) == "stopped"
    job.refresh_from_db()
    assert job.state == JobState.FAILED and not Certificate.objects.exists()
    assert Deployment.objects.get(name="default").served_id == served.version.pk  # nothing promoted
    assert ForgetRequest.objects.get(pk=request.pk).status == Status.ESCALATED


def test_a_failed_verdict_flipped_in_the_database_is_named(served: Served, approve) -> None:
    policy_set(institution=served.institution, ladder=[{"method": "hierarchy"}], thresholds={"strength": 2},
               guard_stays_on=False, actor=SYSTEM)
    approve()
    job = _run(plan_one(), JobStep.UNLEARN, JobStep.VERIFY)
    assert job.state == JobState.ESCALATED and audit_verify().ok
    record = VerificationRecord.objects.get(job=job)
    assert record.passed is False
    VerificationRecord.objects.filter(pk=record.pk).update(passed=True)
    result = audit_verify()
    assert not result.ok and f"verification record #{record.pk}: passed not as" in result.problem
