"""The audit chain's state checks (:func:`core.audit.register_state_check`) for compliance data.

A service changes a row and appends the event that records the change in one transaction, so the
row must always say what the events say. A database superuser can rewrite the row without the event
(the chain itself would show an edited or deleted event); these checks replay the events and compare:

- **forget requests** — status (``received`` at creation, then each status change's ``to``, which
  must start from the status before it), deadline (at creation, then each extension's), who decided
  an approval or refusal and the refusal reason, the intake fields (level, subject hash, regulation,
  legal basis, HIPAA coverage, requester type) and the inference guard (on or off, how many
  identifiers and images it matches); a request without a creation event, or a recorded request
  without its row;
- **deployments** — the model version served is the one the newest promotion or rollback of that
  deployment names, with the artifact digest it names;
- **webhook endpoints** — each has its creation event, the institution, events and URL (by digest) it
  named, and no disabling undone (a receiver added in the database would be sent every notification);
- **pipeline policies** — an institution's method ladder, verdict thresholds and guard setting are the
  ones its newest policy event set (a threshold loosened in the database would let a fake unlearning
  pass), and a recorded policy has its row;
- **jobs** — the policy a job copied when it was planned is the one its planning event names by
  digest; each verification report and its pass/fail are the ones its event records (a failed
  verdict flipped in the database would be promoted and certified);
- **access** — each API key has its creation event, the institutions it named and no revocation
  undone; nobody holds a role their creation and role events do not give them (a role put into the
  group table directly is a role nobody granted; a role taken away directly only lowers privilege
  and is not flagged).

Problems name request and version ids and the fields that differ, never stored values (a row an
attacker wrote may hold anything). :func:`recorded_status` lets the pipeline refuse to act on a
status the chain does not hold.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from django.contrib.auth import get_user_model

from core.audit import AuditAction, register_state_check
from core.models import AuditEvent
from core.principals import HUMAN_ROLES

from .accounts import API_KEY, USER
from .attestation import json_digest
from .forget_requests import OBJECT_TYPE as REQUEST
from .lifecycle import Status
from .models import (
    ApiKey,
    Deployment,
    ForgetRequest,
    PipelinePolicy,
    UnlearningJob,
    VerificationRecord,
    WebhookEndpoint,
)
from .pipeline import JOB_OBJECT_TYPE as JOB
from .pipeline.registry import OBJECT_TYPE as VERSION
from .webhooks import ENDPOINT, url_digest

#: Intake fields as the creation event records them (the event's own ``subject_hash`` besides).
_INTAKE = ("level", "regulation", "legal_basis", "hipaa_covered", "requester_type")
_DECISIONS = {Status.APPROVED, Status.REFUSED, Status.PARTIALLY_REFUSED}
_STATUS_EVENTS = (AuditAction.FORGET_REQUEST_CREATED, AuditAction.FORGET_REQUEST_STATUS_CHANGED)
_GUARD_EVENTS = (AuditAction.GUARD_ACTIVATED, AuditAction.GUARD_DEACTIVATED)
_SERVING_EVENTS = (AuditAction.MODEL_VERSION_PROMOTED, AuditAction.MODEL_VERSION_ROLLED_BACK)


def _events(object_type: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(object_id, action, data)`` of one object type's events, in chain order."""
    events = AuditEvent.objects.filter(object_type=object_type).order_by("seq")
    yield from events.values_list("object_id", "action", "data").iterator(chunk_size=2000)


def _difference(what: str, recorded: dict[str, Any] | None, stored: dict[str, Any]) -> str:
    """The problem of a row (``what`` names it by id) against what its events record; "" if none.
    Fields the events do not record (``None``: written by an older version) are not compared."""
    if recorded is None:
        return f"{what} has no creation event in the audit chain"
    differ = [name for name in stored if recorded.get(name) is not None and recorded[name] != stored[name]]
    return (f"{what}: {', '.join(differ)} not as its audit events record (changed outside the "
            "services)") if differ else ""


def _status_after(action: str, data: dict[str, Any]) -> str:
    return str(Status.RECEIVED) if action == AuditAction.FORGET_REQUEST_CREATED else str(data.get("to"))


