"""Signed webhook notifications through a transactional outbox.

``webhook_enqueue`` writes one :class:`WebhookDelivery` per subscribed endpoint inside the caller's
transaction and, once it commits, fires the delivery task. ``webhook_attempt`` claims a due delivery
(a lease on ``next_attempt_at``), POSTs it and records the attempt; failures back off exponentially.
The periodic sweeper retries whatever is due, so a broker or receiver outage loses nothing.

Receivers check ``Oblivio-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
(see :func:`webhook_signature_verify`) and de-duplicate on ``Oblivio-Event-Id``. Payloads carry
request ids, statuses and keyed hashes only, never PHI.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import rfc8785
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.audit import AuditAction, audit_append
from core.home import WEBHOOK_SECRET_KEY, secret
from core.principals import Principal
from hierarchy.models import Institution

from . import egress
from .errors import Invalid, NotFound, lock_or_not_found
from .models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

SIGNATURE_HEADER = "Oblivio-Signature"
EVENT_ID_HEADER = "Oblivio-Event-Id"
EVENT_TYPE_HEADER = "Oblivio-Event-Type"

logger = logging.getLogger(__name__)


# --- signatures ---------------------------------------------------------------------------------


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Oblivio-Signature`` header value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def webhook_signature_verify(*, secret: str, header: str, body: bytes, tolerance: int = 300,
                             now: int | None = None) -> bool:
    """What a receiver runs: the signature matches and is at most ``tolerance`` seconds old."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else int(time.time())) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(parts.get("v1", ""), _mac(secret, timestamp, body))


# --- endpoints ----------------------------------------------------------------------------------


def _fernet() -> Fernet:
    return Fernet(secret(WEBHOOK_SECRET_KEY))


def seal_secret(value: str) -> str:
    """A webhook signing secret sealed for storage (Fernet under the deployment's webhook key)."""
    return _fernet().encrypt(value.encode()).decode()


def webhook_secret(endpoint: WebhookEndpoint) -> str:
    """The endpoint's signing secret, unsealed."""
    return _fernet().decrypt(endpoint.sealed_secret.encode()).decode()


#: ``object_type`` of the audit events of webhook endpoints.
ENDPOINT = "webhook_endpoint"


def url_digest(url: str) -> str:
    """SHA-256 of an endpoint's URL: what the audit chain records (a URL may carry a receiver's token)."""
    return hashlib.sha256(url.encode()).hexdigest()


def webhook_endpoint_create(*, institution_code: str, url: str, events: list[str],
                            actor: Principal) -> WebhookEndpoint:
    """Register a receiver for one institution (all events when ``events`` is empty).

    A signing secret is generated and stored sealed; :func:`webhook_secret` reads it.
    """
    institution = Institution.objects.filter(code=institution_code).first()
    if institution is None:
        raise NotFound("no institution has this code", field="institution", code="institution_not_found")
    if urlsplit(url).scheme not in ("http", "https"):
        raise Invalid("a webhook URL must be http:// or https://", field="url",
                      code="invalid_webhook_endpoint")
    try:
        egress.check_destination(url)
    except egress.ForbiddenAddress as exc:
        raise Invalid(f"webhook URL refused: {exc} (see OBLIVIO_WEBHOOK_ALLOW_PRIVATE_ADDRESSES)",
                      field="url", code="webhook_address_forbidden") from None
    known = {str(event) for event in WebhookEvent}
    if not set(events) <= known:
        raise Invalid(f"events must be among {', '.join(sorted(known))}", field="events",
                      code="unknown_event")
    endpoint = WebhookEndpoint(institution=institution, url=url, events=sorted(set(events) or known),
                               sealed_secret=seal_secret(secrets.token_hex(32)))
    try:
        endpoint.full_clean()
    except ValidationError as exc:
        raise Invalid(f"invalid webhook endpoint: {'; '.join(exc.messages)}", field="url",
                      code="invalid_webhook_endpoint") from None
    with transaction.atomic():
        endpoint.save()
        audit_append(actor=actor, action=AuditAction.WEBHOOK_ENDPOINT_CREATED,
                     object_type=ENDPOINT, object_id=str(endpoint.pk),
                     data={"institution": institution.code, "events": endpoint.events,
                           "url_sha256": url_digest(url)})
    return endpoint


def _locked_endpoint(endpoint_id: int) -> WebhookEndpoint:
    return lock_or_not_found(WebhookEndpoint.objects, NotFound(
        "no webhook endpoint has this id", field="endpoint", code="endpoint_not_found"), pk=endpoint_id)


def webhook_endpoint_disable(*, endpoint_id: int, actor: Principal) -> WebhookEndpoint:
    """Stop sending to an endpoint (pending deliveries are still attempted)."""
    with transaction.atomic():
        endpoint = _locked_endpoint(endpoint_id)
        endpoint.is_active = False
        endpoint.save(update_fields=["is_active"])
        audit_append(actor=actor, action=AuditAction.WEBHOOK_ENDPOINT_DISABLED,
                     object_type=ENDPOINT, object_id=str(endpoint.pk))
    return endpoint


