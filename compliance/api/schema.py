"""OpenAPI pieces shared by the views: documented error responses, request examples, and the input
rules the serializers enforce beyond field types, stated in the schema where OpenAPI 3.0 can say them
(so a client generated from it, or a fuzzer, knows them before a 400 or 422 tells it)."""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiExample, OpenApiResponse

from ..legal import HIPAA_REGULATIONS, LEGAL_BASES
from .errors import error_body
from .serializers import DATETIME, BoundedDateTime, ErrorSerializer, Text

_ERRORS = {
    400: ("Malformed input: bad JSON, missing or invalid fields.", "required",
          "This field is required.", "regulation"),
    401: ("No credentials, or an invalid or revoked API key.", "not_authenticated",
          "Authentication credentials were not provided.", None),
    403: ("Authenticated, but the role does not allow this (or the four-eyes rule).", "permission_denied",
          "You do not have permission to perform this action.", None),
    404: ("No such object, or it belongs to an institution the caller is not scoped to.",
          "request_not_found", "no forget request has this id", "id"),
    409: ("The request's current status does not allow this.", "invalid_transition",
          "a request in status 'received' cannot become 'approved' (allowed from: in_review)", "status"),
    411: ("The body was sent chunked; send it with a Content-Length.", "length_required",
          "send the body with a Content-Length header (chunked bodies are not accepted)", None),
    413: ("The body exceeds the size limit.", "request_too_large", "the request body exceeds 262144 bytes",
          None),
    415: ("The body is not application/json.", "unsupported_media_type",
          'Unsupported media type "text/plain" in request.', None),
    422: ("Well-formed, but breaks a rule (legal basis, deadline extension, idempotency key reuse...).",
          "legal_basis_mismatch", "legal basis 'ccpa_1798_105' does not apply under gdpr", "legal_basis"),
    429: ("Too many requests; retry after the number of seconds in Retry-After.", "throttled",
          "Request was throttled. Expected available in 12 seconds.", None),
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Documented error responses, all in the one shape ``{"error": {code, message, field}}``."""
    documented = {}
    for code in statuses:
        description, error_code, message, field = _ERRORS[code]
        documented[code] = OpenApiResponse(ErrorSerializer, description=description, examples=[
            OpenApiExample(error_code, value=error_body(error_code, message, field), response_only=True,
                           status_codes=[str(code)])])
    return documented


SUBJECT_EXAMPLES = [
    OpenApiExample("patient", value={"mrn": {"system": "urn:oblivio:institution:H1:mrn", "value": "MRN0001"}},
                   request_only=True),
    OpenApiExample("study", value={"study_uid": "1.2.826.0.1.3680043.10.999.1"}, request_only=True),
    OpenApiExample("section", value={"study_uid": "1.2.826.0.1.3680043.10.999.1", "section": "FINDINGS"},
                   request_only=True),
    OpenApiExample("institution", value={"institution": "H1"}, request_only=True),
]

CREATE_EXAMPLES = [
    OpenApiExample("GDPR erasure of a patient", request_only=True, value={
        "subject": {"mrn": {"system": "urn:oblivio:institution:H1:mrn", "value": "MRN0001"}},
        "regulation": "gdpr", "legal_basis": "gdpr_17_1_b",
        "requester": {"type": "data_subject", "reference": "case-2026-0042"},
        "received_at": "2026-01-31T09:30:00Z"}),
    OpenApiExample("HIPAA-covered request (recorded under institution policy)", request_only=True, value={
        "subject": {"study_uid": "1.2.826.0.1.3680043.10.999.1"}, "regulation": "institution_policy",
        "legal_basis": "consent_withdrawn", "hipaa_covered": True,
        "requester": {"type": "institution", "reference": ""}}),
]

REFUSE_EXAMPLES = [
    OpenApiExample("research exemption", request_only=True, value={
        "reason": "gdpr_17_3_d", "partial": True,
        "text": "Report text is retained in the approved research archive; the model is still unlearned."}),
]

EXTEND_EXAMPLES = [
    OpenApiExample("GDPR: two further months", request_only=True,
                   value={"months": 2, "notice_sent_at": "2026-02-10T12:00:00Z", "note": "complex scope"}),
    OpenApiExample("CCPA: 45 more days", request_only=True,
                   value={"days": 45, "notice_sent_at": "2026-02-10T12:00:00Z"}),
]


# --- input rules in the schema ------------------------------------------------------------------

def _character_class(characters: list[str]) -> str:
    """A regex character class body naming ``characters`` as ``\\uXXXX`` ranges (ECMA and Python read it)."""
    codes = sorted(map(ord, characters))
    runs: list[list[int]] = []
    for code in codes:
        if runs and code == runs[-1][1] + 1:
            runs[-1][1] = code
        else:
            runs.append([code, code])
    return "".join(f"\\u{low:04x}" + (f"-\\u{high:04x}" if high > low else "") for low, high in runs)


#: What DRF trims (``str.strip``: Python's whitespace, which is not ECMA's ``\s``) and NUL, refused.
_TRIMMED = _character_class([chr(code) for code in range(0x10000) if chr(code).isspace()])
#: Text without NUL; where blank is not allowed, with a character that survives trimming.
#: One or more characters either way: drf-spectacular adds the empty string as a branch of its own
#: where blank is allowed.
ANY_TEXT = r"^[^\u0000]+$"
NOT_BLANK = rf"^[^\u0000]*[^\u0000{_TRIMMED}][^\u0000]*$"


class TextInSchema(OpenApiSerializerFieldExtension):
    """``Text`` inputs: a string without NUL, not only whitespace unless blank is allowed (a field
    with its own pattern keeps it)."""

    target_class = Text

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if not any(isinstance(validator, RegexValidator) for validator in self.target.validators):
            schema["pattern"] = ANY_TEXT if self.target.allow_blank else NOT_BLANK
        return schema


class DateTimeInSchema(OpenApiSerializerFieldExtension):
    """``BoundedDateTime``: its pattern (RFC 3339 with an offset, years 2000-2099)."""

    target_class = BoundedDateTime

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {**schema, "pattern": f"^{DATETIME.pattern}$"}


def _subject_rule() -> list[dict[str, Any]]:
    """``SubjectIn.validate``: exactly one of institution, mrn or study_uid; section only with study_uid."""
    def alone(name: str, *excluded: str) -> dict[str, Any]:
        return {"required": [name], "not": {"anyOf": [{"required": [other]} for other in excluded]}}

    return [alone("institution", "mrn", "study_uid", "section"),
            alone("mrn", "institution", "study_uid", "section"),
            alone("study_uid", "institution", "mrn")]


def _legal_ground_rule() -> list[dict[str, Any]]:
    """``check_legal_ground``: each regulation admits its own legal bases, and only some regulations
    record HIPAA-covered requests (one alternative per regulation, from the same tables)."""
    no_hipaa = {"hipaa_covered": {"enum": [False]}}
    return [{"properties": {"regulation": {"enum": [str(regulation)]},
                            "legal_basis": {"enum": sorted(map(str, bases))},
                            **({} if regulation in HIPAA_REGULATIONS else no_hipaa)}}
            for regulation, bases in LEGAL_BASES.items()]


def _extension_rule() -> list[dict[str, Any]]:
    """``ExtendIn.validate``: exactly one of months or days."""
    return [{"required": ["months"]}, {"required": ["days"]}]


#: Component -> its cross-field rule. A body under such a rule must be sent ({} breaks it).
_RULES = {"SubjectIn": _subject_rule, "ForgetRequestCreateIn": _legal_ground_rule,
          "ExtendIn": _extension_rule}


def input_rules(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """Postprocessing hook (after drf-spectacular's enum hook, which would name these inline enums):
    the cross-field rules of :data:`_RULES` as ``oneOf`` alternatives, their bodies required."""
    schemas = result["components"]["schemas"]
    for name, rule in _RULES.items():
        schemas[name]["oneOf"] = rule()
    bodies = [operation["requestBody"] for operations in result["paths"].values()
              for operation in operations.values() if "requestBody" in operation]
    for body in bodies:
        names = {media["schema"].get("$ref", "").rsplit("/", 1)[-1] for media in body["content"].values()}
        if names & set(_RULES):
            body["required"] = True
    return result