def _recorded_requests() -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Each request's fields as its events build them, and the ids whose events lack a creation."""
    recorded: dict[str, dict[str, Any]] = {}
    headless: set[str] = set()
    events = AuditEvent.objects.filter(object_type=REQUEST).order_by("seq") \
        .values_list("object_id", "action", "actor", "subject_hash", "data")
    for request_id, action, actor, subject_hash, data in events.iterator(chunk_size=2000):
        if action == AuditAction.FORGET_REQUEST_CREATED:
            recorded[request_id] = {"status": _status_after(action, data), "subject_hash": subject_hash,
                                    "deadline": data.get("deadline"), "decided_by": "", "reason_code": "",
                                    **{name: data[name] for name in _INTAKE if name in data}}
        elif request_id not in recorded:
            headless.add(request_id)
        elif action == AuditAction.FORGET_REQUEST_STATUS_CHANGED:
            state = recorded[request_id]
            if data.get("from") != state["status"]:  # a change made on top of a rewritten status
                state["rewritten_before"] = True
            state["status"] = _status_after(action, data)
            if state["status"] in _DECISIONS:
                state["decided_by"], state["reason_code"] = actor, data.get("reason_code", "")
        elif action == AuditAction.FORGET_REQUEST_DEADLINE_EXTENDED:
            recorded[request_id]["deadline"] = data.get("deadline")
        elif action in _GUARD_EVENTS:
            state = recorded[request_id]
            activated = action == AuditAction.GUARD_ACTIVATED
            counts = (data.get("identifiers"), data.get("images")) if activated else state["guard"][1:]
            state["guard"] = (activated, *counts)
    return recorded, headless


_GUARD = ("guard_rule__active", "guard_rule__identifier_hashes", "guard_rule__image_digests")


def _stored(row: dict[str, Any]) -> dict[str, Any]:
    """A request row in the form :func:`_recorded_requests` builds."""
    active, identifiers, images = (row.pop(name) for name in _GUARD)
    guard = None if active is None else (active, len(identifiers), len(images))
    return {**row, "status": str(row["status"]), "deadline": row["deadline"].isoformat(), "guard": guard}


@register_state_check
def forget_requests_match_chain() -> str:
    """The first forget request whose row differs from its events ("" when none does)."""
    recorded, headless = _recorded_requests()
    fields = ("status", "subject_hash", "deadline", "decided_by", "reason_code", *_INTAKE)
    rows = ForgetRequest.objects.order_by("received_at", "pk").values("pk", *fields, *_GUARD)
    for row in rows.iterator(2000):
        request_id = str(row.pop("pk"))
        events = recorded.pop(request_id, None)
        if events and events.pop("rewritten_before", False):
            return (f"forget request {request_id}: a status change started from a status its audit events "
                    "never gave it (the row was changed outside the services before)")
        problem = _difference(f"forget request {request_id}", events, _stored(row))
        if problem:
            return problem
    if headless:
        return f"forget request {min(headless)}: audit events without a creation event"
    if recorded:
        return f"forget request {min(recorded)} is recorded in the audit chain but its row is gone"
    return ""


def _recorded_serving(name: str) -> tuple[str, str] | None:
    """(version id, artifact digest) that the newest promotion or rollback of deployment ``name`` names."""
    events = AuditEvent.objects.filter(object_type=VERSION, action__in=_SERVING_EVENTS, data__deployment=name)
    newest = events.order_by("-seq").values_list("object_id", "data").first()
    return (newest[0], str(newest[1].get("artifact_digest"))) if newest else None


def serves_as_recorded(deployment: Deployment) -> bool:
    """Whether ``deployment`` serves the version (and digest) its newest promotion or rollback names."""
    served = deployment.served
    stored = (str(served.pk), served.artifact_digest) if served else None
    return _recorded_serving(deployment.name) == stored


