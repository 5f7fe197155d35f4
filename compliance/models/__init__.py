"""Compliance models, one module per concern."""

from .audit import AuditCheckpoint, AuditEvent, AuditHead

__all__ = ["AuditCheckpoint", "AuditEvent", "AuditHead"]
