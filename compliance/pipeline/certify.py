"""Issuing certificates (signed statement + PDF) for certified requests, and the keys that check them.

Certificates are signed with the active key of the ``core.signing`` registry and name it by id, so
certificates signed before a rotation keep verifying against the retired public key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.utils import timezone

from core import signing
from core.audit import AuditAction, audit_append
from core.models import AuditHead

from ..attestation import (
    NOT_TRAINED,
    NOT_TRAINED_REPORT,
    CertificateCheck,
    CertificateFacts,
    ModelRef,
    certificate_bundle,
    certificate_check,
    json_digest,
    load_public_pem,
)
from ..models import Certificate, ForgetRequest, ModelVersion, UnlearningJob, VerificationRecord
from . import PIPELINE
from .pdf import certificate_pdf


def trusted_public_keys() -> dict[str, Ed25519PublicKey]:
    """Every public key a certificate of this deployment may be signed with (active and retired)."""
    return {key_id: load_public_pem(pem) for key_id, pem in signing.public_keys().items()}


def public_key_list() -> list[dict[str, Any]]:
    """The public keys served to auditors (id, PEM, whether new certificates are signed with it)."""
    active = signing.active_key_id()
    return [{"key_id": key_id, "algorithm": "ed25519", "public_key_pem": pem, "current": key_id == active}
            for key_id, pem in signing.public_keys().items()]


def _ref(version: ModelVersion) -> ModelRef:
    return ModelRef(version_id=str(version.pk), artifact_digest=version.artifact_digest,
                    base_digest=version.base_digest or None)


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment else None


def _audit_head() -> dict[str, Any]:
    head = AuditHead.objects.filter(pk=1).first()
    return {"seq": head.seq if head else 0, "hash": head.hash if head else ""}


def _guard(request: ForgetRequest) -> dict[str, Any]:
    guard = getattr(request, "guard_rule", None)
    return {"suppression_from": _iso(guard.activated_at) if guard else None,
            "stays_on_after_certification": bool(guard and guard.stays_on),
            "note": "inference-time refusal is suppression, not unlearning"}


def certificate_facts(*, job: UnlearningJob, request: ForgetRequest, verification: VerificationRecord,
                      covered_by: Sequence[Certificate] = (),
                      forget: list[str] | None = None) -> CertificateFacts:
    """What the certificate of ``request`` states (keyed hashes and record counts only).

    ``covered_by``: the certificates of earlier requests whose jobs together already removed
    ``forget``, every record of this one (``job`` is the newest of those jobs; its verification and
    models are the ones this certificate names)."""
    target = {"forget": forget} if covered_by else job.targets[str(request.pk)]
    candidate = verification.candidate
    return CertificateFacts(
        request_id=str(request.pk), institution=request.institution.code, regulation=request.regulation,
        level=request.level, subject_hash=request.subject_hash,
        scope_digest=json_digest({"corpus": job.base_version.corpus.records_sha256,
                                  "forget": sorted(target["forget"])}),
        scope_counts={"forget": len(target["forget"]), "batched_requests": len(job.targets)},
        method=candidate.method, exact=candidate.exact, before=_ref(job.base_version), after=_ref(candidate),
        report=verification.report, report_summary=verification.summary,
        times={"received_at": _iso(request.received_at), "approved_at": _iso(request.decided_at),
               "job_started_at": _iso(job.started_at), "verified_at": _iso(verification.created_at),
               "certified_at": _iso(timezone.now())},
        audit_head=_audit_head(),
        job_id=str(job.pk),
        guard=_guard(request),
        covered_by=[{"certificate_id": str(c.pk), "request_id": str(c.request_id), "job_id": str(c.job_id),
                     "issued_at": _iso(c.issued_at)} for c in covered_by])


def certificate_issue(*, job: UnlearningJob, request: ForgetRequest, verification: VerificationRecord,
                      covered_by: Sequence[Certificate] = (), forget: list[str] | None = None) -> Certificate:
    """Sign and store the certificate of ``request`` (inside the certify transaction); see
    :func:`certificate_facts` for ``covered_by``."""
    facts = certificate_facts(job=job, request=request, verification=verification, covered_by=covered_by,
                              forget=forget)
    return _store(facts, request=request, version=verification.candidate, job=job, verification=verification,
                  **({"covered_by": [str(c.pk) for c in covered_by]} if covered_by else {}))


def not_trained_facts(*, request: ForgetRequest, served: Sequence[ModelVersion]) -> CertificateFacts:
    """What the certificate of a request states when no ``served`` model was trained on a record in
    its scope: nothing was unlearned, and each served model is, for this subject, a model that never
    saw the data (the guarantee is exact by construction). ``served[0]`` is the model it names."""
    now = _iso(timezone.now())
    report = {"schema": NOT_TRAINED_REPORT, "passed": True,
              "finding": "no served model was trained on a record in this request's scope",
              "served_models": [{"version_id": str(v.pk), "artifact_digest": v.artifact_digest,
                                 "training_corpus_sha256": v.corpus.records_sha256,
                                 "trained_records_in_scope": 0} for v in served]}
    check = {"name": "trained_records_in_scope", "value": 0, "threshold": 0, "comparison": "<=",
             "passed": True}
    return CertificateFacts(
        request_id=str(request.pk), institution=request.institution.code, regulation=request.regulation,
        level=request.level, subject_hash=request.subject_hash,
        scope_digest=json_digest({"corpus": served[0].corpus.records_sha256, "forget": []}),
        scope_counts={"forget": 0, "batched_requests": 0}, method=NOT_TRAINED, exact=True,
        before=_ref(served[0]), after=_ref(served[0]), report=report,
        report_summary={"passed": True, "checks": [check]},
        times={"received_at": _iso(request.received_at), "approved_at": _iso(request.decided_at),
               "verified_at": now, "certified_at": now},
        audit_head=_audit_head(), job_id="",
        guard=_guard(request))


def certificate_issue_not_trained(*, request: ForgetRequest, served: Sequence[ModelVersion]) -> Certificate:
    """Sign and store the certificate of a request no ``served`` model holds data of
    (:func:`not_trained_facts`)."""
    facts = not_trained_facts(request=request, served=served)
    return _store(facts, request=request, version=served[0], job=None, verification=None,
                  method=NOT_TRAINED)


def _store(facts: CertificateFacts, *, request: ForgetRequest, version: ModelVersion,
           job: UnlearningJob | None, verification: VerificationRecord | None, **audit: Any) -> Certificate:
    bundle = certificate_bundle(facts, signer=signing.sign)
    key_id = bundle["envelope"]["signatures"][0]["keyid"]
    certificate = Certificate(request=request, job=job, version=version, verification=verification,
                              key_id=key_id, bundle=bundle, issued_at=timezone.now())
    certificate.pdf = certificate_pdf(facts, key_id=key_id,
                                      verify_url=f"{settings.OBLIVIO_PUBLIC_URL}/api/v1/certificates/"
                                                 f"{certificate.pk}/verify")
    certificate.save()
    audit_append(actor=PIPELINE, action=AuditAction.CERTIFICATE_ISSUED, object_type="certificate",
                 object_id=str(certificate.pk), subject_hash=request.subject_hash,
                 data={"request_id": str(request.pk), "key_id": key_id,
                       "model_after": version.artifact_digest, **audit,
                       "statement_digest": json_digest(bundle["envelope"])})
    return certificate


def certificate_verify_stored(certificate: Certificate) -> CertificateCheck:
    """Check a stored certificate against its own request and the model version it names."""
    return certificate_check(certificate.bundle, keys=trusted_public_keys(),
                             request_id=str(certificate.request_id),
                             model_after=certificate.version.artifact_digest)
