"""Webhook endpoints of institutions and the outbox of signed status notifications.

A :class:`WebhookDelivery` row is written in the same transaction as the change it announces;
delivery tasks and the periodic sweeper work from these rows, so nothing is lost while the broker or
the receiver is down. Each try is kept as a :class:`WebhookAttempt`.
"""

from __future__ import annotations

import enum
import uuid

from django.db import models


class WebhookEvent(enum.StrEnum):
    REQUEST_CREATED = "forget_request.created"
    STATUS_CHANGED = "forget_request.status_changed"
    DEADLINE_EXTENDED = "forget_request.deadline_extended"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    ABANDONED = "abandoned"  # every attempt failed


def _all_events() -> list[str]:
    return [str(event) for event in WebhookEvent]


class WebhookEndpoint(models.Model):
    institution = models.ForeignKey("hierarchy.Institution", on_delete=models.PROTECT,
                                    related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    sealed_secret = models.TextField(
        help_text="The HMAC-SHA256 key shared with the receiver, sealed with the deployment's webhook "
                  "key (Fernet); read it with compliance.webhooks.webhook_secret().")
    events = models.JSONField(default=_all_events, help_text="Event types sent to this endpoint.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"webhook {self.pk} of {self.institution_id}"


class WebhookDelivery(models.Model):
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries")
    event_type = models.CharField(max_length=64, choices=[(e.value, e.value) for e in WebhookEvent])
    payload = models.JSONField()
    status = models.CharField(max_length=16, default=DeliveryStatus.PENDING.value,
                              choices=[(s.value, s.value) for s in DeliveryStatus])
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} ({self.status})"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True)
    duration_ms = models.PositiveIntegerField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"attempt {self.pk} of delivery {self.delivery_id}"
