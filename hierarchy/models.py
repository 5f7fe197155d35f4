"""Institution → Patient → Study → Section, the corpora ingested and their training records.

Direct identifiers (MRN, StudyInstanceUID) are stored only as keyed hashes
(:mod:`hierarchy.identifiers`); nothing here is readable PHI beyond coarse clinical attributes.
"""

from __future__ import annotations

from django.db import models

from core.choices import enum_choices
from mllm.data.schema import FactKind, Level, Task
from mllm.data.schema import Section as SectionName

from .identifiers import short


class Institution(models.Model):
    """A hospital or consortium member (FHIR Organization)."""

    code = models.CharField(max_length=64, unique=True, help_text="Stable institution identifier.")
    name = models.CharField(max_length=200)
    mrn_system = models.CharField(
        max_length=255, unique=True,
        help_text="Identifier system URI of this institution's medical record numbers.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class Patient(models.Model):
    """A patient, known only by the keyed hash of ``mrn_system|MRN``."""

    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="patients")
    mrn_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"patient {short(self.mrn_hash)}"


class Study(models.Model):
    """An imaging study (DICOM StudyInstanceUID, stored hashed)."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    uid_hash = models.CharField(max_length=64, unique=True)
    modality = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return f"study {short(self.uid_hash)}"


class Section(models.Model):
    """A report or clinical section of a study (FINDINGS, IMPRESSION, LAB, ...)."""

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="sections")
    name = models.CharField(max_length=32, choices=enum_choices(SectionName))

    class Meta:
        ordering = ["study_id", "name"]
        constraints = [models.UniqueConstraint(fields=["study", "name"], name="unique_section_per_study")]

    def __str__(self) -> str:
        return f"{self.study} / {self.name}"


class Corpus(models.Model):
    """An ingested ``mllm`` corpus, identified by the digest of its records file."""

    name = models.CharField(max_length=100)
    records_sha256 = models.CharField(max_length=64, unique=True)
    schema_version = models.PositiveIntegerField()
    record_count = models.PositiveIntegerField()
    ingested_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-ingested_at"]
        verbose_name_plural = "corpora"

    def __str__(self) -> str:
        return f"{self.name} ({self.records_sha256[:12]})"


class TrainingRecord(models.Model):
    """One image-QA instance of a corpus, placed in the hierarchy.

    ``is_holdout`` records were never trained on; they are the verification reference.
    ``eval_only`` records ask a held-out form (phrasing or task) of a fact, never trained on.
    ``section`` is null for questions about a whole study, patient or institution. The fact is owned
    by the record's node at ``level`` (corpus schema version 2); ``shared`` facts are owned above
    the study and asked on every study image of their owner.
    """

    corpus = models.ForeignKey(Corpus, on_delete=models.PROTECT, related_name="records")
    record_id = models.CharField(max_length=64)
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="records")
    section = models.ForeignKey(Section, on_delete=models.PROTECT, null=True, blank=True,
                                related_name="records")
    level = models.CharField(max_length=16, choices=enum_choices(Level))
    task = models.CharField(max_length=16, choices=enum_choices(Task))
    fact_kind = models.CharField(max_length=16, choices=enum_choices(FactKind))
    is_holdout = models.BooleanField(default=False)
    fact_key = models.CharField(max_length=64, help_text="Kind of fact asked (e.g. patient.name).")
    form = models.CharField(max_length=32, help_text="Task form and phrasing (e.g. cloze-1).")
    shared = models.BooleanField(default=False)
    eval_only = models.BooleanField(default=False, help_text="Held-out form, never trained on.")

    class Meta:
        ordering = ["corpus_id", "record_id"]
        constraints = [
            models.UniqueConstraint(fields=["corpus", "record_id"], name="unique_record_per_corpus"),
        ]
        indexes = [models.Index(fields=["corpus", "is_holdout"])]

    def __str__(self) -> str:
        return self.record_id
