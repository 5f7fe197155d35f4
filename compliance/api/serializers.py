"""Input serializers (validate shape, return service arguments) and output serializers (no PHI)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from core.audit import AuditAction
from core.choices import enum_choices
from mllm.data.schema import Level
from mllm.data.schema import Section as SectionName

from ..deadlines import ExtensionUnit
from ..forget_requests import CLOCK_SKEW
from ..legal import LegalBasis, RefusalReason, Regulation, RequesterType
from ..lifecycle import Status
from ..models import ForgetRequest
from ..subjects import SubjectIdentifiers
from .representation import forget_request_json, forget_request_row


class Choice(serializers.ChoiceField):
    """An enum input whose error lists the allowed values and never repeats the submitted one
    (a name or MRN typed into the wrong field would otherwise come back in the error)."""

    def __init__(self, choices: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(choices, **kwargs)
        values = [value for value, _label in choices]
        allowed = ", ".join(values) if len(values) <= 12 else "the values listed in the API schema"
        self.error_messages["invalid_choice"] = f"not an allowed value; use one of: {allowed}"


class Text(serializers.CharField):
    """A text input: a JSON string only (DRF's ``CharField`` also turns numbers into text), without
    NUL characters (refused by DRF); the OpenAPI schema says both (:mod:`compliance.api.schema`)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


#: Datetimes the API accepts: RFC 3339 (the schema's ``format: date-time``; upper-case ``T`` and ``Z``)
#: with its offset, in the years 2000-2099 as written: nothing before the oldest statute the API tracks,
#: nothing absurdly late, no naive time or bare date left to a guessed time zone.
DATETIME = re.compile(r"20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
                      r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])")
_FORM = "an RFC 3339 date-time with its offset (e.g. 2026-01-31T09:30:00Z) in the years 2000-2099"


class BoundedDateTime(serializers.DateTimeField):
    """A date-time matching :data:`DATETIME` (the OpenAPI schema carries the same pattern)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["help_text"] = f"{kwargs.get('help_text', '')} Must be {_FORM}.".strip()
        super().__init__(**kwargs)
        self.error_messages["invalid"] = f"must be {_FORM}"

    def to_internal_value(self, value: Any) -> dt.datetime:
        if not isinstance(value, str) or not DATETIME.fullmatch(value):
            self.fail("invalid")
        return super().to_internal_value(value)  # also refuses a day the month does not have


NOTE = {"max_length": 2000, "required": False, "allow_blank": True, "default": ""}
#: Named in SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]: inputs and outputs share these enums.
REFUSAL_REASONS = enum_choices(RefusalReason)
REQUESTER_TYPES = enum_choices(RequesterType)


# --- errors (documentation only: api.errors writes them) ---------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `invalid_transition`.")
    message = serializers.CharField(help_text="For people; never contains identifiers.")
    field = serializers.CharField(allow_null=True, help_text="Dotted path of the offending input, or null.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# --- inputs -------------------------------------------------------------------------------------


class MrnIn(serializers.Serializer):
    system = Text(max_length=255, help_text="Identifier system URI of the MRN.")
    value = Text(max_length=64)


class SubjectIn(serializers.Serializer):
    """Exactly one of ``institution``, ``mrn`` or ``study_uid`` (plus ``section`` for a report section)."""

    institution = Text(max_length=64, required=False, help_text="Institution code.")
    mrn = MrnIn(required=False, help_text="A patient: medical record number within its system.")
    study_uid = Text(max_length=128, required=False,
                     help_text="A study: DICOM StudyInstanceUID (bare or urn:oid:).")
    section = Choice(enum_choices(SectionName), required=False,
                     help_text="A section of the study given by study_uid.")

    def validate(self, attrs: dict[str, Any]) -> SubjectIdentifiers:
        given = [name for name in ("institution", "mrn", "study_uid") if name in attrs]
        if len(given) != 1:
            raise serializers.ValidationError("give exactly one of institution, mrn or study_uid",
                                              code="subject_ambiguous")
        if "section" in attrs and "study_uid" not in attrs:
            raise serializers.ValidationError(
                {"section": "a section is named within a study: give study_uid"},
                code="section_without_study")
        mrn = attrs.get("mrn") or {}
        return SubjectIdentifiers(institution=attrs.get("institution"), mrn_system=mrn.get("system"),
                                  mrn_value=mrn.get("value"), study_uid=attrs.get("study_uid"),
                                  section=attrs.get("section"))


class RequesterIn(serializers.Serializer):
    type = Choice(REQUESTER_TYPES)
    reference = Text(max_length=200, required=False, allow_blank=True, default="",
                     help_text="Your case number; stored only as a keyed hash.")


class ForgetRequestCreateIn(serializers.Serializer):
    subject = SubjectIn()
    regulation = Choice(enum_choices(Regulation))
    legal_basis = Choice(enum_choices(LegalBasis))
    hipaa_covered = serializers.BooleanField(default=False, help_text=(
        "HIPAA grants no erasure right: such requests use institution_policy or consent_withdrawal."))
    requester = RequesterIn()
    received_at = BoundedDateTime(required=False, help_text=(
        f"When the request reached you (default: now); at most {CLOCK_SKEW.seconds // 60} minutes ahead of "
        "the server's clock."))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of ``forget_request_create``."""
        return {"subject": attrs["subject"], "regulation": Regulation(attrs["regulation"]),
                "legal_basis": LegalBasis(attrs["legal_basis"]), "hipaa_covered": attrs["hipaa_covered"],
                "requester_type": RequesterType(attrs["requester"]["type"]),
                "requester_reference": attrs["requester"]["reference"],
                "received_at": attrs.get("received_at")}