@register_state_check
def deployments_match_chain() -> str:
    """The first deployment that serves another version than its newest promotion or rollback names."""
    names = set()
    for deployment in Deployment.objects.select_related("served").order_by("pk"):
        names.add(deployment.name)
        if not serves_as_recorded(deployment):
            return (f"deployment #{deployment.pk} serves another model version than its audit events record "
                    "(the served pointer or the version's digest was changed outside the services)")
    recorded = AuditEvent.objects.filter(object_type=VERSION, action__in=_SERVING_EVENTS) \
        .values_list("data__deployment", flat=True).distinct()
    if set(recorded) - names:
        return "a deployment recorded in the audit chain as serving a model is gone or renamed"
    return ""


def _recorded_policies() -> dict[str, dict[str, Any]]:
    """Each institution's policy (by code) as its newest policy event set it."""
    events = AuditEvent.objects.filter(action=AuditAction.PIPELINE_POLICY_SET).order_by("seq")
    return dict(events.values_list("object_id", "data").iterator(chunk_size=2000))


def _stored_policy(row: PipelinePolicy) -> dict[str, Any]:
    return {"ladder": row.ladder, "thresholds": row.thresholds, "guard_stays_on": row.guard_stays_on}


def policy_as_recorded(institution_code: str) -> bool:
    """Whether the institution's policy row (or its absence) is what its newest policy event set."""
    newest = AuditEvent.objects.filter(action=AuditAction.PIPELINE_POLICY_SET, object_id=institution_code) \
        .order_by("-seq").values_list("data", flat=True).first()
    row = PipelinePolicy.objects.filter(institution__code=institution_code).first()
    return newest == (_stored_policy(row) if row else None)


@register_state_check
def pipeline_policies_match_chain() -> str:
    """The first institution whose pipeline policy differs from its newest policy event."""
    recorded = _recorded_policies()
    for row in PipelinePolicy.objects.select_related("institution").order_by("pk"):
        code = row.institution.code
        problem = _difference(f"pipeline policy #{row.pk}", recorded.pop(code, None), _stored_policy(row))
        if problem:
            return problem
    if recorded:
        return "a pipeline policy recorded in the audit chain is gone (its institution runs on the defaults)"
    return ""


def _recorded_verifications(job_id: str | None = None) -> dict[str, dict[str, Any]]:
    """Each verification record (by id; of one job, or of all) as its event records it: report digest
    and pass/fail."""
    events = AuditEvent.objects.filter(object_type=JOB, action=AuditAction.VERIFICATION_RECORDED)
    if job_id is not None:
        events = events.filter(object_id=job_id)
    return {str(data.get("report_id")): {"digest": data.get("report_digest"), "passed": data.get("passed")}
            for data in events.values_list("data", flat=True).iterator(chunk_size=2000)}


def _verification_problem(record: VerificationRecord, recorded: dict[str, Any] | None) -> str:
    what = f"verification record #{record.pk}"
    if recorded is not None and json_digest(record.report) != record.digest:
        return f"{what}: report not as its digest records (changed outside the services)"
    return _difference(what, recorded, {"digest": record.digest, "passed": record.passed})


def _job_policy_problem(job: UnlearningJob, recorded_digest: str | None) -> str:
    if recorded_digest is not None and recorded_digest != json_digest(job.policy):
        return f"job {job.pk}: policy not as its planning event records (changed outside the services)"
    return ""


def _recorded_job_policy(job_id: str) -> str | None:
    """The policy digest the newest planning event of the job names (``None``: none names one)."""
    return AuditEvent.objects.filter(object_type=JOB, object_id=job_id, action=AuditAction.JOB_PLANNED,
                                     data__has_key="policy_sha256") \
        .order_by("-seq").values_list("data__policy_sha256", flat=True).first()


def job_as_recorded(job: UnlearningJob) -> str:
    """What in ``job`` differs from its audit events: its policy, or its candidate's verification record
    ("" when nothing does). The pipeline checks this before each step."""
    problem = _job_policy_problem(job, _recorded_job_policy(str(job.pk)))
    if problem or job.candidate_id is None:
        return problem
    record = VerificationRecord.objects.filter(job=job, candidate_id=job.candidate_id).first()
    if record is None:
        return ""
    return _verification_problem(record, _recorded_verifications(str(job.pk)).get(str(record.pk)))


