"""A forget request: one hierarchy node to erase from the served model, and where it stands.

The subject is stored as its path down the hierarchy (institution, then patient, study, section as
deep as ``level``); a check constraint keeps the path consistent with the level, so every request
names exactly one node. The requester's own reference is kept only as a keyed hash.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from core.choices import enum_choices
from hierarchy.models import Institution, Patient, Section, Study
from mllm.data.schema import Level

from ..legal import LegalBasis, RefusalReason, Regulation, RequesterType
from ..lifecycle import Status


def _path_matches_level() -> Q:
    """Institution always; patient, study and section exactly down to ``level``."""
    depth = {Level.INSTITUTION: 0, Level.PATIENT: 1, Level.STUDY: 2, Level.SECTION: 3}
    fields = ("patient", "study", "section")
    allowed = Q()
    for level, filled in depth.items():
        nulls = {f"{name}__isnull": index >= filled for index, name in enumerate(fields)}
        allowed |= Q(level=level.value, **nulls)
    return allowed


_REFUSED = [Status.REFUSED.value, Status.PARTIALLY_REFUSED.value]


class ForgetRequest(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    level = models.CharField(max_length=16, choices=enum_choices(Level))
    institution = models.ForeignKey("hierarchy.Institution", on_delete=models.PROTECT,
                                    related_name="forget_requests")
    patient = models.ForeignKey("hierarchy.Patient", on_delete=models.PROTECT, null=True, blank=True,
                                related_name="forget_requests")
    study = models.ForeignKey("hierarchy.Study", on_delete=models.PROTECT, null=True, blank=True,
                              related_name="forget_requests")
    section = models.ForeignKey("hierarchy.Section", on_delete=models.PROTECT, null=True, blank=True,
                                related_name="forget_requests")
    subject_hash = models.CharField(max_length=64, help_text="Keyed hash of the subject's identifier.")

    regulation = models.CharField(max_length=32, choices=enum_choices(Regulation))
    legal_basis = models.CharField(max_length=32, choices=enum_choices(LegalBasis))
    hipaa_covered = models.BooleanField(default=False)
    requester_type = models.CharField(max_length=32, choices=enum_choices(RequesterType))
    requester_hash = models.CharField(max_length=64, blank=True,
                                      help_text="Keyed hash of the requester's own reference.")

    received_at = models.DateTimeField()
    base_deadline = models.DateField(help_text="Answer-by date before any extension.")
    deadline = models.DateField(help_text="Answer-by date in force.")
    extension = models.PositiveSmallIntegerField(default=0, help_text="In the regulation's unit.")
    extension_notice_sent_at = models.DateTimeField(null=True, blank=True)
    extension_note = models.TextField(blank=True)

    status = models.CharField(max_length=32, choices=enum_choices(Status), default=Status.RECEIVED.value)
    status_changed_at = models.DateTimeField()
    submitted_by = models.CharField(max_length=150)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    reason_code = models.CharField(max_length=32, blank=True, choices=enum_choices(RefusalReason))
    decision_note = models.TextField(blank=True)
    scope_summary = models.JSONField(null=True, blank=True,
                                     help_text="Counts of the resolved scope at approval (no PHI).")
    related = models.ManyToManyField("self", blank=True, symmetrical=True,
                                     help_text="Other requests open at intake whose subjects overlap.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_at", "id"]
        indexes = [models.Index(fields=["status", "deadline"]),
                   models.Index(fields=["institution", "status"])]
        constraints = [
            models.CheckConstraint(condition=_path_matches_level(), name="forget_request_one_subject_node"),
            models.CheckConstraint(
                condition=~Q(status__in=_REFUSED) | ~Q(reason_code=""),
                name="forget_request_refusal_has_reason"),
            models.CheckConstraint(condition=Q(deadline__gte=models.F("base_deadline")),
                                   name="forget_request_deadline_not_shortened"),
        ]

    def __str__(self) -> str:
        return f"forget request {self.pk} ({self.status})"

    @property
    def subject_node(self) -> Institution | Patient | Study | Section:
        """The hierarchy node this request is about (the deepest one on its path)."""
        return self.section or self.study or self.patient or self.institution