class NoteIn(serializers.Serializer):
    note = Text(**NOTE)


class RefuseIn(serializers.Serializer):
    reason = Choice(REFUSAL_REASONS)
    text = Text(max_length=2000, min_length=1, help_text="Explanation given to the requester (not blank).")
    partial = serializers.BooleanField(default=False,
                                       help_text="Refuse part; the rest proceeds to unlearning.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {**attrs, "reason": RefusalReason(attrs["reason"])}


class ExtendIn(serializers.Serializer):
    months = serializers.IntegerField(min_value=1, max_value=12, required=False, help_text="GDPR: 1 or 2.")
    days = serializers.IntegerField(min_value=1, max_value=365, required=False,
                                    help_text="CCPA (up to 45) and policy-based regulations.")
    notice_sent_at = BoundedDateTime(help_text="When the requester was told of the extension.")
    note = Text(**NOTE)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of ``forget_request_extend`` (less the request and actor)."""
        given = [unit for unit in ExtensionUnit if unit.value in attrs]
        if len(given) != 1:
            raise serializers.ValidationError("give exactly one of months or days",
                                              code="extension_ambiguous")
        unit = given[0]
        return {"length": attrs[unit.value], "unit": unit, "notice_sent_at": attrs["notice_sent_at"],
                "note": attrs["note"]}


class ForgetRequestFilterIn(serializers.Serializer):
    status = Choice(enum_choices(Status), required=False)
    institution = Text(max_length=64, required=False, help_text="Institution code.")
    regulation = Choice(enum_choices(Regulation), required=False)
    overdue = serializers.BooleanField(required=False)  # absent: both; empty: refused


class AuditEventFilterIn(serializers.Serializer):
    action = Choice(enum_choices(AuditAction), required=False)
    object_type = Text(max_length=64, required=False)
    object_id = Text(max_length=64, required=False)
    subject_hash = Text(max_length=64, required=False)
    since = BoundedDateTime(required=False)
    until = BoundedDateTime(required=False)


# --- outputs ------------------------------------------------------------------------------------


class InstitutionOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    mrn_system = serializers.CharField()


class SubjectOut(serializers.Serializer):
    """A hierarchy node, named by its keyed hash (never by MRN or UID)."""

    level = Choice(enum_choices(Level))
    subject_hash = serializers.CharField()
    label = serializers.CharField(help_text="Level and short keyed hash, for people.")
    institution = serializers.CharField(source="institution.code", help_text="Institution code.")


class ExtensionOut(serializers.Serializer):
    length = serializers.IntegerField()
    unit = Choice(enum_choices(ExtensionUnit))
    notice_sent_at = serializers.DateTimeField()
    note = serializers.CharField()


class ForgetRequestOut(serializers.ModelSerializer):
    # The fields declare the shape for the OpenAPI schema (a docstring would become its description);
    # the JSON itself is written by compliance.api.representation.forget_request_json, which list
    # pages call on their rows directly.

    institution = serializers.CharField(source="institution.code")
    subject = SubjectOut(read_only=True)
    extension = ExtensionOut(read_only=True, allow_null=True)
    days_left = serializers.IntegerField(read_only=True, allow_null=True)
    overdue = serializers.BooleanField(read_only=True)
    related = serializers.ListField(child=serializers.UUIDField(), read_only=True)
    related_count = serializers.IntegerField(read_only=True, help_text=(
        "All linked requests (duplicates of one subject are linked through the oldest one)."))

    class Meta:
        model = ForgetRequest
        fields = ["id", "status", "level", "institution", "subject", "regulation", "legal_basis",
                  "hipaa_covered", "requester_type", "requester_hash", "received_at", "base_deadline",
                  "deadline", "extension", "days_left", "overdue", "submitted_by", "decided_by",
                  "decided_at", "reason_code", "decision_note", "scope_summary", "related", "related_count",
                  "status_changed_at", "created_at"]

    def to_representation(self, instance: ForgetRequest) -> dict[str, Any]:
        return forget_request_json(forget_request_row(instance), timezone.localdate())


class AuditEventOut(serializers.Serializer):
    seq = serializers.IntegerField()
    occurred_at = serializers.DateTimeField()
    actor = serializers.CharField()
    action = serializers.CharField()
    object_type = serializers.CharField()
    object_id = serializers.CharField()
    subject_hash = serializers.CharField()
    data = serializers.JSONField()
    hash = serializers.CharField()