def webhook_endpoint_rotate_secret(*, endpoint_id: int, actor: Principal) -> str:
    """Replace an endpoint's signing secret and return the new one.

    Every delivery attempted from now on is signed with it, including retries of older events.
    """
    with transaction.atomic():
        endpoint = _locked_endpoint(endpoint_id)
        new_secret = secrets.token_hex(32)
        endpoint.sealed_secret = seal_secret(new_secret)
        endpoint.save(update_fields=["sealed_secret"])
        audit_append(actor=actor, action=AuditAction.WEBHOOK_SECRET_ROTATED,
                     object_type=ENDPOINT, object_id=str(endpoint.pk))
    return new_secret


# --- outbox -------------------------------------------------------------------------------------


_broker_down_until = 0.0


def webhook_dispatch(delivery_id: int, *, countdown: float = 0) -> None:
    """Queue the delivery task; if the broker is down the sweeper delivers later.

    Never blocks a request: one connection attempt without retries, and after a failure no attempt
    at all for ``OBLIVIO_DISPATCH_RETRY_SECONDS`` (the outbox row waits for the sweeper meanwhile).
    """
    global _broker_down_until
    from .tasks import webhook_deliver_task

    if time.monotonic() < _broker_down_until:
        return
    try:
        webhook_deliver_task.apply_async((delivery_id,), countdown=countdown, retry=False)
    except Exception as exc:  # broker unreachable: the outbox row stays pending for the sweeper
        _broker_down_until = time.monotonic() + settings.OBLIVIO_DISPATCH_RETRY_SECONDS
        logger.warning("webhook dispatch deferred to the sweeper",
                       extra={"delivery_id": delivery_id, "error": exc.__class__.__name__})


def webhook_enqueue(*, institution_id: int, event: WebhookEvent,
                    data: dict[str, Any]) -> list[WebhookDelivery]:
    """Write a delivery per subscribed endpoint in the current transaction; dispatch after commit."""
    now = timezone.now()
    deliveries = []
    for endpoint in WebhookEndpoint.objects.filter(institution_id=institution_id, is_active=True):
        if str(event) not in endpoint.events:
            continue
        delivery = WebhookDelivery(endpoint=endpoint, event_type=str(event), next_attempt_at=now, payload={})
        delivery.payload = {"id": str(delivery.event_id), "type": str(event),
                            "created_at": now.isoformat(), "data": data}
        delivery.save()
        deliveries.append(delivery)
        transaction.on_commit(lambda pk=delivery.pk: webhook_dispatch(pk))
    return deliveries


# --- delivery -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptOutcome:
    delivered: bool
    retry_in: float | None  # seconds until the next try; None when delivered or abandoned


def retry_delay(attempts: int) -> float:
    """Exponential backoff after ``attempts`` failures, capped."""
    base = settings.OBLIVIO_WEBHOOK_BACKOFF_SECONDS
    return float(min(base * 2 ** (attempts - 1), settings.OBLIVIO_WEBHOOK_BACKOFF_CAP_SECONDS))


def _post(delivery: WebhookDelivery) -> tuple[int | None, str]:
    body = rfc8785.dumps(delivery.payload)
    headers = {"Content-Type": "application/json", "User-Agent": "Oblivio-Webhooks/1",
               SIGNATURE_HEADER: webhook_signature(webhook_secret(delivery.endpoint), int(time.time()), body),
               EVENT_ID_HEADER: str(delivery.event_id), EVENT_TYPE_HEADER: delivery.event_type}
    request = urllib.request.Request(delivery.endpoint.url, data=body, headers=headers, method="POST")
    try:
        with egress.opener.open(request, timeout=settings.OBLIVIO_WEBHOOK_TIMEOUT_SECONDS) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))[:200]


def webhook_attempt(*, delivery_id: int) -> AttemptOutcome | None:
    """Try one delivery if it is due and nobody else holds it; ``None`` when there was nothing to do."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.OBLIVIO_WEBHOOK_TIMEOUT_SECONDS + 30)
    claimed = WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING,
                                             next_attempt_at__lte=now).update(next_attempt_at=lease)
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    started = time.monotonic()
    status_code, error = _post(delivery)
    delivered = status_code is not None and 200 <= status_code < 300
    with transaction.atomic():
        finished = timezone.now()
        WebhookAttempt.objects.create(delivery=delivery, attempted_at=now, status_code=status_code,
                                      error=error, duration_ms=int((time.monotonic() - started) * 1000))
        delivery.attempts += 1
        retry_in = None
        if delivered:
            delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED, finished
        elif delivery.attempts >= settings.OBLIVIO_WEBHOOK_MAX_ATTEMPTS:
            delivery.status = DeliveryStatus.ABANDONED
        else:
            retry_in = retry_delay(delivery.attempts)
            delivery.next_attempt_at = finished + timedelta(seconds=retry_in)
        delivery.save(update_fields=["attempts", "status", "delivered_at", "next_attempt_at"])
    if not delivered:
        logger.warning("webhook delivery failed",
                       extra={"delivery_id": delivery.pk, "attempt": delivery.attempts,
                              "status_code": status_code, "abandoned": retry_in is None})
    return AttemptOutcome(delivered=delivered, retry_in=retry_in)


def webhook_deliver_due(*, limit: int = 100) -> int:
    """The sweeper: attempt up to ``limit`` due deliveries; returns how many were delivered."""
    due = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now())
    delivered = 0
    for delivery_id in due.order_by("next_attempt_at").values_list("pk", flat=True)[:limit]:
        outcome = webhook_attempt(delivery_id=delivery_id)
        delivered += bool(outcome and outcome.delivered)
    return delivered
