"""Compliance models, one module per concern."""

from .access import ApiKey, IdempotencyRecord
from .forget_requests import ForgetRequest
from .webhooks import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

__all__ = ["ApiKey", "DeliveryStatus", "ForgetRequest",
           "IdempotencyRecord", "WebhookAttempt", "WebhookDelivery", "WebhookEndpoint", "WebhookEvent"]
