"""OpenAPI pieces shared by the views: documented error responses and request examples."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse

from .errors import error_body
from .serializers import ErrorSerializer

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
