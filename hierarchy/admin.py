"""View-only admin pages for the hierarchy; identifiers appear as short keyed hashes.

Nothing is edited here: nodes change only through the audited ingest and FHIR import services.
Patients are found by ``system|MRN`` and studies by StudyInstanceUID through a POST form: the term
is hashed on the server and only its keyed hash ever appears in a URL (never in a query string or
the access log).
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

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
    """Find by a raw identifier, POSTed: the term is hashed and the changelist is filtered on
    ``hash_field`` (the keyed hash is the only thing in the redirect URL)."""

    change_list_template = "admin/hierarchy/hash_search_change_list.html"
    hash_field = ""
    lookup_label = ""

    def hash_term(self, term: str) -> str:
        raise NotImplementedError

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_lookup"
        view = self.admin_site.admin_view(require_POST(self.lookup_view))
        return [path("lookup/", view, name=name), *super().get_urls()]

    def lookup_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        term = request.POST.get("identifier", "")
        if not term.strip():
            return HttpResponseRedirect(changelist)
        return HttpResponseRedirect(f"{changelist}?{urlencode({self.hash_field: self.hash_term(term)})}")

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return lookup == self.hash_field or super().lookup_allowed(lookup, value, request)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        lookup = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_lookup")
        return super().changelist_view(request, {**(extra_context or {}), "lookup_url": lookup,
                                                 "lookup_label": self.lookup_label})


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
    hash_field = "mrn_hash"
    lookup_label = "MRN as system|value (hashed on the server before the lookup)"

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
    hash_field = "uid_hash"
    lookup_label = "StudyInstanceUID, with or without urn:oid: (hashed on the server before the lookup)"

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
