"""Idempotent POSTs: a retried request with the same ``Idempotency-Key`` gets the first response back.

The key's record is inserted in the same transaction as the work it guards. A concurrent retry
blocks on the unique index until the first transaction ends, then either replays the committed
response or (if the first rolled back) does the work itself: never twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

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


def idempotent_call(*, owner: str, key: str, fingerprint: str, status: int,
                    execute: Callable[[], dict[str, Any]]) -> IdempotentResponse:
    """Run ``execute`` once per ``(owner, key)``; replay its response for retries with the same body."""
    with transaction.atomic():
        record, created = IdempotencyRecord.objects.get_or_create(
            owner=owner, key=key,
            defaults={"fingerprint": fingerprint, "response_status": status, "response_body": {}})
        if not created:
            if record.fingerprint != fingerprint:
                raise Invalid(f"this {HEADER} was already used with a different request body", field=HEADER,
                              code="idempotency_key_reused")
            return IdempotentResponse(record.response_status, record.response_body, replayed=True)
        body = execute()
        record.response_body = body
        record.save(update_fields=["response_body"])
    return IdempotentResponse(status, body, replayed=False)
