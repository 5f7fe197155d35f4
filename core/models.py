"""The tamper-evident audit chain.

Each :class:`AuditEvent` stores ``prev_hash`` and ``hash = SHA-256(prev_hash || RFC 8785 JSON of
the event)``; database triggers refuse UPDATE and DELETE. :class:`AuditHead` is the single row
appends lock to stay in order; :class:`AuditCheckpoint` rows are Ed25519-signed snapshots of the
head, so removing events from the end is detectable too. Events never carry PHI: subjects appear
as keyed hashes.
"""

from __future__ import annotations

from django.db import models

from .chain import GENESIS_HASH


class AuditEvent(models.Model):
    seq = models.PositiveBigIntegerField(unique=True)
    occurred_at = models.DateTimeField()
    actor = models.CharField(max_length=150, help_text="user name, 'api-key:<prefix>' or 'system'")
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    subject_hash = models.CharField(max_length=64, blank=True,
                                    help_text="Keyed hash of the data subject's identifier.")
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        db_table = "compliance_auditevent"  # created by the compliance app before the move to core
        ordering = ["seq"]
        indexes = [models.Index(fields=["object_type", "object_id"]),
                   models.Index(fields=["action"]), models.Index(fields=["occurred_at"])]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"


class AuditHead(models.Model):
    """Singleton (pk=1): the last appended event. Appends lock this row."""

    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    class Meta:
        db_table = "compliance_audithead"

    def __str__(self) -> str:
        return f"audit head @{self.seq}"


class AuditCheckpoint(models.Model):
    """A signed statement "event ``seq`` has hash ``hash``" (Ed25519 over the canonical JSON)."""

    seq = models.PositiveBigIntegerField()
    hash = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    key_id = models.CharField(max_length=64)
    signature = models.CharField(max_length=128, help_text="base64 Ed25519 signature")

    class Meta:
        db_table = "compliance_auditcheckpoint"
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"checkpoint @{self.seq}"


class DeploymentKey(models.Model):
    """A key this database was used with, by fingerprint (never the key itself).

    Recorded when the database is first migrated and on every rotation, so a process that finds
    other keys in its data directory refuses to start instead of hashing identifiers differently.
    """

    class Purpose(models.TextChoices):
        IDENTIFIER = "identifier", "identifier HMAC key"
        SIGNING = "signing", "signing key"

    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    key_id = models.CharField(max_length=64, help_text="Fingerprint: first 16 hex digits of a SHA-256.")
    public_key_pem = models.TextField(blank=True, help_text="Signing keys only.")
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["purpose", "created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["purpose", "key_id"], name="unique_deployment_key")]

    def __str__(self) -> str:
        return f"{self.purpose} key {self.key_id}"
