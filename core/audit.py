"""The audit chain in the database: append events, sign checkpoints, verify, export.

``audit_append`` is the only way an event is written; every state-changing service calls it in the
same transaction as the change it records. Verification is the pure :mod:`core.chain`, so the same
code checks the live database and an exported file offline; on the live database it also runs the
**state checks** the apps register (:func:`register_state_check`): the rows a service changes together
with an event must still say what the events say, so a database superuser who rewrites a row (an
approval, a deadline, the served model) without writing the event is caught too.
"""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from . import signing
from .chain import (
    EVENT_FIELDS,
    EXPORT_FORMAT,
    GENESIS_HASH,
    VerifyResult,
    checkpoint_message,
    event_hash,
    staleness_problem,
    verify_chain,
    verify_witness,
)
from .models import AuditCheckpoint, AuditEvent, AuditHead
from .principals import Principal
from .witness import WitnessError, witness_append, witness_post, witness_read


class AuditAction(enum.StrEnum):
    """Every kind of audit event, in one place (``<object>.<verb>``)."""

    CORPUS_INGESTED = "corpus.ingested"
    FHIR_BUNDLE_IMPORTED = "fhir_bundle.imported"
    FORGET_REQUEST_CREATED = "forget_request.created"
    FORGET_REQUEST_STATUS_CHANGED = "forget_request.status_changed"
    FORGET_REQUEST_DEADLINE_EXTENDED = "forget_request.deadline_extended"
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    USER_CREATED = "user.created"
    WEBHOOK_ENDPOINT_CREATED = "webhook_endpoint.created"
    WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint.disabled"
    WEBHOOK_SECRET_ROTATED = "webhook_endpoint.secret_rotated"
    SIGNING_KEY_ROTATED = "signing_key.rotated"
    ROLE_GRANTED = "role.granted"
    ROLE_REVOKED = "role.revoked"
    MODEL_VERSION_REGISTERED = "model_version.registered"
    MODEL_VERSION_PROMOTED = "model_version.promoted"
    MODEL_VERSION_ROLLED_BACK = "model_version.rolled_back"
    MODEL_VERSION_REJECTED = "model_version.rejected"
    MODEL_VERSION_DELETED = "model_version.deleted"
    MODEL_VERSION_BASELINE_KEPT = "model_version.baseline_kept"
    JOB_PLANNED = "unlearning_job.planned"
    JOB_STEP_FINISHED = "unlearning_job.step_finished"
    JOB_TAKEN_OVER = "unlearning_job.taken_over"
    JOB_RETRIED = "unlearning_job.retried"
    JOB_ESCALATED = "unlearning_job.escalated"
    JOB_FAILED = "unlearning_job.failed"
    JOB_CANCELLED = "unlearning_job.cancelled"
    VERIFICATION_RECORDED = "verification.recorded"
    CERTIFICATE_ISSUED = "certificate.issued"
    PIPELINE_POLICY_SET = "pipeline_policy.set"
    GUARD_ACTIVATED = "inference_guard.activated"
    GUARD_DEACTIVATED = "inference_guard.deactivated"


#: A check that stored state agrees with the chain: returns a problem (ids and keyed hashes only) or "".
StateCheck = Callable[[], str]
_STATE_CHECKS: list[StateCheck] = []


def register_state_check(check: StateCheck) -> StateCheck:
    """Register a state check (used as a decorator by the app that owns the state; core cannot import
    the apps). :func:`audit_verify` runs every registered check once the chain itself verifies."""
    _STATE_CHECKS.append(check)
    return check


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def audit_append(*, actor: Principal, action: AuditAction, object_type: str = "", object_id: str = "",
                 subject_hash: str = "", data: dict[str, Any] | None = None) -> AuditEvent:
    """Append one event to the chain. Call it inside the transaction of the change it records.

    ``actor`` is the authenticated principal (its name is recorded; free strings are refused).
    ``data`` must be JSON-serialisable and must not contain PHI (use keyed hashes).
    """
    if not isinstance(actor, Principal):
        raise TypeError(f"the audit actor must be a Principal, not {type(actor).__name__}")
    # No savepoint: the caller's transaction holds the change, so a failed append must abort it
    # (and a savepoint would cost two more round trips while the head row is locked).
    with transaction.atomic(savepoint=False):
        head, _ = AuditHead.objects.select_for_update().get_or_create(pk=1)
        occurred_at = timezone.now()
        entry = {"seq": head.seq + 1, "occurred_at": _timestamp(occurred_at), "actor": actor.name,
                 "action": str(action), "object_type": object_type, "object_id": str(object_id),
                 "subject_hash": subject_hash, "data": data or {}}
        digest = event_hash(head.hash, entry)
        event = AuditEvent.objects.create(
            seq=entry["seq"], occurred_at=occurred_at, actor=actor.name, action=entry["action"],
            object_type=object_type, object_id=entry["object_id"], subject_hash=subject_hash,
            data=entry["data"], prev_hash=head.hash, hash=digest)
        head.seq, head.hash = event.seq, digest
        head.save(update_fields=["seq", "hash"])
    return event


