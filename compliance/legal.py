"""The legal vocabulary of a forget request: regulations, grounds, requesters, refusal reasons.

Values are stable machine codes (they appear in the API, the audit chain and webhooks). HIPAA gives
no right to erasure, so a HIPAA-covered request is recorded under institution policy or consent
withdrawal, with ``hipaa_covered`` set.
"""

from __future__ import annotations

import enum

from .errors import Invalid


class Regulation(enum.StrEnum):
    GDPR = "gdpr"
    CCPA = "ccpa"
    DATA_USE_AGREEMENT = "data_use_agreement"
    CONSENT_WITHDRAWAL = "consent_withdrawal"  # IRB protocol / research consent withdrawn
    INSTITUTION_POLICY = "institution_policy"


#: What a HIPAA-covered request may be recorded as (HIPAA itself grants no erasure right).
HIPAA_REGULATIONS = frozenset({Regulation.INSTITUTION_POLICY, Regulation.CONSENT_WITHDRAWAL})


class LegalBasis(enum.StrEnum):
    GDPR_17_1_A = "gdpr_17_1_a"  # no longer necessary for the purposes
    GDPR_17_1_B = "gdpr_17_1_b"  # consent withdrawn, no other legal ground
    GDPR_17_1_C = "gdpr_17_1_c"  # objection under Art. 21
    GDPR_17_1_D = "gdpr_17_1_d"  # unlawfully processed
    GDPR_17_1_E = "gdpr_17_1_e"  # erasure required by a legal obligation
    GDPR_17_1_F = "gdpr_17_1_f"  # collected from a child for information-society services
    CCPA_1798_105 = "ccpa_1798_105"  # consumer's right to delete
    DUA_TERMS = "dua_terms"  # the data-use agreement requires deletion
    CONSENT_WITHDRAWN = "consent_withdrawn"  # participant / patient withdrew consent
    POLICY = "institution_policy"  # the institution's own retention or erasure policy


#: The grounds each regulation admits.
LEGAL_BASES: dict[Regulation, frozenset[LegalBasis]] = {
    Regulation.GDPR: frozenset(basis for basis in LegalBasis if basis.startswith("gdpr_")),
    Regulation.CCPA: frozenset({LegalBasis.CCPA_1798_105}),
    Regulation.DATA_USE_AGREEMENT: frozenset({LegalBasis.DUA_TERMS}),
    Regulation.CONSENT_WITHDRAWAL: frozenset({LegalBasis.CONSENT_WITHDRAWN}),
    Regulation.INSTITUTION_POLICY: frozenset({LegalBasis.POLICY, LegalBasis.CONSENT_WITHDRAWN}),
}


class RequesterType(enum.StrEnum):
    DATA_SUBJECT = "data_subject"
    AUTHORISED_AGENT = "authorised_agent"
    INSTITUTION = "institution"
    DPO = "dpo"


class RefusalReason(enum.StrEnum):
    GDPR_17_3_A = "gdpr_17_3_a"  # freedom of expression and information
    GDPR_17_3_B = "gdpr_17_3_b"  # legal obligation / public task
    GDPR_17_3_C = "gdpr_17_3_c"  # public health (Art. 9(2)(h), (i))
    GDPR_17_3_D = "gdpr_17_3_d"  # scientific research / archiving (Art. 89(1))
    GDPR_17_3_E = "gdpr_17_3_e"  # legal claims
    IDENTITY_NOT_VERIFIED = "identity_not_verified"
    NO_DATA_FOUND = "no_data_found"
    MANIFESTLY_UNFOUNDED = "manifestly_unfounded"  # GDPR Art. 12(5)
    DUPLICATE_REQUEST = "duplicate_request"
    LEGAL_HOLD = "legal_hold"
    OTHER = "other"


def check_legal_ground(regulation: Regulation, legal_basis: LegalBasis, hipaa_covered: bool) -> None:
    """:class:`Invalid` unless the basis belongs to the regulation and HIPAA cases use a policy ground."""
    if legal_basis not in LEGAL_BASES[regulation]:
        allowed = ", ".join(sorted(LEGAL_BASES[regulation]))
        raise Invalid(f"legal basis '{legal_basis}' does not apply under {regulation} "
                      f"(use one of: {allowed})", field="legal_basis", code="legal_basis_mismatch")
    if hipaa_covered and regulation not in HIPAA_REGULATIONS:
        raise Invalid("HIPAA grants no right to erasure: record a HIPAA-covered request as "
                      "institution_policy or consent_withdrawal", field="regulation",
                      code="hipaa_no_erasure_right")


def check_refusal_reason(reason: RefusalReason, regulation: Regulation) -> None:
    """Art. 17(3) exceptions exist only under GDPR; the other reasons apply to every regulation."""
    if regulation != Regulation.GDPR and reason.startswith("gdpr_"):
        raise Invalid(f"reason '{reason}' applies only to GDPR requests", field="reason",
                      code="reason_not_applicable")
