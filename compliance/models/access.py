"""API keys of hospital systems: stored as SHA-256 digests, found by a short public prefix."""

from __future__ import annotations

from django.db import models


class ApiKey(models.Model):
    prefix = models.CharField(max_length=16, unique=True, help_text="Public part, shown in lists and logs.")
    digest = models.CharField(max_length=64, help_text="SHA-256 (hex) of the whole token.")
    name = models.CharField(max_length=100)
    institutions = models.ManyToManyField("hierarchy.Institution", related_name="api_keys")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"


class IdempotencyRecord(models.Model):
    """The first response to a POST carrying ``Idempotency-Key``; retries get it back unchanged."""

    owner = models.CharField(max_length=64, help_text="Principal the key belongs to (Principal.pk).")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the canonical request body.")
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="unique_idempotency_key")]

    def __str__(self) -> str:
        return f"idempotency key of {self.owner}"
