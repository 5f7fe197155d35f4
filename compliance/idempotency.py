"""Idempotent POSTs: a retried request with the same ``Idempotency-Key`` gets the first response back.

The key's record is inserted in the same transaction as the work it guards. A concurrent retry
blocks on the unique index until the first transaction ends, then either replays the committed
response or (if the first rolled back) does the work itself: never twice.

Keys are kept for at least ``OBLIVIO_IDEMPOTENCY_TTL_HOURS`` (24 h, as payment APIs do); the beat
scheduler then purges them. A retry after the purge is a new request — and the intake still links
it to the open request for the same subject as a duplicate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .errors import Invalid
from .models import IdempotencyRecord

HEADER = "Idempotency-Key"
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass(frozen=True)
class IdempotentResponse:
    status: int
    body: dict[str, Any]
    replayed: bool


def idempotency_key_check(value: str) -> str:
    """The key if it is 1-255 visible ASCII characters; :class:`Invalid` otherwise."""
    if not _KEY.fullmatch(value):
        raise Invalid(f"{HEADER} must be 1 to 255 visible ASCII characters", field=HEADER,
                      code="invalid_idempotency_key")
    return value


def body_fingerprint(data: Any) -> str:
    """SHA-256 of the parsed body in a canonical form (key order and spacing do not matter)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


#: ``response_status`` of a record whose first request is still running (only ever visible inside
#: that request's own transaction: the status is set before it commits).
PENDING = 0


def idempotent_call(*, owner: str, key: str, fingerprint: str, status: int,
                    execute: Callable[[], dict[str, Any]]) -> IdempotentResponse:
    """Run ``execute`` once per ``(owner, key)``; replay its response for retries with the same body.

    ``INSERT ... ON CONFLICT DO NOTHING`` then one read: two round trips. A concurrent retry's insert
    waits on the unique index until the first transaction ends, then reads the committed record.
    """
    with transaction.atomic():
        IdempotencyRecord.objects.bulk_create([IdempotencyRecord(
            owner=owner, key=key, fingerprint=fingerprint, response_status=PENDING, response_body={})],
            ignore_conflicts=True)
        record = IdempotencyRecord.objects.get(owner=owner, key=key)
        if record.response_status != PENDING:
            if record.fingerprint != fingerprint:
                raise Invalid(f"this {HEADER} was already used with a different request body", field=HEADER,
                              code="idempotency_key_reused")
            return IdempotentResponse(record.response_status, record.response_body, replayed=True)
        body = execute()
        record.response_status, record.response_body = status, body
        record.save(update_fields=["response_status", "response_body"])
    return IdempotentResponse(status, body, replayed=False)


def idempotency_purge_expired(*, now: dt.datetime | None = None) -> int:
    """Delete keys older than the retention window; return how many were deleted."""
    cutoff = (now or timezone.now()) - dt.timedelta(hours=settings.OBLIVIO_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
