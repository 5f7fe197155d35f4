"""Compliance models, one module per concern."""

from .access import ApiKey, IdempotencyRecord
from .forget_requests import ForgetRequest
from .pipeline import (
    ACTIVE_JOB_STATES,
    Certificate,
    Deployment,
    GuardRule,
    JobState,
    JobStep,
    ModelVersion,
    PipelinePolicy,
    UnlearningJob,
    VerificationRecord,
    VersionStatus,
)
from .webhooks import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

__all__ = ["ACTIVE_JOB_STATES", "ApiKey", "Certificate", "DeliveryStatus", "Deployment", "ForgetRequest",
           "GuardRule", "IdempotencyRecord", "JobState", "JobStep", "ModelVersion", "PipelinePolicy",
           "UnlearningJob", "VerificationRecord", "VersionStatus", "WebhookAttempt", "WebhookDelivery",
           "WebhookEndpoint", "WebhookEvent"]