def audit_checkpoint(*, heartbeat: bool = False) -> AuditCheckpoint | None:
    """Sign the current head; returns the new checkpoint.

    On demand (default) nothing is signed when the head is already checkpointed. The scheduler
    passes ``heartbeat=True`` and signs the head every interval even when it has not moved, which
    is what lets verification call a stale newest checkpoint tampering. Once committed, the
    checkpoint is appended to the witness file and POSTed to the auditor's URL if one is set.
    """
    with transaction.atomic():
        head, _ = AuditHead.objects.select_for_update().get_or_create(pk=1)
        if head.seq == 0 or (not heartbeat and AuditCheckpoint.objects.filter(seq=head.seq).exists()):
            return None
        signed_at = timezone.now()
        key_id, signature = signing.sign(checkpoint_message(head.seq, head.hash, _timestamp(signed_at)))
        checkpoint = AuditCheckpoint.objects.create(seq=head.seq, hash=head.hash, signed_at=signed_at,
                                                    key_id=key_id, signature=signature)
        transaction.on_commit(lambda: _witness(_checkpoint_dict(checkpoint)))
    return checkpoint


def _witness(entry: dict[str, Any]) -> None:
    witness_append(Path(settings.OBLIVIO_AUDIT_WITNESS_FILE), entry)
    if settings.OBLIVIO_AUDIT_WITNESS_URL:
        witness_post(settings.OBLIVIO_AUDIT_WITNESS_URL, entry,
                     timeout=settings.OBLIVIO_WEBHOOK_TIMEOUT_SECONDS)


def audit_head() -> dict[str, Any]:
    """``{"seq", "hash"}`` of the newest event: what a certificate records as the head it saw."""
    return _head_dict()


def audit_head_confirmed(seq: int, digest: str) -> bool:
    """True if event ``seq`` is in the chain with hash ``digest`` (checks a certificate's head)."""
    if seq == 0:
        return digest == GENESIS_HASH
    return AuditEvent.objects.filter(seq=seq, hash=digest).exists()


# --- reading the database --------------------------------------------------------------


def _event_dicts() -> Iterator[dict[str, Any]]:
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=2000):
        yield {"seq": event.seq, "occurred_at": _timestamp(event.occurred_at), "actor": event.actor,
               "action": event.action, "object_type": event.object_type, "object_id": event.object_id,
               "subject_hash": event.subject_hash, "data": event.data, "prev_hash": event.prev_hash,
               "hash": event.hash}


def _checkpoint_dict(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    return {"seq": checkpoint.seq, "hash": checkpoint.hash, "signed_at": _timestamp(checkpoint.signed_at),
            "key_id": checkpoint.key_id, "signature": checkpoint.signature}


def _checkpoint_dicts() -> list[dict[str, Any]]:
    return [_checkpoint_dict(c) for c in AuditCheckpoint.objects.order_by("seq", "signed_at")]


def _head_dict() -> dict[str, Any]:
    head = AuditHead.objects.filter(pk=1).first()
    return {"seq": head.seq, "hash": head.hash} if head else {"seq": 0, "hash": GENESIS_HASH}


def checkpoint_max_age() -> timedelta:
    """How old the newest checkpoint may be: the schedule's interval plus the grace."""
    return timedelta(seconds=settings.OBLIVIO_AUDIT_CHECKPOINT_SECONDS
                     + settings.OBLIVIO_AUDIT_CHECKPOINT_GRACE_SECONDS)


def audit_verify() -> VerifyResult:
    """Verify the chain stored in the database: links, signatures and head, then the witness
    outside the database, then that the newest checkpoint is as recent as the schedule makes it, then
    that the rows the events describe still say what the events say (the registered state checks)."""
    keys = signing.public_keys()
    checkpoints = _checkpoint_dicts()
    result = verify_chain(_event_dicts(), checkpoints, public_keys=keys, head=_head_dict())
    if not result.ok:
        return result
    try:
        problem = verify_witness(checkpoints, witness_read(Path(settings.OBLIVIO_AUDIT_WITNESS_FILE)),
                                 public_keys=keys)
    except WitnessError as exc:
        problem = str(exc)
    if not problem:
        first_event = AuditEvent.objects.order_by("seq").values_list("occurred_at", flat=True).first()
        problem = staleness_problem(
            newest_checkpoint_at=AuditCheckpoint.objects.aggregate(newest=Max("signed_at"))["newest"],
            first_event_at=first_event, now=timezone.now(), max_age=checkpoint_max_age())
    for check in _STATE_CHECKS:
        problem = problem or check()
    if problem:
        return replace(result, ok=False, problem=problem)
    return result


# --- export -------------------------------------------------------------------------------


def audit_export_json() -> dict[str, Any]:
    """Everything an auditor needs to verify the chain offline (no PHI: subjects are keyed hashes)."""
    return {"format": EXPORT_FORMAT, "exported_at": _timestamp(timezone.now()),
            "retention_years": settings.OBLIVIO_AUDIT_RETENTION_YEARS,
            "public_keys": signing.public_keys(), "key_id": signing.active_key_id(),
            "head": _head_dict(), "events": list(_event_dicts()), "checkpoints": _checkpoint_dicts()}


def audit_export_csv() -> str:
    """Events as CSV (``data`` as JSON text), for spreadsheets."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EVENT_FIELDS)
    writer.writeheader()
    for event in _event_dicts():
        writer.writerow({**event, "data": json.dumps(event["data"], sort_keys=True)})
    return buffer.getvalue()

