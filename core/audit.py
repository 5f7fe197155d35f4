"""The audit chain in the database: append events, sign checkpoints, verify, export.

``audit_append`` is the only way an event is written; every state-changing service calls it in the
same transaction as the change it records. Verification is the pure :mod:`core.chain`, so the same
code checks the live database and an exported file offline.
"""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import signing
from .chain import (
    EVENT_FIELDS,
    EXPORT_FORMAT,
    GENESIS_HASH,
    VerifyResult,
    checkpoint_message,
    event_hash,
    verify_chain,
)
from .models import AuditCheckpoint, AuditEvent, AuditHead


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
    MODEL_VERSION_REGISTERED = "model_version.registered"
    MODEL_VERSION_PROMOTED = "model_version.promoted"
    MODEL_VERSION_ROLLED_BACK = "model_version.rolled_back"
    MODEL_VERSION_REJECTED = "model_version.rejected"
    MODEL_VERSION_DELETED = "model_version.deleted"
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


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def audit_append(*, actor: str, action: AuditAction, object_type: str = "", object_id: str = "",
                 subject_hash: str = "", data: dict[str, Any] | None = None) -> AuditEvent:
    """Append one event to the chain. Call it inside the transaction of the change it records.

    ``data`` must be JSON-serialisable and must not contain PHI (use keyed hashes).
    """
    with transaction.atomic():
        head, _ = AuditHead.objects.select_for_update().get_or_create(pk=1)
        occurred_at = timezone.now()
        entry = {"seq": head.seq + 1, "occurred_at": _timestamp(occurred_at), "actor": actor,
                 "action": str(action), "object_type": object_type, "object_id": str(object_id),
                 "subject_hash": subject_hash, "data": data or {}}
        digest = event_hash(head.hash, entry)
        event = AuditEvent.objects.create(
            seq=entry["seq"], occurred_at=occurred_at, actor=actor, action=entry["action"],
            object_type=object_type, object_id=entry["object_id"], subject_hash=subject_hash,
            data=entry["data"], prev_hash=head.hash, hash=digest)
        head.seq, head.hash = event.seq, digest
        head.save(update_fields=["seq", "hash"])
    return event


def audit_checkpoint() -> AuditCheckpoint | None:
    """Sign the current head unless it is already checkpointed; returns the new checkpoint."""
    with transaction.atomic():
        head, _ = AuditHead.objects.select_for_update().get_or_create(pk=1)
        if head.seq == 0 or AuditCheckpoint.objects.filter(seq=head.seq).exists():
            return None
        signed_at = timezone.now()
        message = checkpoint_message(head.seq, head.hash, _timestamp(signed_at))
        return AuditCheckpoint.objects.create(seq=head.seq, hash=head.hash, signed_at=signed_at,
                                              key_id=signing.key_id(), signature=signing.sign(message))


# --- reading the database --------------------------------------------------------------


def _event_dicts() -> Iterator[dict[str, Any]]:
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=2000):
        yield {"seq": event.seq, "occurred_at": _timestamp(event.occurred_at), "actor": event.actor,
               "action": event.action, "object_type": event.object_type, "object_id": event.object_id,
               "subject_hash": event.subject_hash, "data": event.data, "prev_hash": event.prev_hash,
               "hash": event.hash}


def _checkpoint_dicts() -> list[dict[str, Any]]:
    return [{"seq": c.seq, "hash": c.hash, "signed_at": _timestamp(c.signed_at), "key_id": c.key_id,
             "signature": c.signature} for c in AuditCheckpoint.objects.order_by("seq")]


def _head_dict() -> dict[str, Any]:
    head = AuditHead.objects.filter(pk=1).first()
    return {"seq": head.seq, "hash": head.hash} if head else {"seq": 0, "hash": GENESIS_HASH}


def audit_verify() -> VerifyResult:
    """Verify the chain stored in the database."""
    return verify_chain(_event_dicts(), _checkpoint_dicts(), public_key_pem=signing.public_key_pem(),
                        head=_head_dict())


# --- export -------------------------------------------------------------------------------


def audit_export_json() -> dict[str, Any]:
    """Everything an auditor needs to verify the chain offline (no PHI: subjects are keyed hashes)."""
    return {"format": EXPORT_FORMAT, "exported_at": _timestamp(timezone.now()),
            "retention_years": settings.OBLIVIO_AUDIT_RETENTION_YEARS,
            "public_key_pem": signing.public_key_pem(), "key_id": signing.key_id(),
            "head": _head_dict(), "events": list(_event_dicts()), "checkpoints": _checkpoint_dicts()}


def audit_export_csv() -> str:
    """Events as CSV (``data`` as JSON text), for spreadsheets."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EVENT_FIELDS)
    writer.writeheader()
    for event in _event_dicts():
        writer.writerow({**event, "data": json.dumps(event["data"], sort_keys=True)})
    return buffer.getvalue()