@register_state_check
def jobs_match_chain() -> str:
    """The first job whose policy, or verification record whose report or verdict, differs from its events."""
    policies = {job_id: data["policy_sha256"] for job_id, action, data in _events(JOB)
                if action == AuditAction.JOB_PLANNED and "policy_sha256" in data}
    for job in UnlearningJob.objects.order_by("created_at", "pk").only("pk", "policy"):
        problem = _job_policy_problem(job, policies.get(str(job.pk)))
        if problem:
            return problem
    recorded = _recorded_verifications()
    for record in VerificationRecord.objects.order_by("pk").only("pk", "report", "digest", "passed"):
        problem = _verification_problem(record, recorded.get(str(record.pk)))
        if problem:
            return problem
    return ""


@register_state_check
def webhook_endpoints_match_chain() -> str:
    """The first webhook endpoint that was not created or disabled as its events record."""
    recorded: dict[str, dict[str, Any]] = {}
    for endpoint_id, action, data in _events(ENDPOINT):
        if action == AuditAction.WEBHOOK_ENDPOINT_CREATED:
            recorded[endpoint_id] = {"institution": data.get("institution"), "events": data.get("events"),
                                     "url": data.get("url_sha256"), "active": True}
        elif action == AuditAction.WEBHOOK_ENDPOINT_DISABLED and endpoint_id in recorded:
            recorded[endpoint_id]["active"] = False
    for pk, institution, kinds, url, active in WebhookEndpoint.objects.order_by("pk").values_list(
            "pk", "institution__code", "events", "url", "is_active"):
        stored = {"institution": institution, "events": kinds, "url": url_digest(url), "active": active}
        problem = _difference(f"webhook endpoint #{pk}", recorded.get(str(pk)), stored)
        if problem:
            return problem
    return ""


@register_state_check
def api_keys_match_chain() -> str:
    """The first API key that was not created, scoped or revoked as its events record."""
    recorded: dict[str, dict[str, Any]] = {}
    for prefix, action, data in _events(API_KEY):
        if action == AuditAction.API_KEY_CREATED:
            recorded[prefix] = {"institutions": sorted(data.get("institutions", [])), "revoked": False}
        elif action == AuditAction.API_KEY_REVOKED and prefix in recorded:
            recorded[prefix]["revoked"] = True
    stored: dict[int, dict[str, Any]] = {}
    for pk, prefix, revoked_at, code in ApiKey.objects.order_by("pk", "institutions__code").values_list(
            "pk", "prefix", "revoked_at", "institutions__code"):
        key = stored.setdefault(pk, {"prefix": prefix, "institutions": [], "revoked": revoked_at is not None})
        if code is not None:
            key["institutions"].append(code)
    for pk, key in stored.items():
        problem = _difference(f"API key #{pk}", recorded.get(key.pop("prefix")), key)
        if problem:
            return problem
    return ""


@register_state_check
def roles_match_chain() -> str:
    """The first person holding a role that their creation and role events do not give them."""
    recorded: dict[str, set[str]] = {}
    for user_id, action, data in _events(USER):
        if action == AuditAction.USER_CREATED:
            recorded[user_id] = set(data.get("roles", []))
        elif action == AuditAction.ROLE_GRANTED:
            recorded.setdefault(user_id, set()).add(str(data.get("role")))
        elif action == AuditAction.ROLE_REVOKED:
            recorded.setdefault(user_id, set()).discard(str(data.get("role")))
    stored: dict[str, set[str]] = {}
    for user_id, group in get_user_model().objects.filter(groups__name__in=[str(r) for r in HUMAN_ROLES]) \
            .order_by("pk").values_list("pk", "groups__name"):
        stored.setdefault(str(user_id), set()).add(group)
    for user_id, roles in stored.items():
        if roles - recorded.get(user_id, set()):
            return f"user #{user_id} holds a role no audit event granted (changed outside the services)"
    return ""


def recorded_status(request_id: uuid.UUID) -> str | None:
    """The status a request's newest status event gives it; ``None`` without events."""
    newest = AuditEvent.objects.filter(object_type=REQUEST, object_id=str(request_id),
                                       action__in=_STATUS_EVENTS).order_by("-seq") \
        .values_list("action", "data").first()
    return _status_after(*newest) if newest else None
