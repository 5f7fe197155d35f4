"""View-only admin pages for the hierarchy; identifiers appear as short keyed hashes.

Nothing is edited here: nodes change only through the audited ingest and FHIR import services.
Searching patients by ``system|MRN`` or studies by StudyInstanceUID hashes the term first.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from .identifiers import mrn_hash, short, study_uid_hash
from .models import Corpus, Institution, Patient, Section, Study, TrainingRecord


class ViewOnlyAdmin(admin.ModelAdmin):
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class HashSearchAdmin(ViewOnlyAdmin):
    """Search by a raw identifier: the term is hashed and compared with the one ``search_fields`` entry."""

    def hash_term(self, term: str) -> str:
        raise NotImplementedError

    def get_search_results(self, request: HttpRequest, queryset: QuerySet,
                           search_term: str) -> tuple[QuerySet, bool]:
        if not search_term.strip():
            return queryset, False
        return queryset.filter(**{self.search_fields[0]: self.hash_term(search_term)}), False


@admin.register(Institution)
class InstitutionAdmin(ViewOnlyAdmin):
    list_display = ["code", "name", "mrn_system", "patient_count", "created_at"]
    search_fields = ["code", "name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(patient_count=Count("patients"))

    @admin.display(description="patients", ordering="patient_count")
    def patient_count(self, obj: Institution) -> int:
        return obj.patient_count


@admin.register(Patient)
class PatientAdmin(HashSearchAdmin):
    list_display = ["mrn", "institution", "study_count", "created_at"]
    list_filter = ["institution"]
    list_select_related = ["institution"]
    search_fields = ["mrn_hash"]
    search_help_text = "MRN as system|value (hashed before the lookup)"

    def hash_term(self, term: str) -> str:
        system, _, value = term.rpartition("|")
        return mrn_hash(system, value)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(study_count=Count("studies"))

    @admin.display(description="MRN (keyed hash)")
    def mrn(self, obj: Patient) -> str:
        return short(obj.mrn_hash)

    @admin.display(description="studies", ordering="study_count")
    def study_count(self, obj: Patient) -> int:
        return obj.study_count


@admin.register(Study)
class StudyAdmin(HashSearchAdmin):
    list_display = ["uid", "patient", "modality", "created_at"]
    list_filter = ["modality", "patient__institution"]
    list_select_related = ["patient"]
    search_fields = ["uid_hash"]
    search_help_text = "StudyInstanceUID, with or without urn:oid: (hashed before the lookup)"

    def hash_term(self, term: str) -> str:
        return study_uid_hash(term)

    @admin.display(description="StudyInstanceUID (keyed hash)")
    def uid(self, obj: Study) -> str:
        return short(obj.uid_hash)


@admin.register(Section)
class SectionAdmin(ViewOnlyAdmin):
    list_display = ["study", "name"]
    list_filter = ["name"]
    list_select_related = ["study"]


@admin.register(Corpus)
class CorpusAdmin(ViewOnlyAdmin):
    list_display = ["name", "digest", "schema_version", "record_count", "ingested_at"]

    @admin.display(description="records sha256")
    def digest(self, obj: Corpus) -> str:
        return short(obj.records_sha256)


@admin.register(TrainingRecord)
class TrainingRecordAdmin(ViewOnlyAdmin):
    list_display = ["record_id", "corpus", "study", "section", "level", "task", "fact_kind", "fact_key",
                    "form", "shared", "eval_only", "is_holdout"]
    list_filter = ["corpus", "level", "task", "fact_kind", "eval_only", "is_holdout"]
    list_select_related = ["corpus", "study", "section__study"]
    search_fields = ["record_id", "fact_key"]
