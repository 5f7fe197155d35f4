"""Import a FHIR R4 Bundle into the hierarchy (``fhir.resources.R4B``: its default module is R5).

Mapping (references must resolve inside the bundle, by ``fullUrl`` or ``Type/id``):

- Organization → Institution: code = first identifier value, else the resource id.
- Patient → Patient: the identifier of type MR (``system|value``, hashed); ``managingOrganization``
  is its institution, whose MRN system becomes (or must equal) that identifier system.
- ImagingStudy → Study: identifier with system ``urn:dicom:uid`` (``urn:oid:`` prefix optional),
  ``subject`` its patient, modality from ``modality`` or the first series.
- DiagnosticReport → Sections of the studies in ``imagingStudy`` (else the studies sharing a
  ``basedOn`` order): ``conclusion`` → IMPRESSION; headings (``FINDINGS:``...) in text/plain
  ``presentedForm`` attachments. Composition → Sections named by ``section.title`` / LOINC code, for
  the studies or reports its sections or events reference.

Validation errors name the entry and field, never an identifier value. Other resource types are
skipped. The import is idempotent and all-or-nothing; one audit event records the counts.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import pydantic
import rfc8785
from django.db import transaction
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource

from core.audit import AuditAction, audit_append
from core.principals import Principal
from mllm.data.schema import Section as SectionName

from .identifiers import mrn_hash, normalize_uid, study_uid_hash
from .services import NodeConflict, NodePlan, institutions_ensure, nodes_ensure

DICOM_UID_SYSTEM = "urn:dicom:uid"
MR_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_SECTION_WORDS = {
    "FINDINGS": SectionName.FINDINGS, "FINDING": SectionName.FINDINGS,
    "IMPRESSION": SectionName.IMPRESSION, "CONCLUSION": SectionName.IMPRESSION,
    "INDICATION": SectionName.INDICATION, "INDICATIONS": SectionName.INDICATION,
    "CLINICAL INDICATION": SectionName.INDICATION, "REASON FOR STUDY": SectionName.INDICATION,
    "EXAMINATION": SectionName.EXAMINATION, "EXAM": SectionName.EXAMINATION,
    "PROCEDURE": SectionName.EXAMINATION, "LAB": SectionName.LAB, "LABS": SectionName.LAB,
    "LABORATORY": SectionName.LAB, "MEDICATION": SectionName.MEDICATION,
    "MEDICATIONS": SectionName.MEDICATION, "RECORD": SectionName.RECORD,
}
_SECTION_LOINC = {"18782-3": SectionName.FINDINGS, "59776-5": SectionName.FINDINGS,
                  "19005-8": SectionName.IMPRESSION, "18785-6": SectionName.INDICATION,
                  "55111-9": SectionName.EXAMINATION, "30954-2": SectionName.LAB,
                  "10160-0": SectionName.MEDICATION}
_HEADING = re.compile(r"^\s*([A-Za-z][A-Za-z ]{1,30}?)\s*:", re.MULTILINE)
_CONFLICT_FIELDS = {"institution": "Organization.identifier", "mrn_system": "Patient.identifier",
                    "patient": "Patient.managingOrganization", "study": "ImagingStudy.subject"}


class FhirImportError(ValueError):
    """A bundle cannot be imported. Names the 0-based entry and the field; never identifier values."""

    def __init__(self, message: str, *, entry: int | None = None, field: str | None = None) -> None:
        self.entry, self.field = entry, field
        where = (f"entry[{entry}] " if entry is not None else "Bundle ") + (f"{field}: " if field else "")
        super().__init__(where + message)


@dataclass(frozen=True)
class FhirImportResult:
    """``created`` is False when the bundle changed nothing (already imported)."""

    bundle_sha256: str
    created: bool
    counts: dict[str, int]


def _parse(bundle: dict[str, Any] | str | bytes) -> tuple[Bundle, str]:
    try:
        data = json.loads(bundle) if isinstance(bundle, str | bytes) else bundle
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FhirImportError(f"is not valid JSON ({getattr(exc, 'msg', 'bad encoding')})") from None
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise FhirImportError("expected a JSON object with resourceType 'Bundle'", field="resourceType")
    entries = data.get("entry") or []
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is not None and not _is_resource_type(resource):
            raise FhirImportError("unknown or missing resourceType", entry=index,
                                  field="resource.resourceType")
    try:
        parsed = Bundle.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _validation_error(exc, data) from None
    except (KeyError, TypeError, ValueError):  # fhir.resources fails this way on e.g. unknown contained types
        raise FhirImportError("is not a valid FHIR R4 Bundle (unknown resource type?)") from None
    return parsed, hashlib.sha256(rfc8785.dumps(data)).hexdigest()


def _is_resource_type(resource: object) -> bool:
    name = resource.get("resourceType") if isinstance(resource, dict) else None
    try:
        return isinstance(name, str) and issubclass(get_fhir_model_class(name), Resource)
    except ValueError:
        return False


def _validation_error(exc: pydantic.ValidationError, data: dict[str, Any]) -> FhirImportError:
    errors = exc.errors()
    first, loc = errors[0], errors[0]["loc"]
    entry, prefix, rest = None, "Bundle", loc
    if len(loc) >= 3 and loc[0] == "entry" and isinstance(loc[1], int) and loc[2] == "resource":
        entry, prefix, rest = loc[1], data["entry"][loc[1]]["resource"]["resourceType"], loc[3:]
    field = prefix + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in rest)
    message, value = first["msg"], first.get("input")
    if isinstance(value, str) and value:
        message = message.replace(value, "<redacted>")
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problems)"
    return FhirImportError(message, entry=entry, field=field)


class _Bundle:
    """The parsed entries, indexed for reference resolution."""

    def __init__(self, bundle: Bundle) -> None:
        self.resources = [entry.resource for entry in bundle.entry or []]
        self.index: dict[str, int] = {}
        self.by_identifier: dict[tuple[str, str, str], int | None] = {}  # None: more than one entry
        for number, entry in enumerate(bundle.entry or []):
            keys = [entry.fullUrl] if entry.fullUrl else []
            if entry.resource is not None and entry.resource.id:
                keys.append(f"{entry.resource.get_resource_type()}/{entry.resource.id}")
            for key in keys:
                if self.index.setdefault(key, number) != number:
                    raise FhirImportError("duplicate fullUrl or resource id", entry=number, field="fullUrl")
            for system, value in _identifiers(entry.resource):
                key3 = (entry.resource.get_resource_type(), system, value)
                self.by_identifier[key3] = number if key3 not in self.by_identifier else None

    def of_type(self, name: str) -> list[tuple[int, Any]]:
        return [(number, resource) for number, resource in enumerate(self.resources)
                if resource is not None and resource.get_resource_type() == name]

    def lookup(self, reference: Any, expected: str | None = None) -> int | None:
        """The entry a ``Reference`` points to: by fullUrl, ``Type/id`` or an absolute URL ending so,
        or else by its logical ``identifier`` (system and value) on a resource of type ``expected``
        (or of the reference's ``type``) — unless two entries carry that identifier."""
        target = getattr(reference, "reference", None) or ""
        if target:
            number = self.index.get(target, self.index.get("/".join(target.split("/")[-2:])))
        else:
            identifier = getattr(reference, "identifier", None)
            kind = expected or getattr(reference, "type", None)
            number = (self.by_identifier.get((kind, identifier.system, identifier.value))
                      if kind and identifier is not None and identifier.system and identifier.value else None)
        return None if number is None or self.resources[number] is None else number

    def key(self, reference: Any) -> int | str | None:
        """What a reference names: its entry if it is in the bundle, else the reference text."""
        number = self.lookup(reference)
        return number if number is not None else getattr(reference, "reference", None)

    def resolve(self, reference: Any, *, entry: int, field: str, expected: str) -> int:
        """The entry a ``Reference`` points to; it must be a resource of type ``expected``."""
        if not getattr(reference, "reference", None) and not getattr(reference, "identifier", None):
            raise FhirImportError(f"must reference a {expected} in this bundle", entry=entry, field=field)
        number = self.lookup(reference, expected)
        if number is None or self.resources[number].get_resource_type() != expected:
            raise FhirImportError(f"does not resolve to a {expected} in this bundle", entry=entry,
                                  field=field)
        return number


def _identifiers(resource: Any) -> list[tuple[str, str]]:
    """(system, value) of a resource's identifiers (a list on most resources, single on a few)."""
    found = getattr(resource, "identifier", None) if resource is not None else None
    found = found if isinstance(found, list) else [found] if found is not None else []
    return [(i.system, i.value) for i in found if i.system and i.value]


def _mrn(patient: Any, entry: int) -> tuple[str, str]:
    for identifier in patient.identifier or []:
        codings = identifier.type.coding if identifier.type and identifier.type.coding else []
        is_mr = any(c.code == "MR" and c.system in (None, MR_TYPE_SYSTEM) for c in codings)
        if is_mr and identifier.system and identifier.value:
            return identifier.system, identifier.value
    raise FhirImportError("needs a medical record number: an identifier of type MR with system and value",
                          entry=entry, field="Patient.identifier")


def _study_uid(study: Any, entry: int) -> str:
    for identifier in study.identifier or []:
        if identifier.system == DICOM_UID_SYSTEM and identifier.value:
            uid = normalize_uid(identifier.value)
            if len(uid) > 64 or not _UID.match(uid):
                raise FhirImportError("is not a DICOM UID", entry=entry, field="ImagingStudy.identifier")
            return uid
    raise FhirImportError(f"needs an identifier with system {DICOM_UID_SYSTEM}", entry=entry,
                          field="ImagingStudy.identifier")


def _modality(study: Any, entry: int) -> str:
    codings = list(study.modality or []) + [s.modality for s in study.series or [] if s.modality]
    code = next((c.code for c in codings if c.code), "")
    if len(code) > 16:
        raise FhirImportError("is longer than 16 characters", entry=entry, field="ImagingStudy.modality")
    return code


def _section_name(title: str | None, code: Any) -> SectionName | None:
    for coding in (code.coding or []) if code else []:
        if coding.code in _SECTION_LOINC:
            return _SECTION_LOINC[coding.code]
    words = " ".join(re.sub(r"[^A-Za-z ]", " ", title or (code.text if code else "") or "").upper().split())
    return _SECTION_WORDS.get(words)


def _report_sections(report: Any) -> set[SectionName]:
    names = {SectionName.IMPRESSION} if report.conclusion or report.conclusionCode else set()
    for form in report.presentedForm or []:
        if form.data and (form.contentType or "").startswith("text/plain"):
            text = form.data.decode("utf-8", errors="replace")  # fhir.resources decodes the base64
            names |= {name for word in _HEADING.findall(text) if (name := _section_name(word, None))}
    return names


def _plan(bundle: _Bundle) -> tuple[NodePlan, dict[str, int]]:
    plan = NodePlan()
    codes: dict[int, str] = {}
    for number, org in bundle.of_type("Organization"):
        code = next((i.value for i in org.identifier or [] if i.value), None) or org.id
        if not code or len(code) > 64:
            raise FhirImportError("needs an identifier value or id of at most 64 characters", entry=number,
                                  field="Organization.identifier")
        codes[number] = code
        plan.institutions[code] = ((org.name or code)[:200], None, number)
    patients: dict[int, str] = {}
    for number, patient in bundle.of_type("Patient"):
        system, value = _mrn(patient, number)
        org = bundle.resolve(patient.managingOrganization, entry=number, field="Patient.managingOrganization",
                             expected="Organization")
        name, known_system, origin = plan.institutions[codes[org]]
        if len(system) > 255:
            raise FhirImportError("MRN system is longer than 255 characters", entry=number,
                                  field="Patient.identifier")
        if known_system not in (None, system):
            raise FhirImportError("MRN system differs from that of other patients of this organization",
                                  entry=number, field="Patient.identifier")
        plan.institutions[codes[org]] = (name, system, number if known_system is None else origin)
        patients[number] = mrn_hash(system, value)
        plan.add_patient(patients[number], codes[org], number)
    studies: dict[int, str] = {}
    for number, study in bundle.of_type("ImagingStudy"):
        uid = study_uid_hash(_study_uid(study, number))
        subject = bundle.resolve(study.subject, entry=number, field="ImagingStudy.subject",
                                 expected="Patient")
        plan.add_study(uid, patients[subject], _modality(study, number), number)
        studies[number] = uid
    reports = bundle.of_type("DiagnosticReport")
    report_studies = {number: _report_studies(bundle, number, report, studies)
                      for number, report in reports}
    for number, report in reports:
        for uid in report_studies[number]:
            for name in _report_sections(report):
                plan.add_section(uid, name.value, number)
    compositions = bundle.of_type("Composition")
    for number, composition in compositions:
        _composition_sections(bundle, plan, number, composition, studies, report_studies)
    counts = {"entries": len(bundle.resources), "organizations": len(codes), "patients": len(patients),
              "imaging_studies": len(studies), "reports": len(reports), "compositions": len(compositions)}
    return plan, counts


def _report_studies(bundle: _Bundle, number: int, report: Any, studies: dict[int, str]) -> list[str]:
    found = [bundle.resolve(ref, entry=number, field=f"DiagnosticReport.imagingStudy[{i}]",
                            expected="ImagingStudy") for i, ref in enumerate(report.imagingStudy or [])]
    if not found and report.basedOn:
        orders = {bundle.key(ref) for ref in report.basedOn} - {None}
        found = [n for n, study in bundle.of_type("ImagingStudy")
                 if orders & {bundle.key(ref) for ref in study.basedOn or []}]
    if not found:
        raise FhirImportError("is linked to no ImagingStudy of this bundle (imagingStudy, or a basedOn order "
                              "shared with one)", entry=number, field="DiagnosticReport.imagingStudy")
    if report.subject is not None:
        subject = bundle.resolve(report.subject, entry=number, field="DiagnosticReport.subject",
                                 expected="Patient")
        study_patients = {bundle.resolve(bundle.resources[n].subject, entry=n, field="ImagingStudy.subject",
                                         expected="Patient") for n in found}
        if study_patients != {subject}:
            raise FhirImportError("is not the patient of the linked ImagingStudy", entry=number,
                                  field="DiagnosticReport.subject")
    return [studies[n] for n in found]


def _composition_sections(bundle: _Bundle, plan: NodePlan, number: int, composition: Any,
                          studies: dict[int, str], report_studies: dict[int, list[str]]) -> None:
    def linked(references: list[Any]) -> set[str]:
        uids: set[str] = set()
        for ref in references:
            target = bundle.lookup(ref)
            uids.update([studies[target]] if target in studies else report_studies.get(target, []))
        return uids

    events = linked([ref for event in composition.event or [] for ref in event.detail or []])
    for section in composition.section or []:
        name = _section_name(section.title, section.code)
        if name is None:
            continue
        uids = linked(section.entry or []) or events
        if not uids:
            raise FhirImportError("references no ImagingStudy or DiagnosticReport of this bundle",
                                  entry=number, field="Composition.section.entry")
        for uid in uids:
            plan.add_section(uid, name.value, number)


def fhir_bundle_import(*, bundle: dict[str, Any] | str | bytes, actor: Principal) -> FhirImportResult:
    """Validate and import a FHIR R4 Bundle; raise :class:`FhirImportError` naming entry and field."""
    parsed, digest = _parse(bundle)
    try:
        plan, counts = _plan(_Bundle(parsed))
        with transaction.atomic():
            institutions, institutions_created = institutions_ensure(plan)
            ids = nodes_ensure(plan, institutions=institutions)
            counts = {**counts, "institutions_created": institutions_created, **ids.counts}
            created = institutions_created > 0 or any(ids.counts.values())
            if created:
                audit_append(actor=actor, action=AuditAction.FHIR_BUNDLE_IMPORTED, object_type="fhir_bundle",
                             object_id=digest, data=counts)
    except NodeConflict as exc:
        raise FhirImportError(exc.message, entry=exc.origin, field=_CONFLICT_FIELDS[exc.kind]) from None
    return FhirImportResult(bundle_sha256=digest, created=created, counts=counts)
